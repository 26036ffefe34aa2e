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

This module is the run (:func:`score`, in stages); the options and thresholds are
:mod:`sgan_cli.score_options`, the images read :mod:`sgan_cli.score_inputs`, the reference and
its statistics file :mod:`sgan_cli.reference_stats`, the metrics of one image set
:mod:`sgan_cli.score_metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .contracts import peek_kind
from .devices import resolve_device
from .distributed import is_main, local_device
from .errors import SganError
from .features import Extractor, check_images, class_predictions, extract, load_extractor
from .metrics import feature_stats, mean_psnr
from .progress import ProgressFn
from .reference_stats import STATS, Reference, load_stats, resolve_features, save_stats
from .score_inputs import ImageSet, load_images, load_samples
from .score_metrics import ceiling_pick, ceiling_subset, feature_metrics
from .score_options import NEEDS_FEATURES, NEEDS_REF, OTHER_SPLIT, ScoreOptions, check_options, resolve_metrics
from .sparse_coding import support_fraction
from .validation import check_batch_memory


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
            # only the rows the ceiling will use (ceiling_subset's seeded pick, applied to
            # the images): a stats file keeps them all, a plain score need not extract them
            held_images = held_images[ceiling_pick(len(held_images), len(samples.images), opts.seed)]
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
    real = ceiling_subset(ref.heldout, len(samples.images), opts.seed)
    real_modes = (real.logits.argmax(dim=1), extractor.n_classes) if modes and not plan.stacked else None
    ceiling_metrics = [m for m in metrics if m in NEEDS_FEATURES and (m != "modes" or real_modes is not None)]
    ceiling = feature_metrics(real, ref, ceiling_metrics, opts, real_modes)
    return (
        ceiling,
        f"{len(real.features)} real images of the {ref.heldout_description or 'held-out split'}, "
        "scored like the samples against the reference",
    )


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
    check_options(opts, metrics)
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
