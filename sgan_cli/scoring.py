"""``sgan score`` as a library: load samples and reference, extract features, compute metrics.

Inputs. SAMPLES is a folder of images, an ``sgan.samples`` file (``images`` uint8, optional
``codes`` of a sparse generator), an ``sgan.latents`` file (its ``reconstructions`` are
scored; ``originals`` give PSNR) or a data set name (real images, e.g. the ceiling by
hand). REF is a data set name, a folder, a samples file, or an ``sgan.stats`` file written
by ``--save-stats`` (features and statistics of a reference under one extractor).

Order and batch independence. Images are put in a canonical order (sorted by a hash of
their pixels, :func:`sgan_cli.metrics.canonical_order`) before anything else, so the
seeded random splits (IS) and subsets (KID) pick the same images whatever order the
files came in; features of an image do not depend on its batch.

The real-data value (ceiling). With a classifier (and on request with Inception), each
metric is also computed for real images the model never saw: a seeded subset, of the
samples' size, of the reference data set's other split (train ↔ test), against the same
reference. A model cannot be expected to beat it. It needs REF to be a data set name (or
its statistics file); for a folder or samples file as REF there is no held-out split, and
the result says so.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import DataConfig
from .contracts import (
    LATENTS,
    SAMPLES,
    check_writable,
    file_kind,
    open_safetensors,
    peek_kind,
    read_file,
    require_tensor,
    write_file,
)
from .data import DATASET_NAMES, ImageData, load_data, resize, sample_folder_file
from .devices import resolve_device
from .distributed import is_main, local_device
from .errors import SganError
from .features import Extractor, Features, check_images, class_predictions, extract, load_extractor
from .metrics import (
    FeatureStats,
    canonical_order,
    feature_stats,
    frechet_distance,
    inception_score,
    kernel_distance,
    mean_psnr,
    mode_coverage,
    precision_recall,
)
from .progress import ProgressFn
from .ranges import option_range, range_of
from .sparse_coding import support_fraction
from .validation import check_batch_memory, check_number

# metric → the result keys it produces (the keys --fail-above / --fail-below may name)
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "inception": ("inception", "inception_std"),
    "fid": ("fid",),
    "kid": ("kid", "kid_std"),
    "pr": ("precision", "recall"),
    "modes": ("modes", "modes_kl"),
    "sparsity": ("sparsity",),
    "psnr": ("psnr", "psnr_std"),
}
NEEDS_REF = ("fid", "kid", "pr")
NEEDS_FEATURES = ("inception", "fid", "kid", "pr", "modes")
OTHER_SPLIT = {"train": "test", "test": "train"}


@dataclass
class ScoreOptions:
    """Everything ``sgan score`` can be told (see the command's --help for each)."""

    samples: str | None
    metrics: list[str] = field(default_factory=list)  # empty: inception, plus fid when ref is given
    ref: str | None = None
    features: str | None = (
        None  # "inception" or "classifier:FILE"; None: the --ref stats file's extractor, else inception
    )
    weights: str | None = None  # inception weights file; None: torch hub cache, else download
    custom_weights: bool = False  # accept inception weights with another SHA-256 (labelled non-standard)
    data_root: str | None = None
    split: str = "test"  # split of SAMPLES when it is a data set name
    ref_split: str = "train"  # split of REF when it is a data set name
    limit: int | None = None  # first N samples
    ref_limit: int | None = None  # first N reference images
    image_size: int | None = None  # resize samples and reference images to N×N
    batch_size: int | None = None  # None: 50 (inception) or 500 (classifier)
    device: str = "auto"
    seed: int = 0  # IS split permutation, KID subsets, ceiling subset
    splits: int = 10  # IS splits
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    k: int = 3  # precision/recall neighbours
    ceiling: bool | None = None  # None: with a classifier yes, with inception no
    save_stats: str | None = None  # write the reference's features and statistics here
    force: bool = False
    download: bool = True  # inception weights and torchvision data sets


@dataclass
class Threshold:
    key: str
    bound: float
    above: bool  # True: fail when value > bound (--fail-above); False: fail when value < bound

    def failed(self, value: float) -> bool:
        """True unless ``value`` meets the bound; NaN (or None) never meets one."""
        if value is None or value != value:
            return True
        return not (value <= self.bound) if self.above else not (value >= self.bound)

    def __str__(self) -> str:
        return f"{self.key} {'≤' if self.above else '≥'} {self.bound:g}"


def resolve_metrics(opts: ScoreOptions) -> list[str]:
    """The metrics to compute, in canonical order; unknown names are errors."""
    if not opts.metrics:
        return [] if opts.samples is None else (["inception", "fid"] if opts.ref else ["inception"])
    unknown = [m for m in opts.metrics if m not in METRIC_KEYS]
    if unknown:
        raise SganError(f"unknown metric {unknown[0]!r}", where="--metric", fix=f"use one of: {', '.join(METRIC_KEYS)}")
    return [m for m in METRIC_KEYS if m in opts.metrics]


def parse_thresholds(above: list[str], below: list[str], metrics: list[str]) -> list[Threshold]:
    """``fid=30`` style bounds; each must name a result key of a requested metric."""
    allowed = [k for m in metrics for k in METRIC_KEYS[m]]
    out = []
    for flag, items, is_above in (("--fail-above", above, True), ("--fail-below", below, False)):
        for item in items:
            key, sep, raw = item.partition("=")
            key = key.strip()
            try:
                bound = float(raw)
            except ValueError:
                bound = None  # type: ignore[assignment]
            if not sep or bound is None or not key:
                raise SganError(
                    f"{flag} {item!r} is not of the form metric=value", where=flag, fix=f"write e.g. {flag} fid=30"
                )
            if not math.isfinite(bound):
                raise SganError(
                    f"{flag} {item!r}: the bound must be a finite number, got {bound}",
                    where=flag,
                    fix=f"write e.g. {flag} {key}=30",
                )
            if key not in allowed:
                raise SganError(
                    f"{flag} {item!r} names {key!r}, which this run does not compute",
                    where=flag,
                    fix=(
                        f"use one of: {', '.join(allowed) or '(none: add --metric)'}; "
                        "or add the --metric that produces it"
                    ),
                )
            out.append(Threshold(key, bound, is_above))
    return out


def check_thresholds(values: dict[str, float], thresholds: list[Threshold]) -> list[str]:
    """The bounds that the values miss, as readable strings (empty: all met)."""
    return [
        f"{t.key} = {values.get(t.key, float('nan')):.6g}, required {t}"
        for t in thresholds
        if t.failed(values.get(t.key, float("nan")))
    ]


# --- inputs --------------------------------------------------------------------------------


@dataclass
class ImageSet:
    """Images in canonical order, with what came beside them."""

    images: Tensor  # uint8 [N, C, H, W]
    source: str
    kind: str  # "folder", "samples", "latents", "dataset" or "stats"
    name: str
    split: str | None = None  # data sets: the split loaded
    codes: Tensor | None = None  # sgan.samples of a sparse generator
    originals: Tensor | None = None  # sgan.latents: uint8 originals, same order as images
    recorded_support: float | None = None  # sgan.samples: support fraction `sgan sample` measured over all codes


def _nonempty(images: Tensor, path: Path) -> Tensor:
    """uint8 [N, C, H, W] as read_file's kind checks left it; N ≥ 1 is scoring's own need."""
    if images.shape[0] == 0:
        raise SganError(f"{path} holds no images", where=str(path), fix="give a file with images")
    return images


def _finish(images: Tensor, opts_size: int | None, limit: int | None, **kw: Any) -> ImageSet:
    """Resize, limit, then sort into canonical order (every companion tensor alike)."""
    if limit is not None:
        check_number(limit, "limit", range_of("limit"))
        images = images[:limit]
        for key in ("codes", "originals"):
            if kw.get(key) is not None:
                kw[key] = kw[key][:limit]
    if opts_size is not None:
        images = resize(ImageData(images, None, "", ""), opts_size).images
        if kw.get("originals") is not None:
            kw["originals"] = resize(ImageData(kw["originals"], None, "", ""), opts_size).images
    order = canonical_order(images)
    for key in ("codes", "originals"):
        if kw.get(key) is not None:
            kw[key] = kw[key][order]
    return ImageSet(images=images[order].contiguous(), **kw)


def load_images(spec: str, split: str, opts: ScoreOptions, limit: int | None, what: str) -> ImageSet:
    """A folder, data set name, samples or latents file → :class:`ImageSet` (not stats)."""
    path = Path(spec)
    path = sample_folder_file(path) or path  # a folder written by `sgan sample`: its samples file, codes included
    if path.suffix == ".safetensors" and spec not in DATASET_NAMES:
        f = read_file(path, (SAMPLES, LATENTS), what=what)  # its kind's checks: dtypes, rows, shapes
        if f.kind == "sgan.samples":
            images = _nonempty(f.tensors["images"], path)
            codes = f.tensors.get("codes")
            recorded = None
            if codes is None and limit is None:  # codes left out for size: the sampler's own measurement
                try:
                    recorded = float(f.meta.get("support_fraction", "nan"))
                except ValueError:
                    recorded = None
                if recorded is not None and recorded != recorded:  # NaN: a dense generator
                    recorded = None
            return _finish(
                images,
                opts.image_size,
                limit,
                source=str(path),
                kind="samples",
                name=path.stem,
                codes=codes,
                recorded_support=recorded,
            )
        recon = _nonempty(f.tensors["reconstructions"], path)
        orig = f.tensors["originals"]
        return _finish(recon, opts.image_size, limit, source=str(path), kind="latents", name=path.stem, originals=orig)
    data = load_data(
        DataConfig(name=spec, root=opts.data_root, split=split, image_size=opts.image_size, download=opts.download)
    )
    if len(data) == 0:
        raise SganError(f"the {what} {spec} holds no images", where=spec, fix="give a non-empty data set or folder")
    kind = "dataset" if spec in DATASET_NAMES else "folder"
    return _finish(
        data.images,
        None,
        limit,
        source=data.source,
        kind=kind,
        name=data.name,
        split=split if kind == "dataset" else None,
    )


# --- reference statistics (sgan.stats) --------------------------------------------------------


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


# --- metrics -------------------------------------------------------------------------------


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


@dataclass
class ScoreResult:
    metrics: list[str]
    values: dict[str, float]
    samples: dict[str, Any] | None
    ref: dict[str, Any] | None
    extractor: dict[str, Any] | None
    ceiling: dict[str, float] | None
    ceiling_note: str
    settings: dict[str, Any]
    stats_file: str | None
    stats_hash: str | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": self.values,
            "requested": self.metrics,
            "samples": self.samples,
            "ref": self.ref,
            "extractor": self.extractor,
            "ceiling": self.ceiling,
            "ceiling_note": self.ceiling_note,
            "settings": self.settings,
            "stats_file": self.stats_file,
            "stats_hash": self.stats_hash,
            "seconds": self.seconds,
        }


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


def _check_options(opts: ScoreOptions, metrics: list[str]) -> None:
    if opts.samples is None and opts.save_stats is None:
        raise SganError(
            "no SAMPLES to score",
            where="SAMPLES",
            fix="give a folder or samples.safetensors, or only --ref with --save-stats to cache reference statistics",
        )
    if opts.samples is None and metrics:
        raise SganError("--metric needs SAMPLES to score", where="SAMPLES", fix="give a folder or samples.safetensors")
    if opts.save_stats is not None and opts.ref is None:
        raise SganError(
            "--save-stats saves the reference's statistics, but no --ref was given",
            where="--save-stats",
            fix="add --ref DATASET|FOLDER",
        )
    if "modes" in metrics and not opts.features.startswith("classifier:"):
        raise SganError(
            "--metric modes counts a classifier's classes",
            where="--metric modes",
            fix="add --features classifier:FILE (train one with sgan classifier)",
        )
    missing_ref = [m for m in metrics if m in NEEDS_REF]
    if missing_ref and opts.ref is None:
        raise SganError(
            f"--metric {missing_ref[0]} compares with reference images, but no --ref was given",
            where="--ref",
            fix="add --ref mnist (a data set name), a folder of real images, or a stats file from --save-stats",
        )
    for name in ("splits", "kid_subsets", "kid_subset_size", "k"):
        check_number(getattr(opts, name), name, option_range("score", name))
    for name, split in (("--split", opts.split), ("--ref-split", opts.ref_split)):
        if split not in OTHER_SPLIT:
            raise SganError(f"unknown split {split!r}", where=name, fix="use train or test")
    if opts.save_stats is not None:
        check_writable(Path(opts.save_stats), opts.force)


def _ceiling_pick(m: int, n: int, seed: int) -> Tensor:
    """Indices of a seeded subset of n of m held-out rows (all, in order, if n ≥ m)."""
    if n >= m:
        return torch.arange(m)
    return torch.randperm(m, generator=torch.Generator().manual_seed(seed))[:n]


def _ceiling_subset(heldout: Features, n: int, seed: int) -> Features:
    """A seeded subset of n held-out rows (all if fewer), so the ceiling has the samples' size."""
    m = int(heldout.features.shape[0])
    if n >= m:
        return heldout
    pick = _ceiling_pick(m, n, seed)
    return Features(heldout.features[pick], heldout.logits[pick])


@dataclass
class ExtractionPlan:
    """What the extractor must do, decided (and sizes checked) before any extraction."""

    extractor: Extractor | None  # None: no metric needs features
    batch: int  # images per forward pass
    want_ceiling: bool  # also score held-out real images (the real-data value)
    stacked: bool  # modes of colour digits through a 1-channel classifier, channel by channel
    extract_samples: bool  # the samples' features are needed (not only their per-channel classes)


def _stage_progress(progress: ProgressFn | None) -> Callable[[str], ProgressFn | None]:
    """A progress callback per named stage ("reference", "samples", …)."""

    def stage(name: str) -> ProgressFn | None:
        if progress is None:
            return None
        return lambda done, total, info: progress(done, total, {"stage": name, **info})

    return stage


def load_samples(opts: ScoreOptions, metrics: list[str]) -> ImageSet | None:
    """Stage 1: the images to score, checked against what the metrics need from them."""
    if opts.samples is None:
        return None
    samples = load_images(opts.samples, opts.split, opts, opts.limit, "samples")
    if "sparsity" in metrics and samples.codes is None and samples.recorded_support is None:
        raise SganError(
            "--metric sparsity reads the codes stored with samples (or the support fraction "
            f"`sgan sample` recorded over all of them), and {samples.source} has neither",
            where=samples.source,
            fix=(
                "score a samples.safetensors written by `sgan sample` from a "
                "sparse generator (without --limit when its codes were left out)"
            ),
        )
    if "psnr" in metrics and samples.originals is None:
        raise SganError(
            f"--metric psnr compares reconstructions with originals, and {samples.source} is not a latents file",
            where=samples.source,
            fix="score a latents.safetensors written by `sgan encode`",
        )
    return samples


def plan_extraction(opts: ScoreOptions, metrics: list[str], samples: ImageSet | None) -> ExtractionPlan:
    """Stage 2: load the extractor and decide what goes through it; the samples' shape and
    the batch's memory are checked here, before any extraction."""
    needs_extractor = any(m in NEEDS_FEATURES for m in metrics) or opts.save_stats is not None
    extractor = (
        load_extractor(opts.features, opts.weights, opts.custom_weights, opts.download) if needs_extractor else None
    )
    batch = opts.batch_size or (50 if extractor is not None and extractor.kind == "inception" else 500)
    want_ceiling = extractor is not None and (
        opts.ceiling if opts.ceiling is not None else extractor.kind == "classifier"
    )
    # stacked colour digits (modes only) are classified per channel, everything else whole
    stacked = (
        samples is not None
        and extractor is not None
        and "modes" in metrics
        and extractor.kind == "classifier"
        and extractor.channels == 1
        and samples.images.shape[1] > 1
    )
    extract_samples = (
        samples is not None
        and extractor is not None
        and (bool([m for m in metrics if m in NEEDS_FEATURES and m != "modes"]) or (not stacked and "modes" in metrics))
    )
    if extract_samples:
        check_images(extractor, samples.images, "samples")  # type: ignore[union-attr, arg-type]
    if extractor is not None:
        per_image = (
            3 * 299 * 299 * 4
            if extractor.kind == "inception"
            else (extractor.channels or 1) * (extractor.image_size or 1) ** 2 * 8
        )
        n = max(len(samples.images), 1) if samples is not None else batch
        check_batch_memory(batch, n, per_image, "images through the feature extractor")
    return ExtractionPlan(extractor, batch, want_ceiling, stacked, extract_samples)


def build_reference(
    opts: ScoreOptions,
    metrics: list[str],
    plan: ExtractionPlan,
    samples: ImageSet | None,
    device: torch.device,
    stage: Callable[[str], ProgressFn | None],
) -> Reference | None:
    """Stage 3: the reference — a stats file, or real images extracted (and, for a data set
    with the real-data value wanted, the held-out rows of its other split)."""
    extractor = plan.extractor
    if (
        opts.ref is None
        or extractor is None
        or not (any(m in NEEDS_REF for m in metrics) or plan.want_ceiling or opts.save_stats)
    ):
        return None
    ref_path = Path(opts.ref)
    if ref_path.suffix == ".safetensors" and ref_path.is_file() and peek_kind(ref_path) == STATS.name:
        if opts.save_stats is not None:
            raise SganError(
                f"--ref {ref_path} is already a statistics file", where="--save-stats", fix="drop --save-stats"
            )
        return load_stats(ref_path, extractor)
    ref_images = load_images(opts.ref, opts.ref_split, opts, opts.ref_limit, "reference")
    check_images(extractor, ref_images.images, "reference")
    feats = extract(extractor, ref_images.images, plan.batch, device, stage("reference"))
    is_dataset = ref_images.kind == "dataset"
    ref = Reference(
        description=f"{ref_images.name}"
        + (f" {ref_images.split} split" if is_dataset else "")
        + f" ({ref_images.source})",
        features=feats,
        stats=feature_stats(feats.features),
        from_stats_file=False,
        dataset=ref_images.name if is_dataset else None,
        split=ref_images.split,
    )
    if is_dataset and plan.want_ceiling:
        held_split = OTHER_SPLIT[ref_images.split or "train"]
        held = load_images(opts.ref, held_split, opts, None, "held-out reference")
        check_images(extractor, held.images, "held-out reference")
        held_images = held.images
        if opts.save_stats is None and samples is not None:
            # only the rows the ceiling will use (_ceiling_subset's seeded pick, applied to
            # the images): a stats file keeps them all, a plain score need not extract them
            held_images = held_images[_ceiling_pick(len(held_images), len(samples.images), opts.seed)]
        ref.heldout = extract(extractor, held_images, plan.batch, device, stage("held-out"))
        ref.heldout_description = f"{held.name} {held_split} split ({len(held.images)} images)"
    return ref


@dataclass
class Scores:
    values: dict[str, float]
    ceiling: dict[str, float] | None
    ceiling_note: str


def compute_scores(
    opts: ScoreOptions,
    metrics: list[str],
    samples: ImageSet | None,
    plan: ExtractionPlan,
    ref: Reference | None,
    device: torch.device,
    stage: Callable[[str], ProgressFn | None],
) -> Scores:
    """Stage 4: extract the samples and compute every metric; then the real-data value
    (held-out real images scored the same way) when wanted."""
    values: dict[str, float] = {}
    if samples is None:
        return Scores(values, None, "")
    extractor = plan.extractor
    ceiling, note = None, ""
    if extractor is not None and any(m in NEEDS_FEATURES for m in metrics):
        feats = (
            extract(extractor, samples.images, plan.batch, device, stage("samples")) if plan.extract_samples else None
        )
        modes = (
            class_predictions(extractor, samples.images, plan.batch, device, None if feats is None else feats.logits)
            if "modes" in metrics
            else None
        )
        values = feature_metrics(feats, ref, metrics, opts, modes)
        if plan.want_ceiling:
            ceiling, note = real_data_value(opts, metrics, samples, plan, ref, modes is not None)
    if "sparsity" in metrics:
        values["sparsity"] = support_fraction(samples.codes) if samples.codes is not None else samples.recorded_support  # type: ignore[assignment]
    if "psnr" in metrics:
        p = mean_psnr(samples.originals, samples.images)  # type: ignore[arg-type]
        values |= {"psnr": p.mean, "psnr_std": p.std}
    return Scores(values, ceiling, note)


def real_data_value(
    opts: ScoreOptions, metrics: list[str], samples: ImageSet, plan: ExtractionPlan, ref: Reference | None, modes: bool
) -> tuple[dict[str, float] | None, str]:
    """Stage 5, the ceiling: as many held-out real images as samples, scored like them."""
    if ref is None or ref.heldout is None:
        return (
            None,
            "no real-data value: it needs --ref to be a data set name "
            "(or its --save-stats file), whose other split is held out",
        )
    extractor = plan.extractor
    assert extractor is not None
    real = _ceiling_subset(ref.heldout, len(samples.images), opts.seed)
    real_modes = (real.logits.argmax(dim=1), extractor.n_classes) if modes and not plan.stacked else None
    ceiling_metrics = [m for m in metrics if m in NEEDS_FEATURES and (m != "modes" or real_modes is not None)]
    ceiling = feature_metrics(real, ref, ceiling_metrics, opts, real_modes)
    return (
        ceiling,
        f"{len(real.features)} real images of the {ref.heldout_description or 'held-out split'}, "
        "scored like the samples against the reference",
    )


def result_record(
    opts: ScoreOptions,
    metrics: list[str],
    samples: ImageSet | None,
    plan: ExtractionPlan,
    ref: Reference | None,
    scores: Scores,
    device: torch.device,
    stats_hash: str | None,
    seconds: float,
) -> ScoreResult:
    """Stage 6: what the command prints (table or JSON)."""
    extractor, values = plan.extractor, scores.values
    return ScoreResult(
        metrics=metrics,
        values=values,
        samples=None if samples is None else {
            "source": samples.source, "kind": samples.kind, "n": int(samples.images.shape[0]),
            "shape": list(samples.images.shape[1:]),
        },
        ref=None if ref is None else {
            "description": ref.description, "n": ref.stats.n, "from_stats_file": ref.from_stats_file,
            "heldout": ref.heldout_description or None,
        },
        extractor=None if extractor is None else {
            "kind": extractor.kind, "source": extractor.source, "hash": extractor.weights_hash,
            "standard": extractor.standard, "dim": extractor.dim, "n_classes": extractor.n_classes,
            "accuracy": extractor.accuracy, "dataset": extractor.dataset, "label": extractor.label,
        },
        ceiling=scores.ceiling,
        ceiling_note=scores.ceiling_note,
        settings={
            "seed": opts.seed, "splits": opts.splits, "kid_subsets": opts.kid_subsets,
            "kid_subset_size": opts.kid_subset_size, "k": opts.k, "batch_size": plan.batch, "device": str(device),
            "kid_subset_size_used": None if "kid" not in values
                else min(opts.kid_subset_size, ref.stats.n, samples.images.shape[0]),  # type: ignore[union-attr]
        },
        stats_file=opts.save_stats,
        stats_hash=stats_hash,
        seconds=seconds,
    )  # fmt: skip


def score(opts: ScoreOptions, progress: ProgressFn | None = None) -> ScoreResult:
    """The single entry point of ``sgan score``: options → samples → extraction plan →
    reference → scores (and the real-data value) → statistics file → result record."""
    start = time.perf_counter()
    opts = replace(opts, features=resolve_features(opts))  # without --features: a stats file's extractor
    metrics = resolve_metrics(opts)
    _check_options(opts, metrics)
    device = local_device(resolve_device(opts.device))  # under torchrun: this rank's GPU; each rank extracts its share
    stage = _stage_progress(progress)
    samples = load_samples(opts, metrics)
    plan = plan_extraction(opts, metrics, samples)
    ref = build_reference(opts, metrics, plan, samples, device, stage)
    scores = compute_scores(opts, metrics, samples, plan, ref, device, stage)
    # written last: a score that fails on its samples leaves no statistics file behind
    stats_hash = None
    if (
        opts.save_stats is not None and ref is not None and plan.extractor is not None and is_main()
    ):  # rank 0 writes under torchrun
        stats_hash = save_stats(Path(opts.save_stats), ref, plan.extractor, opts.force)
    return result_record(opts, metrics, samples, plan, ref, scores, device, stats_hash, time.perf_counter() - start)
