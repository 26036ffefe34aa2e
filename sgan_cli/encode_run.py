"""``sgan encode`` as named stages: check the request, encode over a dictionary or through a
reconstructor (:mod:`sgan_cli.encoding`), write the ``sgan.latents`` file and its comparison
grid (``reconstructions.png``) as one group, and the record ``--json`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import native
from .config import DataConfig, to_dict
from .contracts import LATENTS, SganFile, check_dictionary_fits, check_writable, load_dictionary, read_file, write_file
from .data import ImageData, load_data
from .devices import resolve_device
from .encoding import (
    DictionaryCoder,
    Encoded,
    check_coder_flags,
    encode_dictionary,
    encode_reconstructor,
    resolve_coder,
)
from .errors import SganError
from .images import grid_scale, make_grid, save_png
from .outputs import AtomicGroup
from .progress import ProgressFn
from .run_files import load_reconstructor


def comparison_grid(enc: Encoded, count: int = 32, gap: int = 6) -> Tensor:
    """The first ``count`` originals (left panel, rows of 8) beside their reconstructions in the
    same places (right panel), split by a grey band: uint8 [C, H', W']."""
    k = min(count, enc.originals.shape[0])
    scale = grid_scale(enc.originals.shape[-1])
    nrow = min(8, k)
    left = make_grid(enc.originals[:k], nrow=nrow, pad=2, scale=scale)
    right = make_grid(enc.reconstructions[:k], nrow=nrow, pad=2, scale=scale)
    band = torch.full((left.shape[0], left.shape[1], gap), 128, dtype=torch.uint8)
    return torch.cat([left, band, right], dim=2)


def save_latents(
    path: Path,
    enc: Encoded,
    *,
    meta: dict[str, str],
    lineage: dict[str, str],
    config: dict[str, Any],
    force: bool,
    group: AtomicGroup | None = None,
) -> str:
    """Write an ``sgan.latents`` file (renamed in at the end of ``group`` when given); returns its content hash."""
    tensors: dict[str, Tensor] = {"originals": enc.originals, "reconstructions": enc.reconstructions, "psnr": enc.psnr}
    if enc.z is not None:
        tensors["z"] = enc.z
    if enc.codes is not None:
        tensors["codes"] = enc.codes
    full_meta = {
        **meta,
        "n": str(enc.originals.shape[0]),
        "mean_psnr": repr(enc.mean_psnr),
        "support_fraction": repr(enc.support_fraction),
        "psnr_convention": "dB, 10·log10(2²/MSE) on [−1, 1] pixels, reconstruction "
        "clipped to [−1, 1] before uint8 rounding",
    }
    return write_file(path, LATENTS, tensors, config=config, lineage=lineage, meta=full_meta, force=force, group=group)


def load_latents(path: str | Path) -> SganFile:
    """Read and validate an ``sgan.latents`` file (for ``score`` and other readers)."""
    return read_file(path, LATENTS, what="latents")


@dataclass
class EncodeRequest:
    """What ``sgan encode`` was asked for (the command's options, unparsed)."""

    data: str
    reconstructor: str | None = None
    generator: str | None = None
    ema: bool = False
    dictionary: str | None = None
    method: str = "omp"
    nonzeros: int | None = None
    alpha: float | None = None
    stride: int | None = None
    data_root: str | None = None
    split: str = "train"
    limit: int | None = None
    image_size: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    out: Path = Path("latents.safetensors")
    force: bool = False

    @property
    def grid_path(self) -> Path:
        """``reconstructions.png`` beside ``latents.safetensors``; ``NAME_reconstructions.png`` beside others."""
        return self.out.with_name(
            "reconstructions.png" if self.out.stem == "latents" else f"{self.out.stem}_reconstructions.png"
        )


@dataclass
class EncodeRun:
    """What :func:`run_encode` did, for the command to print."""

    request: EncodeRequest
    encoded: Encoded
    images: ImageData
    meta: dict[str, str]
    lineage: dict[str, str]
    source: str  # what encoded the images, in words
    how: str  # the coding method, in words
    coder: DictionaryCoder | None  # None for a reconstructor
    hash: str
    device: torch.device


def check_encode_request(req: EncodeRequest) -> None:
    """Stage 1: contradictory or missing options, and the outputs' writability, before any work."""
    if (req.reconstructor is None) == (req.dictionary is None):
        raise SganError(
            "encode needs exactly one of --reconstructor and --dict",
            where="--reconstructor / --dict",
            fix="give --reconstructor RUN (latents z) or --dict dictionary.safetensors (sparse codes)",
        )
    if req.dictionary is None and (
        req.nonzeros is not None or req.alpha is not None or req.stride is not None or req.method != "omp"
    ):
        raise SganError(
            "--method, --nonzeros, --alpha and --stride apply to --dict only",
            where="--reconstructor",
            fix="leave them out, or encode with --dict",
        )
    if req.dictionary is not None and (req.generator is not None or req.ema):
        raise SganError(
            "--generator and --ema apply to --reconstructor only",
            where="--dict",
            fix="leave them out, or encode with --reconstructor",
        )
    if req.dictionary is not None:
        check_coder_flags(req.method, req.nonzeros, req.alpha)
    check_writable(req.out, req.force)
    check_writable(req.grid_path, req.force)


def _data_config(req: EncodeRequest) -> Any:
    return DataConfig(name=req.data, root=req.data_root, split=req.split, limit=req.limit, image_size=req.image_size)


def encode_over_dictionary(
    req: EncodeRequest, device: torch.device, progress: ProgressFn | None
) -> tuple[Encoded, ImageData, dict[str, str], dict[str, str], str, str, DictionaryCoder]:
    """Stage 2a: sparse codes of the images over a dictionary file."""
    assert req.dictionary is not None
    d = load_dictionary(req.dictionary)
    images = load_data(_data_config(req))
    check_dictionary_fits(d, images.channels, images.image_size, req.dictionary)
    coder = resolve_coder(d, images.image_size, req.method, req.nonzeros, req.alpha, req.stride)
    enc = encode_dictionary(images, d, coder, batch_size=req.batch_size, device=device, progress=progress)
    meta = {
        "mode": "dictionary", "method": coder.method, "dictionary": str(req.dictionary),
        "nonzeros": str(coder.nonzeros) if coder.nonzeros is not None else "null",
        "alpha": repr(coder.alpha) if coder.alpha is not None else "null",
        "patch": str(d.patch) if d.patch is not None else "null",
        "stride": str(coder.stride) if coder.stride is not None else "null",
    }  # fmt: skip
    source = f"{req.dictionary} ({d.n_atoms} " + (
        "whole-image atoms)" if d.patch is None else f"{d.patch}×{d.patch} patch atoms, stride {coder.stride})"
    )
    how = (
        f"OMP, {coder.nonzeros} non-zeros per signal"
        if coder.method == "omp"
        else f"lasso (LARS), α = {coder.alpha:.4g}"
    )
    return enc, images, meta, {"dictionary": d.hash}, source, how, coder


def encode_through_reconstructor(
    req: EncodeRequest, device: torch.device, progress: ProgressFn | None
) -> tuple[Encoded, ImageData, dict[str, str], dict[str, str], str, str]:
    """Stage 2b: latents z = E(x) of a trained reconstructor, and G(E(x))."""
    assert req.reconstructor is not None
    r = load_reconstructor(req.reconstructor, generator=req.generator, ema=req.ema, device=device)
    images = load_data(_data_config(req))
    enc = encode_reconstructor(images, r, batch_size=req.batch_size, progress=progress)
    meta = {
        "mode": "reconstructor",
        "method": "reconstructor",
        "recon_mode": r.mode,
        "reconstructor": str(r.path),
        "generator": str(r.generator.path),
        "ema": "true" if req.ema else "false",
    }
    lineage = {"reconstructor": r.hash, "generator": r.generator.hash}
    if r.generator.dictionary is not None and r.generator.dictionary.hash:
        lineage["dictionary"] = r.generator.dictionary.hash
    source = f"{r.path} ({r.mode}) with {r.generator.path}"
    how = "z = E(x) (μ of the VAE encoder)" if r.mode == "vae" else "z = E(x)"
    return enc, images, meta, lineage, source, how


def run_encode(req: EncodeRequest, progress: ProgressFn | None = None) -> EncodeRun:
    """``sgan encode``: check → encode (dictionary or reconstructor) → latents file → comparison grid."""
    check_encode_request(req)
    device = resolve_device(req.device)
    coder = None
    if req.dictionary is not None:
        enc, images, meta, lineage, source, how, coder = encode_over_dictionary(req, device, progress)
    else:
        enc, images, meta, lineage, source, how = encode_through_reconstructor(req, device, progress)
    meta.update(input=req.data, source=images.source)
    settings: dict[str, object] = {
        "input": req.data,
        "split": req.split,
        "limit": req.limit,
        "image_size": req.image_size,
    }
    if coder is not None:
        settings.update(
            dictionary=str(req.dictionary),
            method=coder.method,
            nonzeros=coder.nonzeros,
            alpha=coder.alpha,
            stride=coder.stride,
        )
    else:
        settings.update(reconstructor=meta["reconstructor"], generator=meta["generator"], ema=req.ema)
    # the old grid removed, the latents renamed in, then the new grid (AtomicGroup, as learn-dict)
    with AtomicGroup() as group:
        save_png(comparison_grid(enc), req.grid_path, group, companion=True)
        digest = save_latents(
            req.out,
            enc,
            meta=meta,
            lineage=lineage,
            config={"data": to_dict(_data_config(req)), "encode": settings},
            force=req.force,
            group=group,
        )
    return EncodeRun(req, enc, images, meta, lineage, source, how, coder, digest, device)


def encode_summary(run: EncodeRun) -> dict[str, Any]:
    """The record ``sgan encode --json`` prints."""
    enc, n = run.encoded, int(run.encoded.originals.shape[0])
    support = (
        None if enc.support_fraction != enc.support_fraction else enc.support_fraction
    )  # NaN → None (dense generator)
    summary: dict[str, Any] = {
        "input": run.request.data, "n": n, "mode": run.meta["mode"], "method": run.meta["method"],
        "mean_psnr": enc.mean_psnr, "min_psnr": float(enc.psnr.min()) if n else None, "support_fraction": support,
        "seconds": enc.seconds, "images_per_s": n / max(enc.seconds, 1e-9), "out": str(run.request.out),
        "grid": str(run.request.grid_path), "hash": run.hash, "lineage": run.lineage, "device": str(run.device),
    }  # fmt: skip
    if run.coder is not None:
        engine, why = native.engine(run.device)
        summary.update(
            nonzeros=run.coder.nonzeros, alpha=run.coder.alpha, stride=run.coder.stride, engine=engine, engine_note=why
        )
    return summary
