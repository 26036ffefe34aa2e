"""Encoding images (``sgan encode``): latents through a reconstructor, or sparse codes over a dictionary.

Two ways from images x [N, C, H, W] (pixels in [−1, 1]) to a representation and back:

* **reconstructor**: z = E(x) [N, z_dim] by the trained encoder (for a VAE
  encoder, its mean μ), reconstruction G(E(x));
* **dictionary**: codes a with x ≈ aD. Whole-image atoms code each flattened
  image ([N, K]). Patch atoms code every P×P patch position ([N, K, h, w], h = (H − P)/s + 1
  at stride s — the windows ``learn-dict`` learned from), and the reconstruction sums the
  patches with ``conv_transpose2d(codes, atoms.view(K, C, P, P), stride=s)`` and divides by
  the number of patches covering each pixel, the synthesis of :class:`nets.PatchSynthesis`.
  A dictionary with a mean term m codes x − m (or each patch minus the mean patch) and
  adds m back. The coder is OMP with a fixed number of non-zeros per signal, or the exact lasso
  min ½‖y − aD‖² + α‖a‖₁ (LARS) at the dictionary's α.

PSNR per image is 10·log10(2² / MSE) on [−1, 1] pixels (``sparse_coding.psnr``), between the
original and the reconstruction clipped to [−1, 1] before uint8 rounding (the stored uint8
reconstructions add at most (2/255)²/12 of quantisation MSE, a cap near 59 dB).

The ``sgan encode`` run (request, latents file, comparison grid) is :mod:`sgan_cli.encode_run`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from . import native
from .contracts import DictionaryFile
from .data import ImageData
from .errors import SganError
from .images import to_uint8
from .lars import lasso_lars
from .progress import ProgressFn
from .ranges import range_of
from .run_files import LoadedReconstructor
from .sampling import check_batch_size
from .sparse_coding import omp, psnr, support_fraction
from .validation import check_number

METHODS = ("omp", "lasso")
PATCH_SIGNALS_PER_BATCH = 32768  # patch mode: images per batch so that a batch codes about this many patches


@dataclass
class Encoded:
    """Representations of N images and their reconstructions."""

    originals: Tensor  # uint8 [N, C, H, W]
    reconstructions: Tensor  # uint8 [N, C, H, W]
    psnr: Tensor  # float32 [N], dB
    z: Tensor | None  # float32 [N, z_dim] (reconstructor)
    codes: Tensor | None  # float32 [N, K] or [N, K, h, w] (dictionary)
    support_fraction: float  # share of non-zero codes (of G's codes in reconstructor mode; NaN if dense)
    seconds: float

    @property
    def mean_psnr(self) -> float:
        return float(self.psnr.double().mean()) if self.psnr.numel() else math.nan


@dataclass
class DictionaryCoder:
    """How images are coded over a dictionary: method, its parameter, patch layout."""

    method: str  # "omp" or "lasso"
    nonzeros: int | None  # OMP: non-zeros per signal
    alpha: float | None  # lasso: α of ½‖y − aD‖² + α‖a‖₁
    stride: int | None  # patch positions' stride (None: whole-image atoms)


def check_coder_flags(method: str, nonzeros: int | None, alpha: float | None) -> None:
    """The coder options that contradict each other, checked before any data is loaded."""
    if method not in METHODS:
        raise SganError(f"unknown method {method!r}", where="method", fix=f"use one of {', '.join(METHODS)}")
    if method == "omp" and alpha is not None:
        raise SganError("alpha applies to method lasso", where="alpha", fix="leave out alpha, or use method lasso")
    if method == "lasso" and nonzeros is not None:
        raise SganError(
            "nonzeros applies to method omp (the lasso's support follows from α)",
            where="nonzeros",
            fix="leave out nonzeros, or use method omp",
        )


def resolve_coder(
    d: DictionaryFile, size: int, method: str, nonzeros: int | None, alpha: float | None, stride: int | None
) -> DictionaryCoder:
    """Fill in the defaults and check them: OMP k = round(s·K) of the dictionary's achieved
    sparsity s (≥ 1); lasso α = the dictionary's α; patch stride 1, or P for a tiled dictionary."""
    check_coder_flags(method, nonzeros, alpha)
    dim = int(d.atoms.shape[1])
    if method == "omp":
        if nonzeros is None:
            if math.isnan(d.achieved_sparsity):
                raise SganError(
                    f"the dictionary {d.source} records no achieved sparsity to choose the non-zeros from",
                    where=d.source,
                    fix="give nonzeros, the non-zeros per signal",
                )
            nonzeros = max(1, round(d.achieved_sparsity * d.n_atoms))
        limit = min(d.n_atoms, dim)
        if not 1 <= nonzeros <= limit:
            raise SganError(
                f"nonzeros must be between 1 and {limit} (the atoms and the signal dimension), got {nonzeros}",
                where="nonzeros",
                fix=f"give at most {limit} non-zeros",
            )
        alpha = None
    else:
        if alpha is None:
            alpha = d.alpha
            if math.isnan(alpha):
                raise SganError(
                    f"the dictionary {d.source} records no α", where=d.source, fix="give alpha, the lasso penalty"
                )
        check_number(alpha, "alpha", range_of("alpha"))
        nonzeros = None
    if d.patch is None:
        if stride is not None:
            raise SganError(
                "stride applies to patch dictionaries only",
                where="stride",
                fix="leave out stride for whole-image atoms",
            )
        return DictionaryCoder(method, nonzeros, alpha, None)
    if stride is None:
        stride = d.patch if d.stride == d.patch and size % d.patch == 0 else 1
    if not 1 <= stride <= d.patch or (size - d.patch) % stride:
        raise SganError(
            f"stride {stride} leaves pixels of the {size}×{size} images uncovered by {d.patch}×{d.patch} patches",
            where="stride",
            fix=f"give a stride of at most {d.patch} that divides {size - d.patch} (1 codes every patch position)",
        )
    return DictionaryCoder(method, nonzeros, alpha, stride)


def code_signals(Y: Tensor, atoms: Tensor, coder: DictionaryCoder) -> Tensor:
    """Codes [n, K] (float64) of the signals Y [n, dim]: OMP with k non-zeros, or exact lasso (LARS).

    Solved (and synthesised by the callers) in float64: OMP's least squares go through the
    normal equations (D_S D_Sᵀ) c = D_S y, of condition number cond(D_S)². A square
    dictionary learned on digits has cond(D) ≈ 2·10⁹ (border pixels that never vary); at
    full support float32 lost whole images (worst PSNR 11.9 dB) where float64 reconstructs
    every image (worst 65.7 dB).

    Identical signals have identical codes, so only the distinct rows are coded: 59 % of the
    3×3 patches of an MNIST batch repeat (53 % are plain background), and coding the distinct
    ones made LARS 5× faster on them with bit-identical codes.
    """
    distinct, inverse = torch.unique(Y.double(), dim=0, return_inverse=True)  # [m, dim], [n]
    atoms64 = atoms.double()
    if coder.method == "omp":
        assert coder.nonzeros is not None
        return omp(distinct, atoms64, coder.nonzeros)[inverse]
    assert coder.alpha is not None
    return lasso_lars(distinct, atoms64, coder.alpha)[inverse]


def overlap_count(code_side: int, patch: int, stride: int, device: torch.device) -> Tensor:
    """Patches covering each pixel [1, 1, H, W]: the synthesis of an all-ones code map."""
    ones = torch.ones(1, 1, code_side, code_side, device=device)
    return F.conv_transpose2d(ones, torch.ones(1, 1, patch, patch, device=device), stride=stride)


def patch_codes(
    x: Tensor, atoms: Tensor, patch: int, stride: int, coder: DictionaryCoder, mean: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Patch mode: x [B, C, H, W] → (code map [B, K, h, w], reconstruction [B, C, H, W]), float64.

    With the dictionary's mean patch m [C·P·P], every patch is coded as y − m and m is added
    back to every patch of the reconstruction (the synthesis of :class:`nets.PatchSynthesis`).

    Every window, as rows [B·h·w, C·P·P] in the (C, P, P) order of the atoms (what
    ``F.unfold`` gives, through zero-copy ``Tensor.unfold`` views and one copy: ``F.unfold``'s
    per-image parallel loop stalls for seconds when OpenMP threads contend), so
    all patches are coded in one batched call; the inverse is one ``conv_transpose2d``.
    """
    B, C, H, _ = x.shape
    K = atoms.shape[0]
    side = (H - patch) // stride + 1
    windows = x.unfold(2, patch, stride).unfold(3, patch, stride)  # view [B, C, h, w, P, P]
    Y = windows.permute(0, 2, 3, 1, 4, 5).reshape(B * side * side, C * patch * patch)  # [B·h·w, C·P·P]
    if mean is not None:
        Y = Y - mean.to(Y)
    codes = code_signals(Y, atoms, coder).view(B, side, side, K).permute(0, 3, 1, 2)  # [B, K, h, w]
    kernel = atoms.double().reshape(K, C, patch, patch)
    recon = F.conv_transpose2d(codes, kernel, stride=stride)
    if mean is not None:
        ones = torch.ones(1, 1, side, side, dtype=torch.float64, device=x.device)
        recon = recon + F.conv_transpose2d(ones, mean.double().to(x.device).view(1, C, patch, patch), stride=stride)
    return codes, recon / overlap_count(side, patch, stride, x.device).double()


def encode_dictionary(
    data: ImageData,
    d: DictionaryFile,
    coder: DictionaryCoder,
    *,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> Encoded:
    """Sparse codes of every image over ``d`` (see module doc), batched over images; the
    caller has checked the dictionary fits them (``contracts.check_dictionary_fits``)."""
    dev = torch.device(device)
    atoms = d.atoms.to(dev)
    mean = d.mean.to(dev)  # [dim]; load_dictionary gives zeros for files without a mean
    n, S = len(data), data.image_size
    if d.patch is None:
        code_shape: tuple[int, ...] = (d.n_atoms,)
        default_batch = 256
    else:
        assert coder.stride is not None
        side = (S - d.patch) // coder.stride + 1
        code_shape = (d.n_atoms, side, side)
        default_batch = max(1, PATCH_SIGNALS_PER_BATCH // (side * side))
    bs = _batch(batch_size, default_batch)
    codes = torch.empty(n, *code_shape)
    recon = torch.empty_like(data.images)
    quality = torch.empty(n, dtype=torch.float32)
    native.library()  # loading the compiled kernels is not coding time
    t0 = time.perf_counter()
    for start in range(0, n, bs):
        x = data.floats(slice(start, start + bs)).to(dev)
        if d.patch is None:
            c = code_signals(x.reshape(x.shape[0], -1) - mean, atoms, coder)  # [B, K] float64, codes of x − m
            r = (c @ atoms.double() + mean.double()).view_as(x)
        else:
            assert coder.stride is not None
            c, r = patch_codes(x, atoms, d.patch, coder.stride, coder, mean)
        r = r.clamp(-1.0, 1.0)
        codes[start : start + x.shape[0]] = c.float().cpu()
        recon[start : start + x.shape[0]] = to_uint8(r).cpu()
        quality[start : start + x.shape[0]] = psnr(r, x).float().cpu()
        if progress is not None:
            done = start + x.shape[0]
            progress(
                done,
                n,
                {"img/s": done / max(time.perf_counter() - t0, 1e-9), "psnr": float(quality[:done].double().mean())},
            )
    return Encoded(data.images, recon, quality, None, codes, support_fraction(codes), time.perf_counter() - t0)


def encode_reconstructor(
    data: ImageData,
    r: LoadedReconstructor,
    *,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
) -> Encoded:
    """z = E(x) and G(E(x)) for every image, batched; eval mode for both nets."""
    C, S = r.geometry.channels, r.geometry.size
    if (data.channels, data.image_size) != (C, S):
        raise SganError(
            f"the images are {data.channels}×{data.image_size}×{data.image_size} "
            f"but the reconstructor {r.path} takes {C}×{S}×{S}",
            where=data.source,
            fix=f"pass --image-size {S}, or give images of the data set the run was trained on"
            if data.channels == C
            else "give images of the data set the run was trained on",
        )
    dev = r.generator.device
    n = len(data)
    bs = _batch(batch_size, 256)
    z_all = torch.empty(n, r.z_dim)
    recon = torch.empty_like(data.images)
    quality = torch.empty(n, dtype=torch.float32)
    nonzero, total = 0, 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, n, bs):
            x = data.floats(slice(start, start + bs)).to(dev)
            z = r.module(x)  # [B, z_dim]; the VAE encoder's forward is μ
            y, codes = r.generator.module.forward_codes(z)
            y = y.clamp(-1.0, 1.0)
            if codes is not None:
                nonzero += int((codes != 0).sum())
                total += codes.numel()
            z_all[start : start + x.shape[0]] = z.float().cpu()
            recon[start : start + x.shape[0]] = to_uint8(y).cpu()
            quality[start : start + x.shape[0]] = psnr(y, x).float().cpu()
            if progress is not None:
                done = start + x.shape[0]
                progress(
                    done,
                    n,
                    {
                        "img/s": done / max(time.perf_counter() - t0, 1e-9),
                        "psnr": float(quality[:done].double().mean()),
                    },
                )
    support = nonzero / total if total else math.nan
    return Encoded(data.images, recon, quality, z_all, None, support, time.perf_counter() - t0)


def _batch(batch_size: int | None, default: int) -> int:
    return default if batch_size is None else check_batch_size(batch_size)
