"""Sparsity control of a sparse generator's codes, chosen by ``model.sparsity``.

* ``fixed``: the soft threshold T_λ with a constant λ (``model.threshold``), plus β·mean|a|;
* ``learn``: T_λ with λ learned by the generator's optimiser (through log λ);
* ``topk``: the k largest-magnitude coefficients of each code vector (per image for
  whole-image codes, per position for patch code maps), k = round(s·K) from the
  dictionary's achieved support s unless ``model.topk`` is set (Makhzani & Frey 2013);
* ``controller``: T_λ whose λ a :class:`nets.SupportController` adapts after every generator
  step so the codes' support reaches ``model.support_target`` (default: s).

``auto`` resolves to :data:`DEFAULT_SPARSITY_CONTROL` (or ``learn`` when the older key
``model.learn_threshold`` is set, or ``fixed`` for a dictionary that records no achieved
support and no ``model.support_target``). A training run writes the resolved choice, k and target
into its config, so every file records them and a resumed or sampled generator rebuilds
the same head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from .config import ModelConfig, check_range
from .errors import SganError
from .nets import SoftThreshold, SupportController, TopK

CONTROLS = ("fixed", "learn", "topk", "controller")
# measured on digits (benchmarks/bench_sparsity.py, README): the default for sparse generators
DEFAULT_SPARSITY_CONTROL = "topk"


@dataclass
class ResolvedSparsity:
    """The sparsity control with every default filled in."""

    control: str  # one of CONTROLS
    k: int | None  # topk: non-zeros per code vector
    target: float | None  # the support fraction aimed at (controller), k/K (topk), or the dictionary's (fixed, learn)


def check_sparsity_config(model: ModelConfig) -> None:
    """Errors a user can make in the sparsity keys, before any work."""
    if model.sparsity not in ("auto", *CONTROLS):
        raise SganError(
            f"unknown sparsity control {model.sparsity!r}",
            where="model.sparsity",
            fix=f"use auto, {', '.join(CONTROLS)}",
        )
    if model.learn_threshold and model.sparsity not in ("auto", "learn"):
        raise SganError(
            f"model.learn_threshold asks for a learned λ, but model.sparsity is {model.sparsity!r}",
            where="model.learn_threshold / model.sparsity",
            fix="use --set model.sparsity=learn alone, or drop model.learn_threshold",
        )
    for key in ("topk", "support_target", "controller_gain"):  # the one range table (sgan_cli.ranges)
        check_range(f"model.{key}", getattr(model, key), "the model configuration")


def resolve_sparsity(model: ModelConfig, n_atoms: int, achieved: float) -> ResolvedSparsity:
    """Fill in the control, k and target for a dictionary of ``n_atoms`` atoms whose exact
    codes have support fraction ``achieved`` (NaN when the dictionary was learned at a fixed α
    and records none: then k or the target must be given)."""
    check_sparsity_config(model)
    control = model.sparsity
    known = math.isfinite(achieved) and 0.0 < achieved < 1.0
    if control == "auto":
        # a support target the user gave is the controller's; a dictionary that records no
        # support (not written by learn-dict) keeps T_λ's fixed λ
        if model.learn_threshold:
            control = "learn"
        elif model.support_target is not None and model.topk is None:
            control = "controller"
        else:
            control = DEFAULT_SPARSITY_CONTROL if known or model.topk is not None else "fixed"
    if control == "topk":
        if model.threshold != ModelConfig.threshold:
            raise SganError(
                f"model.threshold={model.threshold} sets λ of the soft threshold, but the codes are "
                f"made by top-k (model.sparsity {model.sparsity!r} resolves to topk), which has no λ",
                where="model.threshold",
                fix=(
                    "drop model.threshold, or add --set model.sparsity=fixed "
                    "(or learn, controller) to use the soft threshold"
                ),
            )
        if model.topk is None and model.support_target is not None:
            k = max(1, round(model.support_target * n_atoms))
        elif model.topk is None and not known:
            raise SganError(
                "the dictionary records no achieved support to choose k from",
                where="model.topk",
                fix="give --set model.topk=K",
            )
        else:
            k = model.topk if model.topk is not None else max(1, round(achieved * n_atoms))
        if k >= n_atoms:
            raise SganError(
                f"model.topk {k} keeps every one of the dictionary's {n_atoms} atoms, so the codes would not be sparse",
                where="model.topk",
                fix=f"give fewer than {n_atoms} non-zeros per code vector",
            )
        return ResolvedSparsity(control, k, k / n_atoms)
    target = model.support_target if model.support_target is not None else (achieved if known else None)
    if control == "controller" and target is None:
        raise SganError(
            "the dictionary records no achieved support to aim the controller at",
            where="model.support_target",
            fix="give --set model.support_target=0.1",
        )
    return ResolvedSparsity(control, None, target)


def record_sparsity(model: ModelConfig, resolved: ResolvedSparsity) -> None:
    """Write the resolved choice into the config (what every file of the run records)."""
    model.sparsity = resolved.control
    model.learn_threshold = resolved.control == "learn"
    model.topk = resolved.k
    if resolved.control != "topk":  # top-k's support is k/K, told by model.topk; a user's target stays as given
        model.support_target = resolved.target


def legacy_sparsity(model: ModelConfig, saved_section: dict) -> None:
    """Files written before ``model.sparsity`` existed used T_λ with a fixed (or learned) λ."""
    if "sparsity" not in saved_section:
        model.sparsity = "learn" if model.learn_threshold else "fixed"


def sparse_head(model: ModelConfig, resolved: ResolvedSparsity) -> nn.Module:
    """The generator's last layer: T_λ (fixed, learned or controlled λ) or top-k."""
    if resolved.control == "topk":
        assert resolved.k is not None
        return TopK(resolved.k, straight_through=model.straight_through)
    return SoftThreshold(
        model.threshold, learnable=resolved.control == "learn", straight_through=model.straight_through
    )


def make_controller(head: nn.Module, model: ModelConfig, resolved: ResolvedSparsity) -> SupportController | None:
    """The support controller of a ``controller`` head, else None."""
    if resolved.control != "controller":
        return None
    assert isinstance(head, SoftThreshold) and resolved.target is not None
    return SupportController(head, resolved.target, model.controller_gain)


def head_lambda(head: nn.Module) -> float | None:
    """λ of a soft-threshold head (None for top-k), for metrics.jsonl."""
    if isinstance(head, SoftThreshold):
        return float(head.threshold().detach()) if head.learnable else head.lam_value
    return None
