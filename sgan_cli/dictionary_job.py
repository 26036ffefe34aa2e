"""A dictionary learned from a data configuration: the signals cut from the images (whole images
or patches), the checks of the settings and of the signals, and the job that records the
geometry the atoms were learned for (what ``sgan learn-dict`` saves, :mod:`sgan_cli.learn_dict_run`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import DictConfig, check_section
from .data import ImageData
from .devices import resolve_device
from .dictionary import LearnedDictionary, learn_dictionary
from .errors import SganError
from .progress import ProgressFn
from .validation import check_memory


def extract_signals(images: Tensor, patch: int | None, stride: int) -> Tensor:
    """Images [N, C, H, W] in [−1, 1] → signals [n, dim].

    Whole images (patch None): dim = C·H·W. Patches: every P×P window at the given stride,
    flattened in (C, P, P) order — the order ``conv_transpose2d`` uses when the atoms are
    viewed as a [K, C, P, P] kernel, so patch synthesis needs no reshuffling. ``F.unfold``
    does the extraction without loops: [N, C·P·P, L] → [N·L, C·P·P].
    """
    if patch is None:
        return images.reshape(images.shape[0], -1)
    cols = F.unfold(images, kernel_size=patch, stride=stride)  # [N, C·P·P, L]
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


@dataclass
class DictionaryJob:
    """A dictionary learned from a configuration, with the geometry it was learned for."""

    learned: LearnedDictionary
    dataset: str
    channels: int
    image_size: int
    patch: int | None
    stride: int
    n_signals: int  # signals used (training + held-out)
    device: str
    mean: Tensor | None = None  # [dim] subtracted before learning, added back at synthesis (None: no mean term)
    warnings: list[str] = field(default_factory=list)  # what the data cannot support (check_signals)


def centre_signals(Y: Tensor) -> tuple[Tensor, Tensor]:
    """Signals Y [n, dim] → (Y − m, m) with m [dim] their mean: the mean image for whole
    images, the mean patch for patches. Sparse coding of centred signals with the mean
    added back at synthesis is the classic pipeline (DC removal in K-SVD, Elad & Aharon
    2006); without it, sums of unit-norm atoms must rebuild the background on their own."""
    mean = Y.mean(dim=0)
    return Y - mean, mean


def check_dict_config(cfg: DictConfig, channels: int, image_size: int, n_images: int | None = None) -> None:
    """Reject impossible settings with one clear message each, before any work starts
    (including sizes that cannot fit in memory: atoms × dimension, Gram matrices, signals)."""
    check_section("dict", cfg, "the dictionary configuration")
    if cfg.patch is not None and cfg.patch > image_size:
        raise SganError(
            f"dict.patch {cfg.patch} is larger than the {image_size}×{image_size} images",
            where="dict.patch",
            fix=f"give a patch size of at most {image_size}",
        )
    if cfg.solver not in ("auto", "passes", "online"):
        raise SganError(f"unknown solver {cfg.solver!r}", where="dict.solver", fix="use auto, passes or online")

    side = image_size if cfg.patch is None else cfg.patch
    dim = channels * side * side
    k = cfg.atoms or dim
    # atoms, their gradient/statistics (≈4 copies of K×dim), Gram matrices K×K, and the signals
    positions = 1 if cfg.patch is None else max(1, (image_size - cfg.patch) // cfg.stride + 1) ** 2
    n_signals = min(cfg.max_samples, (n_images if n_images is not None else cfg.max_samples) * positions)
    need = 4 * (4 * k * dim + 2 * k * k + n_signals * (dim + k))
    check_memory(
        need,
        f"a dictionary of {k} atoms of {dim} values on {n_signals} signals",
        "--atoms / --image-size / --max-samples",
        "give fewer --atoms, a smaller --image-size or --patch, or fewer --max-samples",
    )


DEFAULT_SPARSITY = 0.1


def target_sparsity_for(cfg: DictConfig, dim: int, n_atoms: int) -> float:
    """The support fraction to aim for, checked against what lasso codes can reach.

    Exact lasso codes have at most ``dim`` non-zeros (the active atoms stay linearly
    independent), so a target of s·K ≥ dim is out of reach: 3×3 grayscale patches (dim 9)
    with 100 atoms cannot have 10 % support. Without an explicit ``--sparsity`` the
    default 0.1 then becomes dim/(3K) (about three atoms per 9-pixel patch); an explicit
    unreachable value is an error that says what is reachable.
    """
    if cfg.sparsity is None:
        return DEFAULT_SPARSITY if DEFAULT_SPARSITY * n_atoms <= dim / 2 else dim / (3 * n_atoms)
    if cfg.sparsity * n_atoms >= dim:
        raise SganError(
            f"--sparsity {cfg.sparsity:g} asks for {cfg.sparsity * n_atoms:.3g} non-zero coefficients per signal, "
            f"but lasso codes of {dim}-dimensional signals have at most {dim} (of {n_atoms} atoms)",
            where="dict.sparsity",
            fix=(
                f"give --sparsity below {dim / n_atoms:.3g} (e.g. "
                f"{dim / (3 * n_atoms):.2g}), fewer --atoms, or a larger --patch"
            ),
        )
    return cfg.sparsity


def signals_from_images(data: ImageData, cfg: DictConfig, gen: torch.Generator) -> Tensor:
    """At most ``cfg.max_samples`` random signals [n, dim] (whole images or patches) in [−1, 1].

    For patches, only as many images as needed are unfolded, so a 60,000-image set never
    materialises its 40 million patches.
    """
    n_img = len(data)
    if cfg.patch is None:
        pick = torch.randperm(n_img, generator=gen)[: cfg.max_samples]
        return extract_signals(data.floats(pick.sort().values), None, 1)
    per_image = ((data.image_size - cfg.patch) // cfg.stride + 1) ** 2
    need = min(n_img, math.ceil(2 * cfg.max_samples / per_image))
    pick = torch.randperm(n_img, generator=gen)[:need].sort().values
    patches = extract_signals(data.floats(pick), cfg.patch, cfg.stride)
    keep = torch.randperm(patches.shape[0], generator=gen)[: cfg.max_samples]
    return patches[keep]


RANK_SUBSET = 1024  # signals whose rank check_signals measures
WIDE_FACTOR = 8  # more atoms than this many per dimension the signals span is a warning


def count_distinct(Y: Tensor) -> int:
    """The number of distinct rows of Y [n, dim], by a random projection of each row (rows
    that differ project equal with probability 0), in chunks: no copy of Y is made."""
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(Y.shape[1], dtype=torch.float64, generator=gen)
    keys = torch.cat([chunk.double() @ r for chunk in Y.split(4096)]) if Y.shape[0] else torch.zeros(0)
    return int(torch.unique(keys).numel())


def check_signals(Y: Tensor, n_atoms: int, centred: bool, source: str) -> list[str]:
    """What the signals Y [n, dim] (as the solver sees them) can support.

    An SganError when there is nothing to learn: every signal the same (after removing their
    mean, when ``centred``), so every code would be 0 and every atom point one way. Warnings
    when fewer distinct signals than atoms (``--limit 3 --atoms 64``: at most 3 atoms are
    determined), or when the signals span a subspace of their space that is far too small for
    the atoms (more than :data:`WIDE_FACTOR` atoms per dimension spanned; over-complete
    dictionaries of full-rank data are not warned about). The rank is measured on the first
    :data:`RANK_SUBSET` signals (a random subset already)."""
    n, dim = int(Y.shape[0]), int(Y.shape[1])
    sub = Y[:RANK_SUBSET].double()
    gram = sub @ sub.T if sub.shape[0] <= dim else sub.T @ sub
    eig = torch.linalg.eigvalsh(gram)
    # pixels step by 2/255 in [−1, 1]: values within 1e-4 of 0 are rounding (a float32 mean
    # of equal values may miss them by an ulp), and so are directions 1e-10 below the largest
    flat = bool(sub.abs().max() < 1e-4) if sub.numel() else True
    rank = 0 if flat else int((eig > float(eig.max()) * max(gram.shape) * 1e-10).sum())
    where = "once their mean is removed" if centred else "as they are"
    if rank == 0:
        raise SganError(
            f"the {n} signals of {source} are all the same ({where}): there is nothing for atoms to "
            "describe (every code would be 0, every atom point one way)",
            where=source,
            fix="give varied images (check the data set), or learn with --no-mean if they differ only by a constant",
        )
    distinct = count_distinct(Y)
    notes = []
    if distinct < n_atoms:
        notes.append(f"{distinct} distinct signal{'' if distinct == 1 else 's'} for {n_atoms} atoms")
    if rank < dim and n_atoms > WIDE_FACTOR * rank:
        notes.append(f"the signals span only {rank} of their {dim} dimensions ({where})")
    if not notes:
        return []
    most = min(distinct, rank) if rank < dim else distinct
    return [
        f"the data cannot support {n_atoms} atoms: {' and '.join(notes)}; they determine at most about "
        f"{most} atoms, the others repeat them or keep their random start. Learn fewer atoms "
        f"(--atoms {max(1, most)}) or give more, more varied images"
    ]


def learn_from_config(
    data: ImageData,
    cfg: DictConfig,
    progress: ProgressFn | None = None,
    note: Callable[[str], None] | None = None,
) -> DictionaryJob:
    """Validate the settings, cut the signals and learn the dictionary they describe.
    ``note`` gets one line, before learning starts, saying what is learned (:func:`plan_text`)."""
    check_dict_config(cfg, data.channels, data.image_size, len(data))
    device = resolve_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    Y = signals_from_images(data, cfg, gen)
    n_atoms = cfg.atoms if cfg.atoms is not None else Y.shape[1]
    mean = None
    if cfg.mean:  # a stage of its own: the solver sees centred signals only
        Y, mean = centre_signals(Y)
    warnings = check_signals(Y, n_atoms, cfg.mean, data.source)
    target = None if cfg.alpha is not None else target_sparsity_for(cfg, int(Y.shape[1]), n_atoms)
    if note is not None:
        note(plan_text(data, cfg, int(Y.shape[0]), int(Y.shape[1]), n_atoms, target, str(device)))
    learned = learn_dictionary(
        Y,
        n_atoms,
        target_sparsity=target,
        alpha=cfg.alpha,
        solver=cfg.solver,
        passes=cfg.passes,
        batch_size=cfg.batch_size,
        heldout_fraction=cfg.heldout,
        seed=cfg.seed,
        device=device,
        progress=progress,
    )
    return DictionaryJob(
        learned,
        data.name,
        data.channels,
        data.image_size,
        cfg.patch,
        cfg.stride,
        int(Y.shape[0]),
        str(device),
        mean,
        warnings,
    )


def plan_text(
    data: ImageData, cfg: DictConfig, n_signals: int, dim: int, n_atoms: int, target: float | None, device: str
) -> str:
    """What learn-dict is about to do, in one line: atoms (and why that many), signals, target."""
    if cfg.atoms is not None:
        atoms = f"{n_atoms} atoms"
    else:  # the default that made MNIST take minutes: say it, and the knob
        atoms = f"{n_atoms} atoms (square: K = {dim} values per signal; --atoms K for fewer, and faster)"
    shape = f"{data.channels}×{data.image_size}×{data.image_size}"
    signals = (
        f"{n_signals:,} whole {shape} images of {data.name}"
        if cfg.patch is None
        else f"{n_signals:,} {cfg.patch}×{cfg.patch} patches of {len(data):,} {shape} {data.name} images"
    )
    aim = f"target support {target:g}" if target is not None else f"α = {cfg.alpha:g}"
    return f"learning {atoms} from {signals}, {aim}, on {device}; the time left shows once the first steps are timed"
