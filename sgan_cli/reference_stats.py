"""The reference of ``sgan score``: features and statistics of real images under one extractor,
and their file (kind ``sgan.stats``, written by ``--save-stats``), declared beside its one reader.

A statistics file records the extractor it was made with; :func:`resolve_features` picks that
extractor when ``--features`` is not given, and :func:`load_stats` refuses another one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .contracts import file_kind, open_safetensors, peek_kind, read_file, require_tensor, write_file
from .errors import SganError
from .features import Extractor, Features
from .metrics import FeatureStats
from .score_options import ScoreOptions


@dataclass
class Reference:
    """Reference features under one extractor, in canonical image order."""

    description: str
    features: Features
    stats: FeatureStats
    from_stats_file: bool
    dataset: str | None  # a data set name: a held-out split exists
    split: str | None
    heldout: Features | None = None  # the other split's features (ceiling), when computed
    heldout_description: str = ""


def _validate_stats(tensors: dict[str, Tensor], meta: dict[str, str], path: Path) -> None:
    feats = require_tensor(tensors, "features", 2, path)
    logits = require_tensor(tensors, "logits", 2, path)
    mean = require_tensor(tensors, "mean", 1, path)
    cov = require_tensor(tensors, "cov", 2, path)
    d = feats.shape[1]
    ok = logits.shape[0] == feats.shape[0] and mean.shape[0] == d and tuple(cov.shape) == (d, d)
    if "heldout_features" in tensors:
        hf = require_tensor(tensors, "heldout_features", 2, path)
        hl = require_tensor(tensors, "heldout_logits", 2, path)
        ok = ok and hf.shape[1] == d and hl.shape[0] == hf.shape[0] and hl.shape[1] == logits.shape[1]
    if not ok:
        raise SganError(
            f"{path}: the statistics tensors have inconsistent shapes",
            where=str(path),
            fix="write them again with sgan score --save-stats",
        )
    if "extractor" not in meta:
        raise SganError(
            f"{path} does not record its feature extractor",
            where=str(path),
            fix="write it again with sgan score --save-stats",
        )
    if any(not bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point()):
        raise SganError(
            f"{path} holds non-finite (NaN or inf) statistics",
            where=str(path),
            fix="write them again with sgan score --save-stats and a working extractor",
        )


STATS = file_kind("sgan.stats", _validate_stats)


def load_stats(path: Path, extractor: Extractor) -> Reference:
    """A stats file as the reference; its extractor must be the one in use."""
    f = read_file(path, STATS, what="reference statistics")
    if f.meta["extractor"] != extractor.identity:
        raise SganError(
            f"{path} holds statistics made with {f.meta['extractor']}, but this score uses {extractor.identity}",
            where=str(path),
            fix=(
                "compute the reference again with --features "
                f"{'inception' if extractor.kind == 'inception' else 'classifier:' + extractor.source} "
                "--save-stats, or use the extractor the file was made with"
            ),
        )
    t = f.tensors
    heldout = Features(t["heldout_features"], t["heldout_logits"]) if "heldout_features" in t else None
    n = int(t["features"].shape[0])
    return Reference(
        description=f"{path} ({f.meta.get('description', 'statistics')})",
        features=Features(t["features"], t["logits"]),
        stats=FeatureStats(t["mean"].double(), t["cov"].double(), n, t["features"].double() - t["mean"].double()),
        from_stats_file=True,
        dataset=f.meta.get("dataset") or None,
        split=f.meta.get("split") or None,
        heldout=heldout,
        heldout_description=f.meta.get("heldout_description", ""),
    )


def save_stats(path: Path, ref: Reference, extractor: Extractor, force: bool) -> str:
    """Write the reference's features, logits and float64 statistics (kind ``sgan.stats``)."""
    tensors = {
        "features": ref.features.features,
        "logits": ref.features.logits,
        "mean": ref.stats.mean,
        "cov": ref.stats.cov,
    }
    if ref.heldout is not None:
        tensors |= {"heldout_features": ref.heldout.features, "heldout_logits": ref.heldout.logits}
    meta = {
        "extractor": extractor.identity,
        "extractor_kind": extractor.kind,
        "extractor_source": extractor.source,
        "standard": json.dumps(extractor.standard),
        "description": ref.description,
        "dataset": ref.dataset or "",
        "split": ref.split or "",
        "heldout_description": ref.heldout_description,
        "n": str(ref.stats.n),
    }
    return write_file(path, STATS, tensors, meta=meta, force=force)


def _stats_meta(ref: str | None) -> dict[str, str] | None:
    """The metadata of ``ref`` when it is an ``sgan.stats`` file, else None (header only)."""
    if ref is None or not ref.endswith(".safetensors") or not Path(ref).is_file() or peek_kind(ref) != STATS.name:
        return None
    with open_safetensors(Path(ref)) as f:
        return dict(f.metadata() or {})


def resolve_features(opts: ScoreOptions) -> str:
    """``--features`` as given; without it, the extractor a ``--ref`` statistics file was made
    with (its classifier file, which must still be where it was; or inception); else inception.

    Raises SganError naming the classifier when the statistics need one that is not there.
    """
    if opts.features is not None:
        return opts.features
    meta = _stats_meta(opts.ref)
    if meta is None or meta.get("extractor_kind") != "classifier":
        return "inception"
    source = meta.get("extractor_source", "")
    if source and Path(source).is_file():
        return f"classifier:{source}"
    raise SganError(
        f"the statistics in {opts.ref} were made with the classifier "
        f"{source or '(unrecorded)'} ({meta.get('extractor', '')}), which is not at that path",
        where=f"--ref {opts.ref}",
        fix="pass --features classifier:FILE with that classifier file",
    )
