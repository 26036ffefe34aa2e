"""Sampling a trained generator (``sgan sample``): seeded latents, batched generation, interpolation.

Reproducibility: the latent of sample i depends only on (seed, i). Latents are drawn in fixed
chunks of :data:`LATENT_CHUNK` rows, chunk c from its own generator seeded by a hash of
(seed, c), so they do not depend on the batch size, the device, or how many samples are
asked for (the first 100 of ``-n 1000`` are ``-n 100``). The generator runs in eval mode
(BatchNorm on running statistics), so a sample does not depend on its batch-mates either —
but a matrix product's rounding does depend on its shape: BLAS picks its kernel and the order
of its sums by the number of rows, so the same latent run in a batch of 5 or of 256 gave codes
that differed in the last bits and, after rounding to uint8, 6 of 20,000 images one grey level
apart. So the generator always runs on aligned blocks of B latents (block b holds samples
B·b … B·b + B − 1; the last one is padded), B fixed by the generator alone
(:func:`block_size`: 256 for small images, fewer where 256 would take over a GiB), whatever
``--batch-size``: the images and codes are bit-identical for any batch size and any ``-n`` on
one machine with one thread count (another device, BLAS or thread count may round differently).

Memory is bounded by one batch for the generation; what is kept for the output file is the
uint8 images (N·C·H·W bytes), the latents [N, z_dim] and — when they fit a budget — the
codes (whole-image [N, K], patch [N, K, h, w]: 50,000 patch samples of 28×28 with 100 atoms
would be 15 GB of float32, so they are left out by default above :data:`CODES_BUDGET`; the
support fraction is always counted over every sample).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import distributed
from .contracts import SAMPLES, check_writable, write_file
from .errors import SganError
from .images import grid_scale, make_grid, save_png, to_uint8
from .outputs import Staging, locked_folder
from .progress import ProgressFn
from .ranges import range_of
from .run_files import LoadedGenerator
from .validation import ACTIVATION_FACTOR, check_batch_memory, check_memory, check_number

LATENT_CHUNK = 1024  # latents are drawn in chunks of this many rows, whatever the batch size
FORWARD_BLOCK_MAX = 256  # the generator runs on blocks of at most this many latents (module doc)
FORWARD_BLOCK_BYTES = 2**30  # … and of at most this much estimated activation memory
CODES_BUDGET = 512 * 2**20  # "auto": keep the codes when they take at most this many bytes (float32)
INTERPOLATIONS = ("linear", "slerp")
PNG_NAME = re.compile(r"^\d{6,}\.png$")  # the numbered images sample writes (000000.png …)


def chunk_seed(seed: int, chunk: int) -> int:
    """A 63-bit seed for latent chunk ``chunk`` of run ``seed`` (sha256: no collisions between
    (seed, chunk) pairs, unlike seed·M + chunk)."""
    digest = hashlib.sha256(f"sgan-latents:{seed}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def draw_latents(seed: int, start: int, stop: int, z_dim: int) -> Tensor:
    """z ~ N(0, I) for samples start … stop−1: float32 [stop − start, z_dim] on the CPU.

    Row i is row i mod C of chunk ⌊i / C⌋ (C = LATENT_CHUNK), each chunk drawn whole from its
    own seeded generator, so any range gives the same rows.
    """
    if stop <= start:
        return torch.zeros(0, z_dim)
    first, last = start // LATENT_CHUNK, (stop - 1) // LATENT_CHUNK
    chunks = [
        torch.randn(LATENT_CHUNK, z_dim, generator=torch.Generator().manual_seed(chunk_seed(seed, c)))
        for c in range(first, last + 1)
    ]
    z = torch.cat(chunks)
    offset = first * LATENT_CHUNK
    return z[start - offset : stop - offset].contiguous()


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between rows of a and b [R, d] at fractions t [T] → [R, T, d].

    z(t) = sin((1 − t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b, with Ω the angle between a and b
    (Shoemake 1985; White 2016 for GAN latents). Where a ∥ b (sin Ω ≈ 0) it is the linear path.
    """
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1).clamp(-1.0, 1.0)  # [R]
    omega = torch.acos(cos)[:, None]  # [R, 1]
    sin = torch.sin(omega)
    tt = t[None, :]  # [1, T]
    safe = sin.abs() > 1e-6
    wa = torch.where(safe, torch.sin((1 - tt) * omega) / torch.where(safe, sin, 1.0), 1 - tt)  # [R, T]
    wb = torch.where(safe, torch.sin(tt * omega) / torch.where(safe, sin, 1.0), tt)
    return wa[..., None] * a[:, None, :] + wb[..., None] * b[:, None, :]


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Linear interpolation (1 − t)·a + t·b between rows of a and b [R, d] at t [T] → [R, T, d]."""
    tt = t[None, :, None]
    return (1 - tt) * a[:, None, :] + tt * b[:, None, :]


def interpolation_latents(seed: int, pairs: int, steps: int, z_dim: int, mode: str) -> Tensor:
    """Latents [pairs·steps, z_dim], row-major: pair r goes from the latent of sample 2r to
    that of sample 2r + 1 (the same draws as plain sampling with this seed) in ``steps``
    points, endpoints included."""
    if mode not in INTERPOLATIONS:
        raise SganError(
            f"unknown interpolation {mode!r}", where="--interp", fix=f"use one of {', '.join(INTERPOLATIONS)}"
        )
    check_number(steps, "interpolate (points per pair, both ends)", range_of("sample.interpolate"))
    check_number(pairs, "the number of pairs (n)", range_of("sample.n"))
    z = draw_latents(seed, 0, 2 * pairs, z_dim)
    t = torch.linspace(0.0, 1.0, steps)
    path = (slerp if mode == "slerp" else lerp)(z[0::2], z[1::2], t)  # [pairs, steps, z_dim]
    path[:, 0], path[:, -1] = z[0::2], z[1::2]  # exact endpoints, whatever the rounding of t
    return path.reshape(-1, z_dim)


@dataclass
class Generated:
    """Generator outputs for a set of latents."""

    images: Tensor  # uint8 [N, C, H, W]
    z: Tensor  # float32 [N, z_dim]
    codes: Tensor | None  # float32 [N, K] or [N, K, h, w]; None when dense or not kept
    support_fraction: float  # share of non-zero codes over all N samples (NaN when dense)
    codes_note: str  # "stored", "dense", or why the codes were left out
    seconds: float  # generation time (including the on_batch callbacks)


def codes_decision(g: LoadedGenerator, n: int, codes: str, budget: int = CODES_BUDGET) -> tuple[bool, str]:
    """Whether to keep the codes of n samples: "auto" (within ``budget`` bytes), "always", "never"."""
    if g.code_shape is None:
        return False, "dense"
    if codes == "never":
        return False, "omitted (--no-codes)"
    size = n * math.prod(g.code_shape) * 4
    if codes == "auto" and size > budget:
        return (
            False,
            f"omitted (auto: {size / 2**20:.0f} MiB of codes exceed the "
            f"{budget / 2**20:.0f} MiB budget; pass --codes to keep them)",
        )
    return True, "stored"


def generate(
    g: LoadedGenerator,
    z: Tensor,
    batch_size: int,
    *,
    keep_codes: bool = True,
    on_batch: Callable[[int, Tensor], None] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Tensor, Tensor | None, float, float]:
    """Run G over the latents z [N, z_dim] in batches: (uint8 images, codes, support, seconds).

    A batch is ``batch_size`` rounded up to whole blocks of :func:`block_size`, and G runs on
    one block at a time (:func:`run_block`), so the outputs do not depend on ``batch_size``.
    ``on_batch(start, images_uint8)`` sees every batch as it is made (PNG writing), so
    nothing but the outputs kept grows with N.

    Under torchrun each rank makes every W-th batch (:func:`distributed.owned`), the very
    batches one process makes, and the ranks combine them: every rank returns all N images,
    bit-identical to one process; ``on_batch`` then sees every batch after the combination.
    """
    check_batch_size(batch_size)
    block = block_size(g)
    batch_size = -(-batch_size // block) * block  # whole blocks: block b starts at sample block·b
    n = z.shape[0]
    C, S = g.geometry.channels, g.geometry.size
    world = distributed.current()
    alloc = torch.zeros if world.distributed else torch.empty  # rows of other ranks stay 0 for the combination
    images = alloc(n, C, S, S, dtype=torch.uint8)
    codes_out = alloc(n, *g.code_shape) if keep_codes and g.code_shape is not None else None
    nonzero, total = 0, 0
    starts = list(range(0, n, batch_size))
    mine = [starts[i] for i in distributed.owned(len(starts))]
    start_t = time.perf_counter()
    with torch.inference_mode():
        for done_batches, start in enumerate(mine, 1):
            zb = z[start : start + batch_size]
            parts = [run_block(g, zb[i : i + block], block) for i in range(0, zb.shape[0], block)]
            imgs = torch.cat([to_uint8(x.clamp(-1.0, 1.0)).cpu() for x, _ in parts])
            images[start : start + zb.shape[0]] = imgs
            if parts[0][1] is not None:
                codes = torch.cat([c for _, c in parts])
                nonzero += int((codes != 0).sum())
                total += codes.numel()
                if codes_out is not None:
                    codes_out[start : start + zb.shape[0]] = codes.float().cpu()
            if on_batch is not None and not world.distributed:
                on_batch(start, imgs)
            if progress is not None:
                done = (
                    min(n, start + zb.shape[0])
                    if not world.distributed
                    else min(n, done_batches * world.size * batch_size)
                )
                progress(done, n, {"img/s": done / max(time.perf_counter() - start_t, 1e-9)})
    if world.distributed:
        images = distributed.combine(images)
        codes_out = distributed.combine(codes_out) if codes_out is not None else None
        nonzero, total = distributed.combine(torch.tensor([nonzero, total], dtype=torch.int64)).tolist()
        if on_batch is not None:
            for start in starts:
                on_batch(start, images[start : start + batch_size])
    support = nonzero / total if total else math.nan
    return images, codes_out, support, time.perf_counter() - start_t


def block_size(g: LoadedGenerator) -> int:
    """The number of latents G always runs on at once: the largest power of two up to
    :data:`FORWARD_BLOCK_MAX` whose activations (estimated as for a batch, see
    :func:`sgan_cli.validation.check_batch_memory`) stay within :data:`FORWARD_BLOCK_BYTES`.
    It depends on the generator's geometry only, never on the machine or the options."""
    code_values = math.prod(g.code_shape) if g.code_shape is not None else 0
    per_sample = (g.geometry.channels * g.geometry.size**2 + code_values) * 4 * ACTIVATION_FACTOR
    block = FORWARD_BLOCK_MAX
    while block > 1 and block * per_sample > FORWARD_BLOCK_BYTES:
        block //= 2
    return block


def run_block(g: LoadedGenerator, z: Tensor, block: int) -> tuple[Tensor, Tensor | None]:
    """G on at most ``block`` latents, run as one full block (zeros pad the rest, their
    outputs dropped): every product has the same shape, so each row rounds the same."""
    rows = z.shape[0]
    if rows < block:
        z = torch.cat([z, z.new_zeros(block - rows, z.shape[1])])
    x, codes = g.module.forward_codes(z.to(g.device))
    return x[:rows], None if codes is None else codes[:rows]


def check_sample_fits(g: LoadedGenerator, total: int, batch_size: int, codes: str) -> None:
    """Refuse, before any allocation, a request whose kept outputs (uint8 images, latents,
    codes when kept) and one batch cannot fit in memory (-n, --interpolate, --batch-size)."""
    C, S = g.geometry.channels, g.geometry.size
    code_values = math.prod(g.code_shape) if g.code_shape is not None else 0
    per = C * S * S + g.z_dim * 4 + (code_values * 4 if codes == "always" else 0)
    check_memory(
        total * per,
        f"{total} samples of {C}×{S}×{S}",
        "-n / --interpolate",
        "ask for fewer samples (-n) or fewer interpolation points (--interpolate), "
        "and split large requests over several runs with other --seed values",
    )
    block = block_size(g)
    check_batch_memory(block, block, C * S * S * 4 + code_values * 4, f"{C}×{S}×{S} samples")


def check_batch_size(batch_size: int) -> int:
    """A positive batch size, or one SganError (shared by sample and encode)."""
    check_number(batch_size, "batch_size", range_of("batch_size"))
    return batch_size


def png_digits(n: int) -> int:
    return max(6, len(str(max(n - 1, 0))))


def write_pngs(folder: Path, start: int, images: Tensor, digits: int) -> None:
    """images uint8 [B, C, H, W] → folder/{start + i:0{digits}d}.png (one file per image)."""
    for i, img in enumerate(images):  # one file per image: the loop is over files, not pixels
        save_png(img, folder / f"{start + i:0{digits}d}.png")


def grid_image(images: Tensor, nrow: int | None = None) -> Tensor:
    """A uint8 [C, H', W'] mosaic, small images enlarged to at least 32 pixels (as in training)."""
    return make_grid(images, nrow=nrow, pad=2, scale=grid_scale(images.shape[-1]))


@dataclass
class SampleOutputs:
    """The paths ``sgan sample`` writes into its folder."""

    folder: Path
    samples: Path  # samples.safetensors (interpolation.safetensors with --interpolate)
    grid: Path  # grid.png (interpolation.png)
    pngs: bool  # numbered PNGs are written


def plan_outputs(folder: Path, interpolate: bool, pngs: bool, force: bool) -> SampleOutputs:
    """The output paths, refused before any work if they exist and ``force`` is not given."""
    if folder.exists() and not folder.is_dir():
        raise SganError(
            f"the output path {folder} is a file, not a folder", where=str(folder), fix="give a folder with --out"
        )
    stem = "interpolation" if interpolate else "samples"
    outs = SampleOutputs(
        folder,
        folder / f"{stem}.safetensors",
        folder / ("interpolation.png" if interpolate else "grid.png"),
        pngs and not interpolate,
    )
    check_writable(outs.samples, force)
    check_writable(outs.grid, force)
    if outs.pngs and folder.is_dir() and not force:
        taken = sorted(p.name for p in folder.iterdir() if PNG_NAME.match(p.name))
        if taken:
            raise SganError(
                f"the folder {folder} already holds {len(taken)} numbered sample images ({taken[0]} …)",
                where=str(folder),
                fix="pass --force to replace them, or choose another folder with --out",
            )
    return outs


def old_numbered_pngs(folder: Path) -> list[str]:
    """The numbered PNGs an earlier ``sgan sample`` wrote into ``folder`` (replaced with --force,
    so the folder read back as a data set holds only the new samples)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if PNG_NAME.match(p.name) and p.is_file())


def save_samples(path: Path, gen: Generated, g: LoadedGenerator, meta: dict[str, Any], force: bool) -> str:
    """Write an ``sgan.samples`` file (images, z, codes when kept); returns its content hash."""
    tensors: dict[str, Tensor] = {"images": gen.images, "z": gen.z}
    if gen.codes is not None:
        tensors["codes"] = gen.codes
    lineage = {"generator": g.hash}
    if g.dictionary is not None and g.dictionary.hash:
        lineage["dictionary"] = g.dictionary.hash
    full_meta = {
        **meta,
        "generator": str(g.path),
        "ema": "true" if g.ema else "false",
        "sparse": "true" if g.sparse else "false",
        "channels": str(g.geometry.channels),
        "image_size": str(g.geometry.size),
        "n": str(gen.images.shape[0]),
        "z_dim": str(g.z_dim),
        "codes": gen.codes_note,
        "support_fraction": repr(gen.support_fraction),
    }
    if g.dictionary is not None:
        full_meta["dictionary_source"] = g.dictionary.source
    config = {**g.config, "sample": {k: v for k, v in meta.items()}}
    return write_file(path, SAMPLES, tensors, config=config, lineage=lineage, meta=full_meta, force=force)


@dataclass
class SampleRun:
    """What :func:`run_sample` did, for the command to print."""

    outputs: SampleOutputs
    generated: Generated
    hash: str
    removed_pngs: int


def run_sample(
    g: LoadedGenerator,
    folder: Path,
    *,
    n: int,
    seed: int,
    batch_size: int,
    codes: str = "auto",
    pngs: bool = True,
    interpolate: int | None = None,
    interp: str = "linear",
    force: bool = False,
    progress: ProgressFn | None = None,
) -> SampleRun:
    """Sample n images (or n interpolation rows of ``interpolate`` points) into ``folder``."""
    check_number(n, "n", range_of("sample.n"))
    if codes not in ("auto", "always", "never"):
        raise ValueError(codes)
    # every option is checked before the folder is touched (--force clears old outputs)
    check_batch_size(batch_size)
    if interp not in INTERPOLATIONS:
        raise SganError(
            f"unknown interpolation {interp!r}", where="--interp", fix=f"use one of {', '.join(INTERPOLATIONS)}"
        )
    check_sample_fits(g, n * (interpolate or 1), batch_size, codes)
    outs = plan_outputs(folder, interpolate is not None, pngs, force)
    if interpolate is not None:
        z = interpolation_latents(seed, n, interpolate, g.z_dim, interp)
    else:
        z = draw_latents(seed, 0, n, g.z_dim)
    keep, note = codes_decision(g, z.shape[0], codes)
    if not distributed.is_main():  # under torchrun: the other ranks make their batches, rank 0 writes
        images, code_t, support, seconds = generate(g, z, batch_size, keep_codes=keep, progress=progress)
        return SampleRun(outs, Generated(images, z, code_t, support, note, seconds), "", 0)
    with locked_folder(folder, "sgan sample"), Staging(folder) as staging:
        outs = plan_outputs(folder, interpolate is not None, pngs, force)  # again, now that the folder is ours
        staged = SampleOutputs(staging.dir, staging.dir / outs.samples.name, staging.dir / outs.grid.name, outs.pngs)
        digits = png_digits(n)
        on_batch = (lambda start, imgs: write_pngs(staging.dir, start, imgs, digits)) if outs.pngs else None
        images, code_t, support, seconds = generate(
            g, z, batch_size, keep_codes=keep, on_batch=on_batch, progress=progress
        )
        gen = Generated(images, z, code_t, support, note, seconds)
        meta: dict[str, Any] = {"seed": str(seed), "latent_chunk": str(LATENT_CHUNK)}
        if interpolate is not None:
            meta.update(interpolate=str(interpolate), interpolation=interp, pairs=str(n))
            save_png(grid_image(images, nrow=interpolate), staged.grid)
        else:
            save_png(grid_image(images[:64], nrow=8), staged.grid)
        digest = save_samples(staged.samples, gen, g, meta, force=False)
        # swap in: with --force the old samples file, grid and numbered PNGs go, only once the new ones are complete
        old_pngs = old_numbered_pngs(folder) if outs.pngs else []
        staging.publish(
            remove=[p.name for p in (outs.samples, outs.grid) if p.exists()] + old_pngs, commit=outs.samples.name
        )
    return SampleRun(outs, gen, digest, len(old_pngs))
