"""The feature-based metrics of one image set against a reference (IS, FID, KID, precision/recall,
mode coverage), and the held-out real rows the real-data value (ceiling) is scored on.

The ceiling: with a classifier (and on request with Inception), each metric is also computed for
real images the model never saw, a seeded subset, of the samples' size, of the reference data
set's other split, against the same reference. A model cannot be expected to beat it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .features import Features
from .metrics import (
    feature_stats,
    frechet_distance,
    inception_score,
    kernel_distance,
    mode_coverage,
    precision_recall,
)
from .reference_stats import Reference
from .score_options import ScoreOptions


def feature_metrics(
    feats: Features | None,
    ref: Reference | None,
    metrics: list[str],
    opts: ScoreOptions,
    modes: tuple[Tensor, int] | None,
) -> dict[str, float]:
    """The feature-based metrics of one image set (samples, or the ceiling's real images).

    ``feats`` may be None only when ``modes`` is the one metric (stacked data: modes come
    from per-channel predictions).
    """
    out: dict[str, float] = {}
    if feats is None:
        metrics = []
    if "inception" in metrics:
        s = inception_score(feats.logits, opts.splits, opts.seed)
        out |= {"inception": s.mean, "inception_std": s.std}
    if ref is not None and "fid" in metrics:
        out["fid"] = frechet_distance(feature_stats(feats.features), ref.stats)
    if ref is not None and "kid" in metrics:
        s = kernel_distance(ref.features.features, feats.features, opts.kid_subsets, opts.kid_subset_size, opts.seed)
        out |= {"kid": s.mean, "kid_std": s.std}
    if ref is not None and "pr" in metrics:
        pr = precision_recall(ref.features.features, feats.features, opts.k)
        out |= {"precision": pr.precision, "recall": pr.recall}
    if modes is not None:
        mc = mode_coverage(*modes)
        out |= {"modes": mc.covered, "modes_total": mc.total, "modes_kl": mc.kl}
    return out


def ceiling_pick(m: int, n: int, seed: int) -> Tensor:
    """Indices of a seeded subset of n of m held-out rows (all, in order, if n ≥ m)."""
    if n >= m:
        return torch.arange(m)
    return torch.randperm(m, generator=torch.Generator().manual_seed(seed))[:n]


def ceiling_subset(heldout: Features, n: int, seed: int) -> Features:
    """A seeded subset of n held-out rows (all if fewer), so the ceiling has the samples' size."""
    m = int(heldout.features.shape[0])
    if n >= m:
        return heldout
    pick = ceiling_pick(m, n, seed)
    return Features(heldout.features[pick], heldout.logits[pick])
