"""Sparse coding of signals over a fixed dictionary: lasso by FISTA, and OMP; the lasso objective,
support and PSNR measures. The exact lasso (LARS homotopy) is :mod:`sgan_cli.lars`.

Conventions used throughout sgan: a dictionary is a tensor ``atoms`` of shape
[K, dim] whose *rows* are unit-norm atoms (scikit-learn's ``components_`` layout); signals are
rows of ``Y`` [n, dim]; codes are rows of ``A`` [n, K]; reconstructions are ``A @ atoms``.

The lasso problem solved per signal y is

    min_a  ½‖y − aD‖² + α‖a‖₁                                              (1)

which is exactly scikit-learn's ``sparse_encode(..., alpha=α)`` convention.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import native
from .active_set import CholeskyActiveSet


def soft_threshold(u: Tensor, lam: float | Tensor) -> Tensor:
    """T_λ(u) = sign(u)·max(|u| − λ, 0), elementwise (Donoho 1995)."""
    return torch.sign(u) * torch.clamp(u.abs() - lam, min=0.0)


def lipschitz(gram: Tensor, v0: Tensor | None = None, iters: int = 30) -> tuple[float, Tensor]:
    """Largest eigenvalue of the PSD Gram matrix [K, K] by power iteration.

    Returns (L, v) so the caller can warm-start the next call with ``v`` (the Gram matrix
    changes little between dictionary updates). Power iteration approaches L from below, so a
    small safety margin is added: FISTA with a step 1/L' where L' ≥ L stays monotone.
    """
    k = gram.shape[0]
    v = v0 if v0 is not None else torch.ones(k, dtype=gram.dtype, device=gram.device) / math.sqrt(k)
    for _ in range(iters):
        w = gram @ v
        v = w / w.norm().clamp_min(1e-30)
    lam = float(v @ (gram @ v))
    return lam * 1.02 + 1e-12, v


def lasso_objective(Y: Tensor, atoms: Tensor, codes: Tensor, alpha: float) -> float:
    """Mean over signals of eq. (1): ½‖Y − A D‖²/n + α‖A‖₁/n (float64 accumulation)."""
    resid = Y - codes @ atoms
    n = Y.shape[0]
    val = 0.5 * resid.double().pow(2).sum() + alpha * codes.double().abs().sum()
    return float(val / n)


def lasso_fista(
    Y: Tensor,
    atoms: Tensor,
    alpha: float,
    codes0: Tensor | None = None,
    max_iter: int = 200,
    tol: float = 1e-5,
    gram: Tensor | None = None,
    lip: float | None = None,
    check_every: int = 10,
) -> Tensor:
    """Solve (1) for every row of Y at once by FISTA (Beck & Teboulle 2009).

    Y [n, dim], atoms [K, dim] → codes [n, K]. One iteration is a single [n, K] × [K, K]
    matmul, so the whole batch advances together. ``codes0`` warm-starts the solve (learning
    passes over the same signals repeatedly, so warm starts cut iterations several-fold).
    FISTA's momentum leaves tiny spurious non-zeros; the final step is a plain proximal
    (ISTA) step from the last iterate, which zeroes coordinates whose correlation is below
    α; where the support must be exact, use :func:`sgan_cli.lars.lasso_lars`.
    """
    if gram is None:
        gram = atoms @ atoms.T  # [K, K]
    if lip is None:
        lip, _ = lipschitz(gram)
    corr = Y @ atoms.T  # [n, K] = Dᵀy for every signal
    x = torch.zeros_like(corr) if codes0 is None else codes0.clone()
    z = x.clone()
    # preallocated buffers: large per-iteration allocations cost more than the maths on CPU
    u = torch.empty_like(corr)
    clip = torch.empty_like(corr)
    x_new = torch.empty_like(corr)
    t = 1.0
    step = 1.0 / lip
    thr = alpha * step
    for it in range(max_iter):
        torch.addmm(corr, z, gram, beta=-1.0, out=u)  # ∇ ½‖y − zD‖² = zG − Dᵀy
        u.mul_(-step).add_(z)  # z − ∇/L
        _soft_threshold_into(u, thr, clip, x_new)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        # z = x_new + (t − 1)/t_new · (x_new − x)
        torch.sub(x_new, x, out=z)
        if (it + 1) % check_every == 0:
            # relative change of the iterate; a host sync only every few iterations
            delta = float(z.norm() / x_new.norm().clamp_min(1e-12))
        else:
            delta = math.inf
        z.mul_((t - 1.0) / t_new).add_(x_new)
        x, x_new = x_new, x
        t = t_new
        if delta < tol:
            break
    # one ISTA step from the last iterate removes momentum artefacts
    torch.addmm(corr, x, gram, beta=-1.0, out=u)
    u.mul_(-step).add_(x)
    _soft_threshold_into(u, thr, clip, x_new)
    return x_new


def _soft_threshold_into(u: Tensor, thr: float, clip: Tensor, out: Tensor) -> None:
    """out = T_thr(u) = u − clamp(u, −thr, thr), written into preallocated buffers."""
    torch.clamp(u, -thr, thr, out=clip)
    torch.sub(u, clip, out=out)


def omp(Y: Tensor, atoms: Tensor, n_nonzero: int) -> Tensor:
    """Orthogonal matching pursuit with ``n_nonzero`` atoms per signal, batched.

    Y [n, dim], atoms [K, dim] → codes [n, K]. Each step picks, for every signal at once, the
    atom most correlated with its residual, appends it to a Cholesky factor of the selected
    Gram matrix (:class:`CholeskyActiveSet`) and re-solves least squares on the selected
    atoms with two triangular solves; the residual correlations Dᵀy − G_S c come from one
    dense [n, K] × [K, K] product. This is Batch-OMP (Rubinstein, Zibulevsky & Elad 2008),
    the algorithm of SPAMS' ``omp`` and scikit-learn's ``orthogonal_mp_gram``; the loop runs
    over the sparsity level, never over signals. A signal stops early, with fewer non-zeros,
    when its best next atom lies in the span of the selected ones (d² ≤ tol·G_jj, see
    :meth:`CholeskyActiveSet.add`): its residual is then orthogonal to every atom it could
    still use (n_nonzero > rank, duplicated atoms), as in scikit-learn's ``orthogonal_mp_gram``.
    On the CPU the compiled kernel of :mod:`sgan_cli.native` runs the same steps per signal.
    """
    n, dim = Y.shape
    K = atoms.shape[0]
    s = max(0, min(n_nonzero, K))
    codes = torch.zeros(n, K, dtype=Y.dtype, device=Y.device)
    if s == 0 or n == 0:
        return codes
    gram = atoms @ atoms.T  # [K, K]
    corr0 = Y @ atoms.T  # [n, K]
    if native.usable(Y, gram):
        return native.omp(gram, corr0, s, CholeskyActiveSet.pivot_tolerance(gram.dtype)).to(Y.dtype)
    sets = CholeskyActiveSet(n, gram, s)
    live = torch.ones(n, dtype=torch.bool, device=Y.device)  # signals still adding atoms
    chosen = torch.zeros(n, K, dtype=torch.bool, device=Y.device)
    rows = torch.arange(n, device=Y.device)
    resid_corr = corr0
    for j in range(s):
        # residual correlation Dᵀ(y − D_S c) = corr0 − G[:, S] c, without forming residuals
        score = resid_corr.abs().masked_fill(chosen, -1.0)
        new = score.argmax(dim=1)  # [n]
        # the best atom lies in the span of the selected ones: the residual is already
        # orthogonal to it, so the signal is as well represented as it will get; stop there
        # (scikit-learn's orthogonal_mp_gram stops on "selected atoms are dependent" too)
        live &= ~sets.add(live, new)
        chosen[rows[live], new[live]] = True
        width = sets.S
        idx = sets.idx
        valid = torch.arange(width, device=Y.device)[None, :] < sets.count[:, None]
        coef = sets.solve(torch.gather(corr0, 1, idx) * valid).to(Y.dtype) * valid  # [n, width]
        codes.zero_().scatter_add_(1, idx, coef)  # padding adds zeros to atom 0
        if j + 1 < s:
            resid_corr = corr0 - codes @ gram
    return codes


def support_fraction(codes: Tensor) -> float:
    """Share of non-zero coefficients in a code tensor of any shape."""
    if codes.numel() == 0:
        return 0.0
    return float((codes != 0).double().mean())


def psnr(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Per-signal PSNR in dB between rows of x and y [n, ...] (pixels in [−1, 1] → range 2)."""
    mse = (x - y).flatten(1).double().pow(2).mean(dim=1).clamp_min(1e-20)
    return 10.0 * torch.log10(torch.tensor(data_range, dtype=torch.float64) ** 2 / mse)
