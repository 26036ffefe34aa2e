"""Sparse coding of signals over a fixed dictionary: lasso (FISTA + exact polish) and OMP.

Conventions used throughout sgan (DESIGN §2.1): a dictionary is a tensor ``atoms`` of shape
[K, dim] whose *rows* are unit-norm atoms (scikit-learn's ``components_`` layout); signals are
rows of ``Y`` [n, dim]; codes are rows of ``A`` [n, K]; reconstructions are ``A @ atoms``.

The lasso problem solved per signal y is

    min_a  ½‖y − aD‖² + α‖a‖₁                                              (1)

which is exactly scikit-learn's ``sparse_encode(..., alpha=α)`` convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


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
    α; where the support must be exact, use :func:`lasso_lars`.
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


def lasso_lars(
    Y: Tensor,
    atoms: Tensor,
    alpha: float,
    gram: Tensor | None = None,
    max_steps: int | None = None,
) -> Tensor:
    """Exact lasso codes [n, K] of (1) by the batched LARS-lasso homotopy (see :func:`lars_path`)."""
    return lars_path(Y, atoms, alpha, gram=gram, max_steps=max_steps)[0]


@dataclass
class LarsPath:
    """Where each signal's path went: per step, λ at the step's start and the active count.

    ``lam`` [steps, n]: λ when the step began (λ after the last step is ``lam_end`` [n]);
    ``n_active`` [steps, n]: atoms active during the step. For α strictly inside step t's
    segment (λ_after, λ_before), the lasso solution has exactly n_active[t] non-zeros.
    """

    lam: Tensor
    n_active: Tensor
    lam_end: Tensor
    lam_max: Tensor  # [n] = max|Dᵀy|: codes are zero for α ≥ λ_max

    def support_counts(self, alpha: float) -> Tensor:
        """Non-zeros [n] of the lasso codes at α (a lower bound where a path stopped early)."""
        lam_after = torch.cat([self.lam[1:], self.lam_end[None]], dim=0)  # [steps, n]
        inside = (self.lam >= alpha) & (lam_after < alpha)
        counts = (self.n_active * inside).sum(dim=0)
        ended = self.lam_end >= alpha  # α below where the path stopped: keep the last count
        last = self.n_active[-1] if self.n_active.shape[0] else torch.zeros_like(counts)
        return torch.where(ended & (self.lam_max > alpha), last, counts)


def lars_path(
    Y: Tensor,
    atoms: Tensor,
    alpha: float,
    gram: Tensor | None = None,
    max_steps: int | None = None,
    stop_active: int | None = None,
) -> tuple[Tensor, LarsPath]:
    """Exact lasso (1) by the LARS-lasso homotopy (Efron et al. 2004), batched over signals.

    Y [n, dim], atoms [K, dim] → codes [n, K] with the exact lasso support. Every signal
    walks its own regularisation path from λ = max|Dᵀy| down to α; each step moves all
    signals at once: the active sets (≤ dim atoms, padded to the largest one in the batch)
    give batched [n, s, s] solves for the equiangular direction, and the step length is the
    first event per signal — an atom enters, an active coefficient crosses zero and leaves
    (the lasso modification), or λ reaches α. Steps ≈ support size, so it is fast exactly
    where first-order methods are slow: coherent, overcomplete dictionaries with small
    supports (3×3 patch dictionaries, where FISTA needs thousands of iterations).
    """
    n, dim = Y.shape
    K = atoms.shape[0]
    dev, dt = Y.device, Y.dtype
    G = atoms @ atoms.T if gram is None else gram  # [K, K]
    corr = Y @ atoms.T  # [n, K] = Dᵀy
    codes = torch.zeros(n, K, dtype=dt, device=dev)
    rows = torch.arange(n, device=dev)
    lam_hist: list[Tensor] = []
    act_hist: list[Tensor] = []
    c = corr.clone()  # correlations with the residual, Dᵀ(y − aD)
    lam = c.abs().max(dim=1).values if n else torch.zeros(0, dtype=dt, device=dev)  # [n] current point on the path
    lam_max = lam.clone()
    done = lam <= alpha
    active = torch.zeros(n, K, dtype=torch.bool, device=dev)
    first = c.abs().argmax(dim=1)
    active[rows[~done], first[~done]] = True
    # an atom that just left sits exactly on |c_j| = λ; it must not re-enter at once
    just_left = torch.zeros(n, K, dtype=torch.bool, device=dev)
    inf = torch.tensor(float("inf"), dtype=dt, device=dev)
    steps = max_steps if max_steps is not None else 4 * K + 10
    for step in range(steps):
        if bool(done.all()):
            break
        n_act = active.sum(dim=1)  # [n]
        lam_hist.append(lam.clone())
        act_hist.append(n_act)
        s = int(n_act.max())
        # active atoms first (stable order), padded to s columns
        order = torch.argsort((~active).to(torch.int8), dim=1, stable=True)[:, :s]  # [n, s]
        valid = torch.arange(s, device=dev)[None, :] < n_act[:, None]  # [n, s]
        pair = valid[:, :, None] & valid[:, None, :]
        g_ss = torch.where(pair, G[order[:, :, None], order[:, None, :]], torch.eye(s, dtype=dt, device=dev))
        sign = torch.sign(torch.gather(c, 1, order)) * valid  # sign(c_j) = sign(a_j) on the active set
        # G_AA w = sign: G_AA is symmetric positive definite, so Cholesky (half LU's cost)
        chol, info = torch.linalg.cholesky_ex(g_ss)
        w_s = torch.cholesky_solve(sign[..., None], chol)
        if bool((info != 0).any()):  # singular active set (duplicate atoms): least squares
            bad = info != 0
            w_s[bad] = torch.linalg.pinv(g_ss[bad]) @ sign[bad][..., None]
        w_s = w_s[..., 0] * valid
        w = torch.zeros(n, K, dtype=dt, device=dev).scatter_(1, order, w_s)  # [n, K]
        u = w @ G  # rate of decrease of every correlation per unit step
        lam_ = lam[:, None]
        eps = 1e-9 * lam_
        # entering atoms: |c_j − γu_j| = λ − γ for an inactive j
        g1 = (lam_ - c) / (1.0 - u)
        g2 = (lam_ + c) / (1.0 + u)
        # at most dim atoms can be active: beyond that the active Gram matrix is singular
        can_enter = ~active & ~just_left & (n_act < dim)[:, None]
        g1 = torch.where((g1 > eps) & can_enter, g1, inf)
        g2 = torch.where((g2 > eps) & can_enter, g2, inf)
        g_in, j_in = torch.minimum(g1, g2).min(dim=1)
        # leaving atoms: a_j + γw_j crosses zero
        g_out_all = -codes / w
        g_out_all = torch.where(active & (g_out_all > eps), g_out_all, inf)
        g_out, j_out = g_out_all.min(dim=1)
        g_stop = (lam - alpha).clamp_min(0.0)
        gamma = torch.minimum(torch.minimum(g_in, g_out), g_stop)
        gamma = torch.where(done, torch.zeros_like(gamma), gamma)
        codes += gamma[:, None] * w
        lam = lam - gamma
        if step % 16 == 15:
            c = corr - codes @ G  # exact now and then, against rounding drift
        else:
            c -= gamma[:, None] * u  # c(γ) = c − γ·u, exact in exact arithmetic
        live = ~done
        stop = live & (g_stop <= torch.minimum(g_in, g_out))
        leave = live & ~stop & (g_out < g_in)
        enter = live & ~stop & ~leave
        active[rows[enter], j_in[enter]] = True
        active[rows[leave], j_out[leave]] = False
        codes[rows[leave], j_out[leave]] = 0.0
        just_left.zero_()
        just_left[rows[leave], j_out[leave]] = True
        done = done | stop
        if stop_active is not None:
            done = done | (active.sum(dim=1) >= stop_active)
    path = LarsPath(
        lam=torch.stack(lam_hist) if lam_hist else torch.zeros(0, n, dtype=dt, device=dev),
        n_active=torch.stack(act_hist) if act_hist else torch.zeros(0, n, dtype=torch.long, device=dev),
        lam_end=lam,
        lam_max=lam_max,
    )
    return codes, path


def omp(Y: Tensor, atoms: Tensor, n_nonzero: int) -> Tensor:
    """Orthogonal matching pursuit with exactly ``n_nonzero`` atoms per signal, batched.

    Y [n, dim], atoms [K, dim] → codes [n, K]. Each step picks, for every signal at once, the
    atom most correlated with its residual, then re-solves least squares on the selected
    atoms (a batched [n, s, s] solve), so the loop runs over the sparsity level s, never over
    signals.
    """
    n, _ = Y.shape
    K = atoms.shape[0]
    s = max(0, min(n_nonzero, K))
    codes = torch.zeros(n, K, dtype=Y.dtype, device=Y.device)
    if s == 0 or n == 0:
        return codes
    gram = atoms @ atoms.T  # [K, K]
    corr0 = Y @ atoms.T  # [n, K]
    idx = torch.empty(n, 0, dtype=torch.long, device=Y.device)
    rows = torch.arange(n, device=Y.device)
    coef = torch.empty(n, 0, dtype=Y.dtype, device=Y.device)
    chosen = torch.zeros(n, K, dtype=torch.bool, device=Y.device)
    for _ in range(s):
        # residual correlation Dᵀ(y − D_S c) = corr0 − G[:, S] c, without forming residuals
        if idx.shape[1] > 0:
            g_sel = gram[idx]  # [n, j, K]
            resid_corr = corr0 - torch.einsum("nj,njk->nk", coef, g_sel)
        else:
            resid_corr = corr0
        score = resid_corr.abs().masked_fill(chosen, -1.0)
        new = score.argmax(dim=1)  # [n]
        chosen[rows, new] = True
        idx = torch.cat([idx, new[:, None]], dim=1)  # [n, j+1]
        g_ss = gram[idx[:, :, None], idx[:, None, :]]  # [n, j+1, j+1]
        rhs = torch.gather(corr0, 1, idx)  # [n, j+1]
        eye = torch.eye(idx.shape[1], dtype=Y.dtype, device=Y.device)
        coef = torch.linalg.solve(g_ss + 1e-10 * eye, rhs[..., None])[..., 0]
    codes.scatter_(1, idx, coef)
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
