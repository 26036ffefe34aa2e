"""Sample-quality metrics as pure maths on feature matrices and logits.

Nothing here loads images or nets: callers pass features [N, D] and logits [N, K] from an
extractor (:mod:`sgan_cli.features`). Statistics are taken in float64. The metrics that
draw random subsets (IS splits, KID subsets) use their own seeded ``torch.Generator``, so a
result depends only on (features, seed); callers make it independent of the input order
by passing rows in a canonical order (:func:`canonical_order`).

References: Inception Score — Salimans et al. 2016; FID — Heusel et al. 2017; KID —
Bińkowski et al. 2018; precision/recall — Kynkäänniemi et al. 2019; mode coverage on
(stacked) MNIST — Metz et al. 2017, Srivastava et al. 2017 (VEEGAN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import SganError
from .sparse_coding import psnr


@dataclass
class FeatureStats:
    """Mean μ [D] and covariance Σ [D, D] (float64, unbiased: divided by n − 1) of n rows."""

    mean: Tensor
    cov: Tensor
    n: int
    centered: Tensor | None = None  # the rows minus μ [n, D], float64: a cheaper FID when n < D


def canonical_order(images: Tensor) -> Tensor:
    """A permutation that sorts uint8 images [N, ...] by a hash of their pixels.

    Sorting by content (not by position) makes every downstream metric independent of the
    order the images came in. The hash Σ_j w_j·x_j uses fixed random weights w_j < 2³¹ on
    pixel values < 2⁸, so the int64 sum cannot overflow below 2²⁴ pixels per image; equal
    hashes mean identical images (up to a ~N²/2⁵⁷ collision chance), whose order does not
    matter. Images: [N, ...] uint8 → permutation [N] int64.
    """
    flat = images.reshape(images.shape[0], -1)
    if flat.shape[1] >= 2**24:
        raise SganError(
            f"images of {flat.shape[1]} values each are too large to order by content (the limit is {2**24 - 1})",
            where="the images to score",
            fix="pass --image-size to score them at a smaller size",
        )
    gen = torch.Generator().manual_seed(0x5C0DE)
    weights = torch.randint(0, 2**31, (flat.shape[1],), generator=gen, dtype=torch.int64).to(flat.device)
    keys = torch.zeros(flat.shape[0], dtype=torch.int64, device=flat.device)
    for chunk in torch.arange(flat.shape[0], device=flat.device).split(4096):  # bounded memory: chunk × pixels int64
        keys[chunk] = (flat[chunk].long() * weights).sum(dim=1)
    return torch.argsort(keys, stable=True)


def feature_stats(features: Tensor) -> FeatureStats:
    """μ and Σ of features [N, D] in float64, from centred rows (no E[xxᵀ] − μμᵀ cancellation)."""
    n = int(features.shape[0])
    if n < 2:
        raise SganError(f"statistics need at least 2 images, got {n}", fix="score more images")
    x = features.double()
    mean = x.mean(dim=0)
    xc = x - mean
    cov = xc.T @ xc / (n - 1)
    return FeatureStats(mean=mean, cov=cov, n=n, centered=xc)


def _psd_eigvals(vals: Tensor) -> Tensor:
    """Eigenvalues of a PSD matrix with rounding noise zeroed: |λ| ≤ D·ε·λ_max → 0 (numpy's matrix_rank tolerance).

    √ amplifies that noise (√1e-14 = 1e-7 per null direction), which would otherwise make
    the FID of a rank-deficient set against itself visibly non-zero.
    """
    tol = vals.shape[-1] * torch.finfo(vals.dtype).eps * vals.abs().max().clamp_min(torch.finfo(vals.dtype).tiny)
    return torch.where(vals > tol, vals, torch.zeros_like(vals))


def psd_sqrt(matrix: Tensor) -> Tensor:
    """Symmetric square root of a symmetric PSD matrix by eigendecomposition."""
    sym = (matrix + matrix.T) / 2
    vals, vecs = torch.linalg.eigh(sym)
    return (vecs * _psd_eigvals(vals).sqrt()) @ vecs.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """FID = ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr (Σ₁Σ₂)^½, in float64.

    Tr (Σ₁Σ₂)^½ is the sum of √λ over the eigenvalues λ of M = Σ₁^½ Σ₂ Σ₁^½: M is similar to
    Σ₁Σ₂ (M = Σ₁^½ (Σ₁Σ₂) Σ₁^-½ where Σ₁ is invertible, and by continuity otherwise) but is
    symmetric PSD, so a symmetric eigensolver gives real, non-negative eigenvalues. The
    usual scipy.linalg.sqrtm of the non-symmetric Σ₁Σ₂ is slower, can return spurious
    imaginary parts and fails on singular covariances (dead ReLU features), which this
    form handles without an ε on the diagonal.

    FID is a squared distance, so it is never reported below 0: rounding can make the sum
    of the four terms slightly negative (−3·10⁻¹¹ for a set against itself); such values
    are returned as 0.0.
    """
    if a.mean.shape != b.mean.shape:
        raise SganError(
            f"feature sizes differ ({a.mean.shape[0]} and {b.mean.shape[0]})",
            fix="compute both sets with the same extractor",
        )
    diff = a.mean - b.mean
    d = int(a.mean.shape[0])
    if a.centered is not None and b.centered is not None and min(a.n, b.n) < d:
        return _at_least_zero(
            float(
                diff @ diff
                + torch.trace(a.cov)
                + torch.trace(b.cov)
                - 2 * _trace_sqrt_from_rows(a.centered, b.centered)
            )
        )
    root = psd_sqrt(a.cov)
    m = root @ b.cov @ root
    tr_covmean = _psd_eigvals(torch.linalg.eigvalsh((m + m.T) / 2)).sqrt().sum()
    return _at_least_zero(float(diff @ diff + torch.trace(a.cov) + torch.trace(b.cov) - 2 * tr_covmean))


def _at_least_zero(x: float) -> float:
    """Clamp rounding below 0 to 0.0; NaN stays NaN (a gate must see it)."""
    return x if x != x else max(0.0, x)


def _trace_sqrt_from_rows(a: Tensor, b: Tensor) -> Tensor:
    """Tr (Σ₁Σ₂)^½ from centred rows A [n₁, D], B [n₂, D] when n < D: ‖ABᵀ‖_* / √((n₁−1)(n₂−1)).

    Σ₁Σ₂ = AᵀA·BᵀB/k (k = (n₁−1)(n₂−1)) has the non-zero eigenvalues of A·BᵀB·Aᵀ/k = CCᵀ/k
    with C = ABᵀ [n₁, n₂] (XY and YX share them), i.e. σᵢ(C)²/k; so the trace of the root
    is Σσᵢ(C)/√k. An n×n SVD instead of two D×D eigendecompositions (D = 2048 for
    Inception: seconds saved on small sets, and no rounding noise from the null space).
    """
    k = (a.shape[0] - 1) * (b.shape[0] - 1)
    return torch.linalg.svdvals(a @ b.T).sum() / k**0.5


@dataclass
class MeanStd:
    """A metric over random splits or subsets: mean and (population) standard deviation."""

    mean: float
    std: float
    n_parts: int  # splits or subsets
    part_size: int  # rows per split (the largest) or per subset


def inception_score(logits: Tensor, splits: int = 10, seed: int = 0) -> MeanStd:
    """IS = exp(E_x KL(p(y|x) ‖ p(y))) on each of ``splits`` parts of a seeded permutation.

    logits [N, K] → p(y|x) = softmax, in float64. As torch-fidelity and torchmetrics do,
    rows are permuted (here by a generator seeded with ``seed``) and cut into ``splits``
    contiguous parts (torch.chunk sizes); p(y) is each part's mean. The std is over the
    splits, with 1/splits as in Salimans et al.'s code and torch-fidelity (torchmetrics
    divides by splits − 1).
    """
    n = int(logits.shape[0])
    if n < splits:
        raise SganError(
            f"the Inception Score needs at least {splits} images (one per split), got {n}", fix="score more images"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    log_p = torch.log_softmax(logits.double().cpu()[perm], dim=1)  # [N, K]
    scores = []
    for part in log_p.chunk(splits, dim=0):  # a loop over the 10 splits, not over images
        p = part.exp()
        log_marginal = torch.logsumexp(part, dim=0) - torch.log(
            torch.tensor(float(part.shape[0]), dtype=torch.float64)
        )  # log p(y) [K]
        kl = (p * (part - log_marginal)).sum(dim=1).mean()
        scores.append(kl.exp())
    s = torch.stack(scores)
    return MeanStd(float(s.mean()), float(s.std(unbiased=False)), len(scores), int(log_p.chunk(splits)[0].shape[0]))


def _poly_kernel(x: Tensor, y: Tensor, degree: int, coef: float) -> Tensor:
    """k(x, y) = (xᵀy / D + coef)^degree on batches: x [S, m, D], y [S, m, D] → [S, m, m]."""
    return (x @ y.transpose(1, 2) / x.shape[-1] + coef) ** degree


def kernel_distance(
    real: Tensor,
    fake: Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    degree: int = 3,
    coef: float = 1.0,
) -> MeanStd:
    """KID: unbiased MMD² with the kernel (xᵀy/D + 1)³, over random subsets (Bińkowski et al.).

    For each of ``subsets`` subsets, m = min(subset_size, N_real, N_fake) rows are drawn
    without replacement from each set (torch.randperm from a generator seeded with
    ``seed``: real, then fake, subset after subset, the draw order torchmetrics uses), and

        MMD²_u = Σ_{i≠j} k(xᵢ,xⱼ)/(m(m−1)) + Σ_{i≠j} k(yᵢ,yⱼ)/(m(m−1)) − 2 Σ_{i,j} k(xᵢ,yⱼ)/m².

    Subsets are evaluated in batches ([S, m, m] kernels, float64). Mean and population
    std over subsets, as torchmetrics and torch-fidelity report.
    """
    n_r, n_f = int(real.shape[0]), int(fake.shape[0])
    m = min(subset_size, n_r, n_f)
    if m < 2:
        raise SganError(f"KID needs at least 2 images in each set, got {n_r} and {n_f}", fix="score more images")
    gen = torch.Generator().manual_seed(seed)
    idx_r, idx_f = [], []
    for _ in range(subsets):  # index draws only (cheap); the kernels below are batched
        idx_r.append(torch.randperm(n_r, generator=gen)[:m])
        idx_f.append(torch.randperm(n_f, generator=gen)[:m])
    ir, jf = torch.stack(idx_r).to(real.device), torch.stack(idx_f).to(fake.device)
    x_all, y_all = real.double(), fake.double()
    per_batch = max(
        1, (2**24) // (m * (m + real.shape[1]))
    )  # ≈ 3 × 128 MB per batch: kernels [S, m, m] and rows [S, m, D]
    values = []
    for start in range(0, subsets, per_batch):
        x = x_all[ir[start : start + per_batch]]  # [S, m, D]
        y = y_all[jf[start : start + per_batch]]
        k_xx, k_yy, k_xy = (
            _poly_kernel(x, x, degree, coef),
            _poly_kernel(y, y, degree, coef),
            _poly_kernel(x, y, degree, coef),
        )
        off_xx = k_xx.sum(dim=(1, 2)) - k_xx.diagonal(dim1=1, dim2=2).sum(dim=1)
        off_yy = k_yy.sum(dim=(1, 2)) - k_yy.diagonal(dim1=1, dim2=2).sum(dim=1)
        values.append((off_xx + off_yy) / (m * (m - 1)) - 2 * k_xy.sum(dim=(1, 2)) / (m * m))
    v = torch.cat(values).cpu()
    return MeanStd(float(v.mean()), float(v.std(unbiased=False)), subsets, m)


def knn_radii(x: Tensor, k: int = 3, chunk: int = 1024) -> Tensor:
    """Distance from each row of x [N, D] to its k-th nearest other row → [N] float64.

    Distances come in row chunks ([chunk, N] at a time); column 0 of the k+1 smallest is
    the row itself (distance 0), so column k is the k-th neighbour.
    """
    n = int(x.shape[0])
    if n <= k:
        raise SganError(
            f"precision/recall with k = {k} needs more than {k} images in each set, got {n}", fix="score more images"
        )
    xd = x.double()
    out = []
    for block in xd.split(chunk):
        d = torch.cdist(block, xd)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def manifold_coverage(support: Tensor, radii: Tensor, query: Tensor, chunk: int = 1024) -> float:
    """Share of query rows [M, D] inside at least one ball B(supportᵢ, radiiᵢ) (support [N, D])."""
    s = support.double()
    inside = []
    for block in query.double().split(chunk):
        inside.append((torch.cdist(block, s) <= radii[None, :]).any(dim=1))
    return float(torch.cat(inside).double().mean())


@dataclass
class PrecisionRecall:
    precision: float  # share of fake samples on the real manifold
    recall: float  # share of real samples on the fake manifold
    k: int


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019): k-NN balls approximate each manifold."""
    precision = manifold_coverage(real, knn_radii(real, k), fake)
    recall = manifold_coverage(fake, knn_radii(fake, k), real)
    return PrecisionRecall(precision, recall, k)


@dataclass
class ModeCoverage:
    covered: int  # modes with at least one sample
    total: int  # number of modes (classes, or classes^channels for stacked digits)
    kl: float  # KL(p̂ ‖ uniform) of the mode histogram, nats (0 when perfectly even)
    histogram: Tensor  # [total] counts


def mode_coverage(modes: Tensor, n_modes: int) -> ModeCoverage:
    """Modes hit and KL(p̂ ‖ U) = Σ p̂ log(p̂·n_modes) (0·log 0 = 0) of predicted modes [N] int64."""
    hist = torch.bincount(modes.long().cpu(), minlength=n_modes)[:n_modes]
    p = hist.double() / max(1, int(hist.sum()))
    nz = p > 0
    kl = float((p[nz] * torch.log(p[nz] * n_modes)).sum())
    return ModeCoverage(int(nz.sum()), n_modes, kl, hist)


def stacked_modes(per_channel: Tensor, n_classes: int) -> Tensor:
    """Stacked-MNIST mode of each image from per-channel classes [N, C] → Σ_c class_c·n_classes^(C−1−c) [N]."""
    c = per_channel.shape[1]
    place = n_classes ** torch.arange(c - 1, -1, -1, device=per_channel.device)
    return (per_channel.long() * place).sum(dim=1)


def mean_psnr(originals: Tensor, reconstructions: Tensor) -> MeanStd:
    """PSNR (dB) per image of uint8 reconstructions [N, C, H, W] against originals; mean and std over images.

    On pixels in [−1, 1] (range 2), 10·log10(2²/MSE), which equals the uint8 form with range 255.
    """
    x = originals.double() / 127.5 - 1.0
    y = reconstructions.double() / 127.5 - 1.0
    values = psnr(x, y)
    return MeanStd(float(values.mean()), float(values.std(unbiased=False)), int(values.shape[0]), 1)
