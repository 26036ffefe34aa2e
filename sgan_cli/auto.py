"""``--arch auto``: the architecture that gives the best samples per minute on the device.

On a CPU the choice is measured (``benchmarks/bench_arch_quality.py``; docs/benchmarks.md,
"Architectures on a CPU"): each candidate trained with ``sgan train``'s defaults on mnist-5k for
2, 5 and 10 CPU-minutes of one thread, scored by FID with an MNIST classifier; the table below
keeps, per kind of generator, the candidate with the lowest FID reached within 10 minutes
(FIDs within 5 % of it tie, and the one that got there sooner wins):

* dense generator → ``mlp`` (FID 4.1 at 10 minutes; Goyal's DCGAN nets 31.4), ``goyal`` under BCE;
* whole-image dictionary → ``mlp`` (17.0 at 2 minutes, then worse; Ganz & Blau's nets 17.0 at
  10, an MLP generator under Goyal's critic 23.4; the generator is fully connected whatever
  the choice);
* patch dictionary → a ``dcgan`` generator (a code map needs a convolutional body) with an
  ``mlp`` critic and encoder (27.9 at 10 minutes; Goyal's nets 31.6).

Measured under WGAN-GP, ``sgan train``'s default objective. Under BCE (``--gan gan``) a dense
generator gets Goyal's DCGAN nets (:data:`BY_OBJECTIVE`): the dense MLP GAN diverged there (FID
127 after 2 minutes, 284 after 10), Goyal's nets reached 12.0 after 10.

On a GPU nothing was measured (none was available): convolutional nets there (``dcgan``
generator and critic, a whole-image dictionary's generator stays fully connected), where they
cost little more than an MLP. An explicit ``--arch`` (or ``model.critic_arch``) is never
changed. The papers' own nets (``sgan_cli.paper_nets``: ``goyal``, ``ganz-blau``) are chosen
by name only: they reproduce a paper rather than fit a device.
"""

from __future__ import annotations

from typing import Any

from .config import SganConfig
from .contracts import load_dictionary
from .devices import resolve_device

AUTO = "auto"


# (kind of generator, device type) → (generator arch, critic arch or None for the same); see the module doc
CHOICE: dict[tuple[str, str], tuple[str, str | None]] = {
    ("dense", "cpu"): ("mlp", None),
    ("whole", "cpu"): ("mlp", None),
    ("patch", "cpu"): ("dcgan", "mlp"),
    ("dense", "cuda"): ("dcgan", None),
    ("whole", "cuda"): ("mlp", None),
    ("patch", "cuda"): ("dcgan", "dcgan"),
}
# where the objective changes the measured choice: (kind, device, objective) → as CHOICE
BY_OBJECTIVE: dict[tuple[str, str, str], tuple[str, str | None]] = {
    ("dense", "cpu", "gan"): ("goyal", None),
}
WHY = {
    "dense": "dense generator",
    "whole": "whole-image dictionary",
    "patch": "patch dictionary",
}
MEASURED = {"cpu": "best FID per CPU-minute measured on MNIST", "cuda": "not measured on a GPU"}


def resolve_arch(cfg: SganConfig, patch: int | None, sparse: bool, device_type: str) -> str | None:
    """Replace ``model.arch = "auto"`` in place by :data:`CHOICE`'s entry; returns why, or None
    when nothing was automatic. ``patch``: the dictionary's patch size (None: whole images);
    ``sparse``: whether there is a dictionary; ``device_type``: "cpu" or "cuda" (any other
    device type is treated as "cuda")."""
    model = cfg.model
    if model.arch != AUTO:
        return None
    kind = "dense" if not sparse else ("whole" if patch is None else "patch")
    device = "cpu" if device_type == "cpu" else "cuda"
    objective = cfg.gan.objective
    arch, critic = BY_OBJECTIVE.get((kind, device, objective), CHOICE[(kind, device)])
    model.arch = arch
    if critic is not None and model.critic_arch is None:
        model.critic_arch = critic
    critic_note = "" if model.critic_arch in (None, arch) else f", {model.critic_arch} critic and encoder"
    under = f" under {objective}" if (kind, device, objective) in BY_OBJECTIVE else ""
    return f"{WHY[kind]}{under} on {device_type}{critic_note} ({MEASURED[device]})"


def resolve_auto(cfg: SganConfig, dry_run: bool = False, dictionary: Any = None) -> str | None:
    """:func:`resolve_arch` for a training config: reads the dictionary (its patch size) unless
    the loaded ``dictionary`` is given, and resolves the device. Errors (missing dictionary,
    CUDA absent) are the usual SganErrors; with ``dry_run`` a dictionary that does not exist
    yet leaves ``auto`` in place (a recipe may name one a later ``learn-dict`` writes) and
    says so."""
    if cfg.model.arch != AUTO:
        return None
    from pathlib import Path

    patch = None
    if dry_run and cfg.train.dict is not None and not Path(cfg.train.dict).is_file():
        return f"decided when the dictionary {cfg.train.dict} exists (whole-image atoms: mlp; patch atoms: dcgan)"
    if dictionary is not None:
        patch = dictionary.patch
    elif cfg.train.dict is not None:
        patch = load_dictionary(cfg.train.dict).patch
    return resolve_arch(
        cfg, patch, dictionary is not None or cfg.train.dict is not None, resolve_device(cfg.train.device).type
    )
