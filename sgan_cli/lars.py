"""Exact lasso codes by the LARS-lasso homotopy (Efron et al. 2004), batched over signals, with
the record of every signal's regularisation path (:class:`LarsPath`).

The problem is that of :mod:`sgan_cli.sparse_coding`, per signal y [dim] over atoms D [K, dim]:

    min_a  ½‖y − aD‖² + α‖a‖₁                                              (1)

:func:`lars_path` walks each signal's path from λ = max|Dᵀy| down to α in steps (:func:`_lars_step`:
direction, first event, move, event applied); the active sets keep Cholesky factors
(:class:`sgan_cli.active_set.CholeskyActiveSet`). On the CPU the compiled kernel of
:mod:`sgan_cli.native` runs the same homotopy per signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from . import native
from .active_set import CholeskyActiveSet


def lasso_lars(
    Y: Tensor,
    atoms: Tensor,
    alpha: float,
    gram: Tensor | None = None,
    max_steps: int | None = None,
) -> Tensor:
    """Exact lasso codes [n, K] of (1) by the LARS-lasso homotopy (see :func:`lars_path`)."""
    return _lars(Y, atoms, alpha, gram, max_steps, None, record=False)[0]


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

    Y [n, dim], atoms [K, dim] → codes [n, K] with the exact lasso support, and the record
    of every signal's path (:class:`LarsPath`). Every signal walks its own regularisation
    path from λ = max|Dᵀy| down to α (or until ``stop_active`` atoms are active); each step
    moves all signals at once: the active sets (≤ dim atoms) keep Cholesky factors of their
    Gram matrices updated one atom at a time (:class:`CholeskyActiveSet`), so the
    equiangular direction costs two triangular solves per signal, and the step length is
    the first event per signal — an atom enters, an active coefficient crosses zero and
    leaves (the lasso modification), or λ reaches α. Steps ≈ support size, so it is fast
    exactly where first-order methods are slow: coherent, overcomplete dictionaries with
    small supports. Paths differ in length; signals whose path has ended are set aside
    whenever they are half of those still carried, so a step costs what its live signals
    need. Reference: SPAMS' ``lasso`` (Mairal, Cholesky-updated LARS on the Gram matrix).

    On the CPU, where sgan's compiled kernels load (:mod:`sgan_cli.native`), the same
    homotopy runs per signal in C (float64, an atom's leave downdates the factor by Givens
    rotations instead of refactorising): the same events and record, codes equal to
    rounding; this batched torch engine runs elsewhere (GPUs, no C compiler,
    ``SGAN_NATIVE=0``).
    """
    return _lars(Y, atoms, alpha, gram, max_steps, stop_active, record=True)  # type: ignore[return-value]


class _LarsState:
    """The per-signal state of :func:`_lars` for the m signals still carried: ``orig`` [m]
    their rows in the caller's batch, correlations ``c`` = Dᵀ(y − aD) and ``corr`` = Dᵀy
    [m, K], ``codes`` [m, K], ``lam`` (λ) [m], ``done`` [m], and [m, K] masks: ``active``,
    ``dependent`` (in the span of the active set: may not enter until an atom leaves) and
    ``just_left`` (on |c_j| = λ after the last step's leave: its root on that side is
    excluded for one step)."""

    def __init__(self, corr: Tensor, sets: CholeskyActiveSet) -> None:
        m, K = corr.shape
        self.orig = torch.arange(m, device=corr.device)
        self.corr = corr
        self.c = corr.clone()
        self.codes = torch.zeros_like(corr)
        self.lam = corr.abs().amax(dim=1) if m else torch.zeros(0, dtype=corr.dtype, device=corr.device)
        self.active = torch.zeros(m, K, dtype=torch.bool, device=corr.device)
        self.dependent = torch.zeros_like(self.active)
        self.just_left = torch.zeros_like(self.active)
        self.done = torch.zeros(m, dtype=torch.bool, device=corr.device)
        self.sets = sets

    @classmethod
    def start(cls, corr: Tensor, G: Tensor, dim: int, alpha: float) -> _LarsState:
        """Every signal at λ = λ_max = max|Dᵀy| with its most correlated atom active; done
        already where λ_max ≤ α (the codes are zero)."""
        n, K = corr.shape
        st = cls(corr, CholeskyActiveSet(n, G, min(K, dim)))
        st.done = st.lam <= alpha
        first = st.c.abs().argmax(dim=1) if n else torch.zeros(0, dtype=torch.long, device=corr.device)
        st.active.scatter_(1, first[:, None], (~st.done)[:, None])
        st.sets.add(~st.done, first)  # a single atom: dependent only if it is zero (then λ_max = 0, done)
        return st

    def keep(self, rows: Tensor) -> None:
        """Keep only the signals ``rows`` [m'] (indices into the carried ones), in that order."""
        for name in ("orig", "corr", "c", "codes", "lam", "active", "dependent", "just_left", "done"):
            setattr(self, name, getattr(self, name)[rows])
        self.sets.keep(rows)

    def set_aside_finished(self, out: Tensor) -> None:
        """Write the codes of the finished signals into their rows of ``out`` [n, K] and carry
        only the live ones on."""
        fin = torch.nonzero(self.done).flatten()
        out[self.orig[fin]] = self.codes[fin]
        self.keep(torch.nonzero(~self.done).flatten())


class _PathRecord:
    """The record of :class:`LarsPath`, over all n signals: λ and the active count at the start
    of every step (a signal set aside keeps its last values)."""

    def __init__(self, st: _LarsState) -> None:
        self.lam_max = st.lam.clone()
        self.lam_all, self.cnt_all = st.lam.clone(), st.sets.count.clone()
        self.lam_hist: list[Tensor] = []
        self.act_hist: list[Tensor] = []

    def note(self, st: _LarsState) -> None:
        """The carried signals' λ and active counts as the next step begins."""
        self.lam_all[st.orig] = st.lam
        self.cnt_all[st.orig] = st.sets.count
        self.lam_hist.append(self.lam_all.clone())
        self.act_hist.append(self.cnt_all.clone())

    def path(self, st: _LarsState) -> LarsPath:
        """The record once the loop has ended, with each carried signal's final λ."""
        self.lam_all[st.orig] = st.lam
        n, dt, dev = self.lam_all.shape[0], self.lam_all.dtype, self.lam_all.device
        return LarsPath(
            lam=torch.stack(self.lam_hist) if self.lam_hist else torch.zeros(0, n, dtype=dt, device=dev),
            n_active=torch.stack(self.act_hist) if self.act_hist else torch.zeros(0, n, dtype=torch.long, device=dev),
            lam_end=self.lam_all,
            lam_max=self.lam_max,
        )


def _lars(
    Y: Tensor,
    atoms: Tensor,
    alpha: float,
    gram: Tensor | None,
    max_steps: int | None,
    stop_active: int | None,
    record: bool,
) -> tuple[Tensor, LarsPath | None]:
    """The homotopy of :func:`lars_path`: (codes [n, K], its :class:`LarsPath`), or (codes,
    None) with ``record=False``, which skips the record (:func:`lasso_lars`)."""
    n, dim = Y.shape
    K = atoms.shape[0]
    G = atoms @ atoms.T if gram is None else gram  # [K, K]
    corr = Y @ atoms.T  # [n, K] = Dᵀy
    steps = max_steps if max_steps is not None else 4 * K + 10
    if n > 0 and K > 0 and native.usable(Y, G):
        return _lars_native(G, corr, dim, alpha, steps, stop_active, record)
    out = torch.zeros(n, K, dtype=Y.dtype, device=Y.device)
    st = _LarsState.start(corr, G, dim, alpha)
    rec = _PathRecord(st) if record else None
    left_last = False
    n_live = int((~st.done).sum())
    for step in range(steps):
        if n_live == 0:
            break
        if rec is not None:
            rec.note(st)
        if n_live <= st.lam.shape[0] // 2:  # set finished paths aside
            st.set_aside_finished(out)
        left_last = _lars_step(st, G, alpha, dim, exact_correlations=step % 16 == 15, left_last=left_last)
        if stop_active is not None:
            st.done = st.done | (st.sets.count >= stop_active)
        n_live = int((~st.done).sum())
    out[st.orig] = st.codes
    return out, None if rec is None else rec.path(st)


def _lars_step(st: _LarsState, G: Tensor, alpha: float, dim: int, exact_correlations: bool, left_last: bool) -> bool:
    """One step of every carried signal along its path: the equiangular direction, the first
    event (an atom enters, an active one leaves, or λ reaches α), the move to it, and the
    event applied to the active sets. Returns whether some atom left (see ``just_left``)."""
    order, valid, w_s, w, u = _equiangular_direction(st, G)
    g_in, j_in = _first_entry(st, u, dim, left_last)
    g_out, j_out = _first_exit(st, order, valid, w_s)
    g_stop = (st.lam - alpha).clamp_min(0.0)
    g_event = torch.minimum(g_in, g_out)
    gamma = torch.where(st.done, torch.zeros_like(g_stop), torch.minimum(g_event, g_stop))
    _move(st, gamma, w, u, G, exact_correlations)
    live = ~st.done
    stop = live & (g_stop <= g_event)
    leave = live & ~stop & (g_out < g_in)
    enter = live & ~stop & ~leave
    _enter(st, enter, j_in)
    if left_last:
        st.just_left.zero_()
    rows = torch.nonzero(leave).flatten()
    if rows.numel() > 0:
        _leave(st, rows, j_out[rows], G)
    st.done = st.done | stop
    return rows.numel() > 0


def _equiangular_direction(st: _LarsState, G: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The direction in which the active codes move: w_s = G_AA⁻¹ sign(c_A) (zero beyond each
    count) in entry order ``order`` [m, S] (``valid`` marks the filled places), w [m, K] the
    same scattered to atoms, and u = wG [m, K], the rate of decrease of every correlation."""
    sets, m, K = st.sets, st.lam.shape[0], G.shape[0]
    order = sets.idx  # active atoms in entry order, [m, S]
    valid = torch.arange(sets.S, device=order.device)[None, :] < sets.count[:, None]
    sign = torch.sign(torch.gather(st.c, 1, order)) * valid  # sign(c_j) = sign(a_j) on the active set
    w_s = sets.solve(sign).to(st.c.dtype)  # G_AA w = sign (zero beyond each count)
    w = torch.zeros(m, K, dtype=st.c.dtype, device=order.device).scatter_add_(1, order, w_s)  # padding adds 0 to atom 0
    u = w @ G  # rate of decrease of every correlation per unit step
    return order, valid, w_s, w, u


def _first_entry(st: _LarsState, u: Tensor, dim: int, left_last: bool) -> tuple[Tensor, Tensor]:
    """Step length [m] to the first inactive atom reaching |c_j| = λ, and that atom [m] (inf
    where none can enter)."""
    lam_ = st.lam[:, None]
    # entering atoms: |c_j − γu_j| = λ − γ for an inactive j, at γ = (λ ∓ c_j)/(1 ∓ u_j);
    # as rates r = 1/γ the first event is the largest positive r, and γ ≤ ε (r ≥ 1/ε,
    # ε = 1e-9·λ) is rounding at an atom already on the boundary
    r_plus = (1.0 - u) / (lam_ - st.c)  # c_j reaches +λ
    r_minus = (1.0 + u) / (lam_ + st.c)  # c_j reaches −λ
    r_cap = 1e9 / lam_
    r_plus.masked_fill_(~(r_plus < r_cap), -math.inf)  # ~(<): NaN too
    r_minus.masked_fill_(~(r_minus < r_cap), -math.inf)
    if left_last:
        # an atom that just left (or was freed by a leave) sits on |c_j| = λ: its root on
        # that side is where it stands (γ = 0 up to rounding), the other side's is a
        # genuine event (it re-enters with the opposite sign)
        r_plus.masked_fill_(st.just_left & (st.c > 0), -math.inf)
        r_minus.masked_fill_(st.just_left & (st.c < 0), -math.inf)
    rate = torch.maximum(r_plus, r_minus).masked_fill_(st.active | st.dependent, -math.inf)
    r_in, j_in = rate.max(dim=1)
    # at most dim atoms can be active: beyond that the active Gram matrix is singular
    inf = torch.tensor(float("inf"), dtype=st.c.dtype, device=st.c.device)
    return torch.where((r_in > 0) & (st.sets.count < dim), 1.0 / r_in, inf), j_in


def _first_exit(st: _LarsState, order: Tensor, valid: Tensor, w_s: Tensor) -> tuple[Tensor, Tensor]:
    """Step length [m] to the first active code crossing zero (a_j + γw_j = 0), and that atom [m]."""
    inf = torch.tensor(float("inf"), dtype=st.c.dtype, device=st.c.device)
    a_s = torch.gather(st.codes, 1, order)
    g_out_s = -a_s / w_s
    g_out_s = torch.where(valid & (g_out_s > 1e-9 * st.lam[:, None]), g_out_s, inf)
    g_out, p_out = g_out_s.min(dim=1)  # S ≥ 1: the first atom was added at the start
    return g_out, torch.gather(order, 1, p_out[:, None])[:, 0]


def _move(st: _LarsState, gamma: Tensor, w: Tensor, u: Tensor, G: Tensor, exact_correlations: bool) -> None:
    """Advance the codes, λ and the correlations by the step lengths ``gamma`` [m]."""
    st.codes.addcmul_(gamma[:, None], w)
    st.lam = st.lam - gamma
    if exact_correlations:
        st.c = st.corr - st.codes @ G  # exact now and then, against rounding drift
    else:
        st.c.addcmul_(gamma[:, None], u, value=-1.0)  # c(γ) = c − γ·u, exact in exact arithmetic


def _enter(st: _LarsState, enter: Tensor, j_in: Tensor) -> None:
    """Atom j_in[r] joins the active set of every signal r with ``enter``[r], unless it lies in
    the span of that set: then it is marked dependent (the step taken stays on the path, the
    event was spurious)."""
    rejected = st.sets.add(enter, j_in)
    at_in = j_in[:, None]
    st.active.scatter_(1, at_in, st.active.gather(1, at_in) | (enter & ~rejected)[:, None])
    st.dependent.scatter_(1, at_in, st.dependent.gather(1, at_in) | rejected[:, None])


def _leave(st: _LarsState, rows: Tensor, j_left: Tensor, G: Tensor) -> None:
    """Atom j_left[i] leaves the active set of signal rows[i]: its code is zeroed, the factor
    refactorised, and the atoms that may not enter at once are marked ``just_left``."""
    st.active[rows, j_left] = False
    st.codes[rows, j_left] = 0.0
    st.sets.remove(rows, j_left)
    # the span shrank: dependent atoms may enter again, but not at once; neither may
    # the atom that left nor its copies (±, the pivot test on the span of that atom
    # alone), which sit on |c_j| = λ exactly as it does
    diag_G = G.diagonal()[None, :]
    g_left = G[j_left]  # [l, K]
    g_ll = torch.gather(g_left, 1, j_left[:, None])
    copies = (diag_G - g_left.pow(2) / g_ll) <= st.sets.pivot_tol * diag_G
    st.just_left[rows] = st.dependent[rows] | copies
    st.just_left[rows, j_left] = True
    st.dependent[rows] = False


def _lars_native(
    G: Tensor, corr: Tensor, dim: int, alpha: float, steps: int, stop_active: int | None, record: bool
) -> tuple[Tensor, LarsPath | None]:
    """:func:`_lars` by the compiled kernel (:mod:`sgan_cli.native`, CPU): the same path per
    signal, in float64; codes [n, K] and the record in corr's dtype."""
    n, K = corr.shape
    dt = corr.dtype
    pivot_tol = CholeskyActiveSet.pivot_tolerance(G.dtype)
    if not record:
        codes, _ = native.lars(G, corr, dim, alpha, steps, pivot_tol)
        return codes.to(dt), None
    # a path takes about one step per atom it ends with, more where atoms leave; a record
    # too narrow for some signal is taken again at the width it needed
    cap = min(K, dim) if stop_active is None else max(0, stop_active)
    width = max(1, min(steps, 4 * cap + 32))
    codes, rec = native.lars(G, corr, dim, alpha, steps, pivot_tol, stop_active, width)
    assert rec is not None
    taken = int(rec["steps"].max())
    if taken > width:
        codes, rec = native.lars(G, corr, dim, alpha, steps, pivot_tol, stop_active, taken)
        assert rec is not None
    # [steps, n], each signal's last values repeated once its path has ended (as _lars does)
    t = torch.arange(taken)[:, None]
    on_path = t < rec["steps"][None, :]
    lam = torch.where(on_path, rec["lam"][:, :taken].T, rec["lam_end"][None, :])
    count = torch.where(on_path, rec["count"][:, :taken].T, rec["count_end"][None, :])
    path = LarsPath(lam=lam.to(dt), n_active=count, lam_end=rec["lam_end"].to(dt), lam_max=corr.abs().amax(dim=1))
    return codes.to(dt), path
