"""What ``sgan score`` is asked: its options, the metrics and the result keys each produces, the
bounds ``--fail-above`` / ``--fail-below`` set on them, and the checks of the options together."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .contracts import check_writable
from .errors import SganError
from .ranges import option_range
from .validation import check_number

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


def check_options(opts: ScoreOptions, metrics: list[str]) -> None:
    """Options that contradict each other or the metrics, out-of-range numbers, an unknown split
    or an output that may not be written: one SganError each, before any work."""
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
