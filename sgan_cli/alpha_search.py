"""The α of the lasso that gives a target support fraction, from the lasso paths of signals.

α is a poor knob for sparsity (measured: the α giving 10 % support ranged from 0.016 to 0.36
between data sets and dictionaries), so learning tunes it: one LARS run records every signal's
regularisation path down to a few times the target support (:class:`sgan_cli.lars.LarsPath`),
which gives the support fraction at any α. :func:`predict_alpha` bisects on that record alone
(the interim re-tuning during learning); :func:`find_alpha` checks the prediction against
exact codes and searches near it (the final α of a learned dictionary).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .lars import LarsPath, lars_path, lasso_lars
from .sparse_coding import support_fraction


def find_alpha(Y: Tensor, atoms: Tensor, target: float, rel_tol: float = 0.02) -> tuple[float, Tensor]:
    """α such that the exact lasso codes of Y [n, dim] have support fraction ≈ target.

    One LARS run records every signal's whole regularisation path down to a few times the
    target support (:class:`LarsPath`), which gives the support fraction at *any* α; a
    bisection in log α on that record finds the crossing without further coding. One more
    exact solve at the chosen α returns the codes. Should the record be inconclusive
    (paths cut short), a bisection on exact solves takes over. Returns (α, codes at α).
    """
    gram = atoms @ atoms.T
    path = _path_to_target(Y, atoms, target, gram)
    if path is None:
        return 0.0, torch.zeros(Y.shape[0], atoms.shape[0], dtype=Y.dtype, device=Y.device)
    K = atoms.shape[0]

    def exact(alpha: float) -> tuple[float, Tensor]:
        codes = lasso_lars(Y, atoms, alpha, gram=gram)
        return support_fraction(codes), codes

    alpha = _predicted_alpha(path, target, K, rel_tol)
    s, codes = exact(alpha)
    if abs(s - target) <= rel_tol * target:
        return alpha, codes
    best = (abs(s - target), alpha, codes)
    # the prediction is close (paths cut at the cap only under-count): search near it
    alpha_max = float(path.lam_max.max())
    lo, hi = (alpha, min(alpha * 4, alpha_max)) if s > target else (alpha / 4, alpha)

    def measured(a: float) -> float:
        nonlocal best
        frac, c = exact(a)
        if abs(frac - target) < best[0]:
            best = (abs(frac - target), a, c)
        return frac

    _bisect_log(measured, target, lo, hi, rel_tol=rel_tol, steps=20)
    return best[1], best[2]


def predict_alpha(Y: Tensor, atoms: Tensor, target: float, rel_tol: float = 0.02) -> float:
    """α for support fraction ≈ target from :func:`find_alpha`'s path record alone, without
    its check against exact codes, for signals Y [n, dim] and atoms [K, dim]; 0.0 when every
    code is zero at any α (n = 0, or Y ⟂ atoms). The record under-counts only signals whose
    path went past the cap (2·target·K + 1 atoms, at most min(K, dim)), so this is
    :func:`find_alpha`'s first guess: the interim re-tuning during learning uses it, and
    the final :func:`find_alpha` checks it."""
    path = _path_to_target(Y, atoms, target, atoms @ atoms.T)
    return 0.0 if path is None else _predicted_alpha(path, target, atoms.shape[0], rel_tol)


def _path_to_target(Y: Tensor, atoms: Tensor, target: float, gram: Tensor) -> LarsPath | None:
    """Every signal's lasso path until 2·target·K + 1 atoms are active (at most min(K, dim));
    None if all codes are zero at any α."""
    n, dim = Y.shape
    K = atoms.shape[0]
    # twice the target support: enough for the crossing, and LARS steps get dearer as
    # active sets grow (an [n, s, s] solve each)
    cap = min(K, dim, int(math.ceil(2 * target * K)) + 1)
    _, path = lars_path(Y, atoms, 0.0, gram=gram, stop_active=cap)
    alpha_max = float(path.lam_max.max()) if n else 0.0
    return path if alpha_max > 0 else None


def _predicted_alpha(path: LarsPath, target: float, K: int, rel_tol: float) -> float:
    """Bisection in log α on the path record for support fraction = target."""
    alpha_max = float(path.lam_max.max())

    def predicted(alpha: float) -> float:
        return float(path.support_counts(alpha).double().mean()) / K

    return _bisect_log(predicted, target, alpha_max * 1e-6, alpha_max, rel_tol=rel_tol / 4, steps=60)


def _bisect_log(
    support: Callable[[float], float], target: float, a_lo: float, a_hi: float, rel_tol: float, steps: int
) -> float:
    """Bisection on log α ∈ [log a_lo, log a_hi] for support(α) = target.

    support(α) falls (up to ties) as α grows; stops once within rel_tol of the target.
    """
    lo, hi = math.log(a_lo), math.log(a_hi)
    mid = 0.5 * (lo + hi)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        s = support(math.exp(mid))
        if abs(s - target) <= rel_tol * target:
            break
        if s > target:  # too dense: α must grow
            lo = mid
        else:
            hi = mid
    return math.exp(mid)
