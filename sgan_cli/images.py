"""Pixel conversions and PNG grids (atoms, samples, reconstructions). Writes are atomic."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from .contracts import atomic_write_bytes
from .outputs import AtomicGroup


def to_uint8(x: Tensor) -> Tensor:
    """Floats in [−1, 1] → uint8 [0, 255] (rounded, clipped)."""
    return ((x.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def make_grid(images: Tensor, nrow: int | None = None, pad: int = 1, scale: int = 1, pad_value: int = 0) -> Tensor:
    """uint8 [N, C, H, W] → one uint8 [C, H', W'] mosaic, row-major, ``pad`` pixels apart.

    ``scale`` enlarges every cell by pixel repetition (3×3 patch atoms are unreadable at 1×).
    """
    n, c, h, w = images.shape
    if scale > 1:
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        h, w = h * scale, w * scale
    ncol = nrow or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncol))
    grid = torch.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, dtype=torch.uint8)
    # fill cells with one reshape instead of a Python loop over images
    cells = torch.full((nrows * ncol, c, h, w), pad_value, dtype=torch.uint8)
    cells[:n] = images
    cells = cells.view(nrows, ncol, c, h, w).permute(2, 0, 3, 1, 4)  # [C, rows, H, cols, W]
    body = (
        grid[:, pad:, pad:].unfold(1, h + pad, h + pad).unfold(2, w + pad, w + pad)
    )  # view [C, rows, cols, h+pad, w+pad]
    body[:, :, :, :h, :w] = cells.permute(0, 1, 3, 2, 4)
    return grid


def grid_scale(size: int) -> int:
    """The integer enlargement that shows S×S images at least 32 pixels wide in a grid (training
    grids, sample grids, encode comparisons alike)."""
    return max(1, math.ceil(32 / size))


def save_png(image: Tensor, path: str | Path, group: AtomicGroup | None = None, *, companion: bool = False) -> None:
    """Write a uint8 [C, H, W] image (C = 1 or 3) as PNG, atomically (renamed in at the end of
    ``group`` when given; ``companion``: the image pictures the group's data files, so the old
    one is removed before they are renamed in and the new one renamed in after them)."""
    from PIL import Image

    arr = image.cpu().numpy()
    pic = (
        Image.fromarray(arr[0], mode="L") if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0), mode="RGB")
    )
    atomic_write_bytes(Path(path), lambda tmp: pic.save(tmp, format="PNG"), group, companion=companion)


def atoms_to_images(atoms: Tensor, channels: int, side: int) -> Tensor:
    """Atoms [K, C·side·side] → uint8 [K, C, side, side], each stretched to its own range.

    Atoms are unit-norm directions, not images; per-atom min–max scaling shows their shape
    (the usual way dictionaries are drawn).
    """
    a = atoms.reshape(atoms.shape[0], channels, side, side).float()
    lo = a.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
    hi = a.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    return ((a - lo) / (hi - lo).clamp_min(1e-12) * 255).round().to(torch.uint8)


def save_atoms_png(atoms: Tensor, channels: int, side: int, path: str | Path, group: AtomicGroup | None = None) -> None:
    """The dictionary as a grid of atoms on grey; small patches are enlarged to ≥ 24 pixels.
    In a ``group`` it is the companion of the dictionary file (renamed in after it, the old
    picture removed before it)."""
    pics = atoms_to_images(atoms, channels, side)
    scale = max(1, math.ceil(24 / side))
    save_png(make_grid(pics, scale=scale, pad=2, pad_value=128), path, group, companion=True)
