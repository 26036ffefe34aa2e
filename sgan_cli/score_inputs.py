"""The images ``sgan score`` reads, as SAMPLES or REF, in canonical order.

SAMPLES is a folder of images, an ``sgan.samples`` file (``images`` uint8, optional ``codes``
of a sparse generator), an ``sgan.latents`` file (its ``reconstructions`` are scored;
``originals`` give PSNR) or a data set name (real images, e.g. the ceiling by hand). Images are
put in a canonical order (sorted by a hash of their pixels,
:func:`sgan_cli.metrics.canonical_order`) before anything else, so the seeded random splits (IS)
and subsets (KID) pick the same images whatever order the files came in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from .config import DataConfig
from .contracts import LATENTS, SAMPLES, read_file
from .data import DATASET_NAMES, ImageData, load_data, resize, sample_folder_file
from .errors import SganError
from .metrics import canonical_order
from .ranges import range_of
from .score_options import ScoreOptions
from .validation import check_number


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
