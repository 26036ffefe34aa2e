"""How long a training run will take on this device, estimated before it starts
(``sgan train --dry-run``): build the run's nets, time a few of its steps on random images of
the run's shape, and extrapolate to ``train.steps``.

It is an estimate: data loading, checkpoints, sample grids and curves are not timed, and
other work on the machine changes the pace. A dictionary that does not exist yet (a recipe
naming the file a later ``learn-dict`` writes) is stood in for by random unit-norm atoms of
the shape the recipe's ``dict`` section gives, which cost the same to synthesise with.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .auto import resolve_arch
from .builders import Geometry, check_training_fits
from .checkpoint import new_state
from .config import SganConfig
from .contracts import DictionaryFile, check_dictionary_fits, load_dictionary
from .data import load_data
from .devices import resolve_device
from .errors import SganError
from .training import train_steps

# channels and side of the named data sets as they load (before --image-size)
NATIVE_SHAPES = {
    "digits": (1, 8),
    "mnist": (1, 28),
    "fashion-mnist": (1, 28),
    "stacked-mnist": (3, 28),
    "cifar10": (3, 32),
    "celeba": (3, 64),
}


@dataclass
class RunEstimate:
    """The timed steps and what they extrapolate to."""

    seconds_per_step: float
    steps_timed: int  # generator steps timed (after a first, untimed warm-up step when there were several)
    steps: int  # the run's generator steps
    device: str
    channels: int
    size: int
    stand_in_dictionary: bool  # timed with random atoms (the dictionary file does not exist yet)

    @property
    def total_seconds(self) -> float:
        return self.seconds_per_step * self.steps


def estimate_run(cfg: SganConfig, steps: int = 2, budget_s: float = 20.0, slow_s: float = 2.0) -> RunEstimate:
    """Time ``steps`` generator steps (each with its critic steps and third player) after one
    warm-up step, or as many as fit in ``budget_s`` seconds (at least one), of the run ``cfg``
    describes. A first step slower than ``slow_s`` seconds is the estimate on its own (its
    warm-up, a fraction of a second, is small beside it), so a GPU recipe on a CPU times one
    step, not two. ``cfg`` is not changed. Raises SganError when the run's shape cannot be told
    without its data (a folder that does not exist) or its nets do not fit in memory."""
    cfg = copy.deepcopy(cfg)
    device = resolve_device(cfg.train.device)
    dictionary, stand_in = _dictionary(cfg)
    channels, size = _shape(cfg, dictionary)
    geometry = Geometry(channels, size)
    if dictionary is None and stand_in:
        dictionary = _random_dictionary(cfg, channels, size)
    elif dictionary is not None:
        check_dictionary_fits(dictionary, channels, size, str(cfg.train.dict))  # type: ignore[arg-type]
    patch = getattr(dictionary, "patch", None)
    resolve_arch(cfg, patch, dictionary is not None, device.type)  # --arch auto, as the run will
    check_training_fits(cfg, geometry, dictionary, cfg.train.batch_size)
    state = new_state(cfg, geometry, dictionary, device)
    real = torch.rand(max(cfg.train.batch_size, 64), channels, size, size, generator=torch.Generator().manual_seed(0))
    real = (real * 2 - 1).to(device)
    stamps: list[float] = []
    start = time.perf_counter()

    def stop() -> bool:  # at least one step; then until the budget is spent, or after one slow step
        if not stamps:
            return False
        return time.perf_counter() - start > budget_s or (len(stamps) == 1 and stamps[0] - start > slow_s)

    def on_step(step: int) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    train_steps(state, cfg, real, steps + 1, on_step=on_step, should_stop=stop)
    if len(stamps) >= 2:  # the first step (allocations, kernel choice) is not timed
        per_step, timed = (stamps[-1] - stamps[0]) / (len(stamps) - 1), len(stamps) - 1
    else:
        per_step, timed = stamps[0] - start, 1
    return RunEstimate(per_step, timed, cfg.train.steps, str(device), channels, size, stand_in)


def _dictionary(cfg: SganConfig) -> tuple[object | None, bool]:
    """The run's dictionary, and whether a stand-in is needed (the file is not there yet)."""
    if cfg.train.dict is None:
        return None, False
    if not Path(cfg.train.dict).is_file():
        return None, True
    return load_dictionary(cfg.train.dict), False


def _shape(cfg: SganConfig, dictionary: object | None) -> tuple[int, int]:
    """Channels and side of the training images: the data set's known shape, else the data
    itself; ``--image-size`` wins for the side."""
    name = cfg.data.name
    if name in NATIVE_SHAPES:
        channels, size = NATIVE_SHAPES[name]
    elif Path(name).exists():
        images = load_data(cfg.data)
        channels, size = images.channels, images.image_size
    else:
        raise SganError(
            f"the data {name} does not exist, so the run's image size is unknown",
            where=name,
            fix="give an existing folder of images or a samples.safetensors file, or a data set name",
        )
    if cfg.data.image_size is not None:
        size = cfg.data.image_size
    return channels, size


def _random_dictionary(cfg: SganConfig, channels: int, size: int) -> object:
    """Random unit-norm atoms of the shape ``cfg.dict`` describes (K atoms of P×P×C patches,
    or of whole images), for timing only."""
    side = cfg.dict.patch if cfg.dict.patch is not None else size
    dim = channels * side * side
    k = cfg.dict.atoms if cfg.dict.atoms is not None else dim
    atoms = torch.randn(k, dim, generator=torch.Generator().manual_seed(0))
    atoms /= atoms.norm(dim=1, keepdim=True)
    sparsity = cfg.dict.sparsity if cfg.dict.sparsity is not None else 0.1
    return DictionaryFile(
        atoms=atoms,
        mean=torch.zeros(dim),
        channels=channels,
        image_size=size,
        patch=cfg.dict.patch,
        stride=cfg.dict.stride,
        alpha=math.nan,
        achieved_sparsity=sparsity,
        hash="",
        file=None,
    )
