"""``--arch auto``: the architecture that fits the dictionary and the device.

Measured on a 2-core CPU (issue 15; docs/benchmarks.md): a whole-image dictionary makes the
generator an MLP (Ganz & Blau, Sparse GAN), and a convolutional critic and encoder beside it turned a
1,200-step MNIST run from 88 s into more than two hours. So:

* whole-image dictionary → ``mlp`` everywhere (the generator is an MLP whatever the choice);
* patch dictionary → ``dcgan`` generator (a code map needs a convolutional body), with an MLP
  critic and encoder on the CPU and convolutional ones on a GPU;
* dense baseline → ``mlp`` on the CPU, ``dcgan`` on a GPU.

An explicit ``--arch`` (or ``model.critic_arch``) is never changed. The papers' own nets
(``sgan_cli.paper_nets``: ``goyal``, the DCGAN nets of Goyal's EE5239 report; ``ganz-blau``,
those of Ganz & Blau's *Sparse GAN*) are chosen by name only: they reproduce a paper rather
than fit a device.
"""

from __future__ import annotations

from typing import Any

from .config import SganConfig
from .contracts import load_dictionary
from .devices import resolve_device

AUTO = "auto"


def resolve_arch(cfg: SganConfig, patch: int | None, sparse: bool, device_type: str) -> str | None:
    """Replace ``model.arch = "auto"`` in place by a concrete choice; returns why, or None
    when nothing was automatic. ``patch``: the dictionary's patch size (None: whole images);
    ``sparse``: whether there is a dictionary; ``device_type``: "cpu" or "cuda"."""
    model = cfg.model
    if model.arch != AUTO:
        return None
    gpu = device_type == "cuda"
    if sparse and patch is None:
        model.arch = "mlp"
        return "whole-image dictionary: MLP generator, critic and encoder"
    if sparse:
        model.arch = "dcgan"
        if model.critic_arch is None:
            model.critic_arch = "dcgan" if gpu else "mlp"
        return f"patch dictionary: DCGAN generator, {model.critic_arch} critic and encoder on {device_type}"
    model.arch = "dcgan" if gpu else "mlp"
    return f"dense generator on {device_type}: {model.arch}"


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
