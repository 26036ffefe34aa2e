"""Sparse coding of signals over a fixed dictionary: lasso (FISTA + exact polish) and OMP.

Conventions used throughout sgan: a dictionary is a tensor ``atoms`` of shape
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

from . import native


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


class _CholeskyActiveSet:
    """Batched active sets with their Cholesky factors, grown one atom at a time.

    For n signals: ``idx`` [n, S] holds each signal's active atoms in order of entry,
    ``count`` [n] how many, and ``L`` [n, S, S] the lower Cholesky factor of the active
    Gram matrix G_AA (identity beyond ``count``, so padded systems solve to zero). Adding
    atom j to a signal appends one row, l = L⁻¹G_Aj and √(G_jj − ‖l‖²) (one batched
    triangular solve, O(s²) per signal, instead of an O(s³) refactorisation; Golub & Van
    Loan §6.5.4, the update SPAMS' LARS and OMP use). An atom with d² = G_jj − ‖l‖² ≤
    ``pivot_tol``·G_jj lies in the span of the active atoms (a duplicate, a collinear atom)
    and is not added: :meth:`add` reports it to the caller. Removing an atom (a lasso path
    event) refactorises the affected signals. The factor is kept in float64 whatever
    the signals' dtype: coherent patch dictionaries make G_AA ill-conditioned.

    :meth:`add` and :meth:`solve` touch every signal with masked writes instead of selecting
    the masked ones (selection means data-dependent shapes and a host synchronisation per
    call, which on the CPU cost more than the arithmetic at these sizes); :meth:`add` reads
    the counts' maximum only when a host-side bound of it reaches the allocated width S.
    Both solve with the whole allocated factor (S grows by a quarter, at least 8), never a
    slice of it: torch copies a strided slice before its batched LAPACK call, which made a
    solve 6× slower (500 factors of 160 atoms, 2-core AMD EPYC). :meth:`keep` drops
    finished signals.
    """

    # d² ≤ 100 ulps of G's dtype, relative to G_jj, is rounding: for exact duplicates d²
    # comes out at ±5e-16 from float64 and float32 Gram matrices alike, while atoms entering
    # the tests' coherent dictionaries and a learned digits dictionary (cond 1e9) have
    # d² ≥ 1e-5 in LARS and ≥ 1e-9 in OMP up to 62 of its 64 atoms (beyond: ±5e-15, noise).
    # In float64 it is a pivot of 1.5e-7, that of scikit-learn's lars_path (1e-7).
    PIVOT_TOL_ULPS = 100.0

    @classmethod
    def pivot_tolerance(cls, dtype: torch.dtype) -> float:
        """The relative pivot below which an atom counts as dependent, for a Gram matrix of
        ``dtype`` (also what the compiled kernels are given)."""
        return cls.PIVOT_TOL_ULPS * torch.finfo(dtype).eps

    def __init__(self, n: int, gram: Tensor, capacity: int) -> None:
        self.G = gram.double()  # the same tensor when gram is float64
        self.dev = gram.device
        self.pivot_tol = self.pivot_tolerance(gram.dtype)
        self.cap = capacity
        self.count = torch.zeros(n, dtype=torch.long, device=self.dev)
        self.S = 0  # allocated width ≥ count.max()
        self.bound = 0  # host-side bound ≥ count.max(), one more per add
        self.idx = torch.zeros(n, 0, dtype=torch.long, device=self.dev)
        self.L = torch.zeros(n, 0, 0, dtype=torch.float64, device=self.dev)
        self.rows = torch.arange(n, device=self.dev)

    def _grow(self, width: int) -> None:
        if width <= self.S:
            return
        new = min(self.cap, max(width, self.S + max(8, self.S // 4)))
        n = self.count.shape[0]
        idx = torch.zeros(n, new, dtype=torch.long, device=self.dev)
        idx[:, : self.S] = self.idx
        L = torch.eye(new, dtype=torch.float64, device=self.dev).repeat(n, 1, 1)
        L[:, : self.S, : self.S] = self.L
        self.idx, self.L, self.S = idx, L, new

    def keep(self, rows: Tensor) -> None:
        """Keep only the signals ``rows`` [m] (indices into the current signals), in that order."""
        self.count, self.idx, self.L = self.count[rows], self.idx[rows], self.L[rows]
        self.rows = torch.arange(rows.shape[0], device=self.dev)
        self.bound = min(self.bound, int(self.count.max()) if rows.numel() else 0)

    def add(self, mask: Tensor, atom: Tensor) -> Tensor:
        """Append atom[r] to the active set of every signal r where mask[r] (no duplicates).

        Returns ``dependent`` [n] bool: the signals whose atom was *not* added because it lies
        (numerically) in the span of their active atoms, d² = G_jj − ‖L⁻¹G_Aj‖² ≤
        ``pivot_tol``·G_jj; a factor with such a pivot is singular, and every solve
        through it returns inf/NaN or round-off blown up by 1/d. scikit-learn treats such
        regressors the same way (``lars_path``: "Regressors in active set degenerate",
        ``orthogonal_mp_gram``: "selected atoms are dependent"). A signal whose set is full
        (``count`` = capacity) takes no atom and is not reported.
        """
        n = self.count.shape[0]
        if n == 0:
            return torch.zeros_like(mask)
        if self.bound >= self.S and self.S < self.cap:  # the factor may be full: look, grow
            self.bound = int(self.count.max())
            self._grow(self.bound + 1)
        self.bound = min(self.bound + 1, self.cap)
        S = self.S
        if S == 0:  # capacity 0 (signals of dimension 0): nothing can be added
            return torch.zeros_like(mask)
        pos = self.count.clamp(max=S - 1)  # the row to append; clamped rows are not in mask
        g_jj = self.G[atom, atom]
        valid = torch.arange(S, device=self.dev)[None, :] < self.count[:, None]
        g = self.G[atom[:, None], self.idx] * valid  # [n, S] = G_Aj, zero-padded
        l = torch.linalg.solve_triangular(self.L, g[..., None], upper=False)[..., 0]
        d2 = g_jj - l.pow(2).sum(dim=1)
        ok = d2 > self.pivot_tol * g_jj  # NaN (a non-finite Gram entry) is not ok either
        take = mask & ok & (self.count < S)
        self.L[self.rows, pos] = torch.where(take[:, None], l, self.L[self.rows, pos])
        self.L[self.rows, pos, pos] = torch.where(take, d2.clamp_min(0.0).sqrt(), self.L[self.rows, pos, pos])
        self.idx[self.rows, pos] = torch.where(take, atom, self.idx[self.rows, pos])
        self.count += take
        return mask & ~ok & (self.count < S)

    def remove(self, r: Tensor, atom: Tensor) -> None:
        """Drop atom[i] from the active set of signal r[i] for every i; refactorise those.

        r [m] signal indices (distinct), atom [m] one of each signal's active atoms."""
        if r.numel() == 0:
            return
        s = int(self.count[r].max())
        idx_r = self.idx[r, :s]
        valid = torch.arange(s, device=self.dev)[None, :] < self.count[r][:, None]
        keep = valid & (idx_r != atom[:, None])
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept atoms first, in entry order
        idx_new = torch.gather(idx_r, 1, order)
        cnt = self.count[r] - 1
        v = torch.arange(s, device=self.dev)[None, :] < cnt[:, None]
        idx_new = torch.where(v, idx_new, torch.zeros_like(idx_new))
        pair = v[:, :, None] & v[:, None, :]
        eye = torch.eye(s, dtype=torch.float64, device=self.dev)
        g_ss = torch.where(pair, self.G[idx_new[:, :, None], idx_new[:, None, :]], eye)
        chol, info = torch.linalg.cholesky_ex(g_ss)
        bad = info != 0
        if bool(bad.any()):
            # a subset of atoms that passed the pivot test can only fail by rounding: factor
            # G_AA + δI instead, δ from the pivot tolerance up by 10× until it succeeds
            sub = g_ss[bad]
            delta = self.pivot_tol * sub.diagonal(dim1=1, dim2=2).amax(dim=1).clamp_min(1e-300)
            for _ in range(30):
                fixed, info = torch.linalg.cholesky_ex(sub + delta[:, None, None] * eye)
                if not bool(info.any()):
                    break
                delta = torch.where(info != 0, 10.0 * delta, delta)
            chol[bad] = fixed
        self.idx[r, :s] = idx_new
        self.L[r, :s, :s] = chol
        self.count[r] = cnt

    def solve(self, rhs: Tensor) -> Tensor:
        """G_AA⁻¹ rhs for rhs [n, s], s ≤ S, zero beyond each count → [n, s] in float64 (two
        batched triangular solves: faster than ``cholesky_solve``'s batched LAPACK calls;
        rhs is zero-padded to the factor's width S)."""
        s = rhs.shape[1]
        b = torch.nn.functional.pad(rhs.double(), (0, self.S - s))[..., None]
        half = torch.linalg.solve_triangular(self.L, b, upper=False)
        return torch.linalg.solve_triangular(self.L.mT, half, upper=True)[:, :s, 0]


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
    Gram matrices updated one atom at a time (:class:`_CholeskyActiveSet`), so the
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

    def __init__(self, corr: Tensor, sets: _CholeskyActiveSet) -> None:
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

    def keep(self, rows: Tensor) -> None:
        """Keep only the signals ``rows`` [m'] (indices into the carried ones), in that order."""
        for name in ("orig", "corr", "c", "codes", "lam", "active", "dependent", "just_left", "done"):
            setattr(self, name, getattr(self, name)[rows])
        self.sets.keep(rows)


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
    dev, dt = Y.device, Y.dtype
    G = atoms @ atoms.T if gram is None else gram  # [K, K]
    corr = Y @ atoms.T  # [n, K] = Dᵀy
    steps = max_steps if max_steps is not None else 4 * K + 10
    if n > 0 and K > 0 and native.usable(Y, G):
        return _lars_native(G, corr, dim, alpha, steps, stop_active, record)
    out = torch.zeros(n, K, dtype=dt, device=dev)
    st = _LarsState(corr, _CholeskyActiveSet(n, G, min(K, dim)))
    lam_max = st.lam.clone()
    st.done = st.lam <= alpha
    first = st.c.abs().argmax(dim=1) if n else torch.zeros(0, dtype=torch.long, device=dev)
    st.active.scatter_(1, first[:, None], (~st.done)[:, None])
    st.sets.add(~st.done, first)  # a single atom: dependent only if it is zero (then λ_max = 0, done)
    # the record, over all n signals: λ and active counts at the start of every step
    lam_all, cnt_all = lam_max.clone(), st.sets.count.clone()
    lam_hist: list[Tensor] = []
    act_hist: list[Tensor] = []
    inf = torch.tensor(float("inf"), dtype=dt, device=dev)
    diag_G = G.diagonal()[None, :]
    left_last = False
    n_live = int((~st.done).sum())
    for step in range(steps):
        if n_live == 0:
            break
        if record:
            lam_all[st.orig] = st.lam
            cnt_all[st.orig] = st.sets.count
            lam_hist.append(lam_all.clone())
            act_hist.append(cnt_all.clone())
        if n_live <= st.lam.shape[0] // 2:  # set finished paths aside
            fin = torch.nonzero(st.done).flatten()
            out[st.orig[fin]] = st.codes[fin]
            st.keep(torch.nonzero(~st.done).flatten())
        sets, m = st.sets, st.lam.shape[0]
        order = sets.idx  # active atoms in entry order, [m, S]
        valid = torch.arange(sets.S, device=dev)[None, :] < sets.count[:, None]
        sign = torch.sign(torch.gather(st.c, 1, order)) * valid  # sign(c_j) = sign(a_j) on the active set
        w_s = sets.solve(sign).to(dt)  # G_AA w = sign (zero beyond each count)
        w = torch.zeros(m, K, dtype=dt, device=dev).scatter_add_(1, order, w_s)  # padding adds 0 to atom 0
        u = w @ G  # rate of decrease of every correlation per unit step
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
        g_in = torch.where((r_in > 0) & (sets.count < dim), 1.0 / r_in, inf)
        # leaving atoms: a_j + γw_j crosses zero
        a_s = torch.gather(st.codes, 1, order)
        g_out_s = -a_s / w_s
        g_out_s = torch.where(valid & (g_out_s > 1e-9 * lam_), g_out_s, inf)
        g_out, p_out = g_out_s.min(dim=1)  # S ≥ 1: the first atom was added above
        j_out = torch.gather(order, 1, p_out[:, None])[:, 0]
        g_stop = (st.lam - alpha).clamp_min(0.0)
        g_event = torch.minimum(g_in, g_out)
        gamma = torch.where(st.done, torch.zeros_like(g_stop), torch.minimum(g_event, g_stop))
        st.codes.addcmul_(gamma[:, None], w)
        st.lam = st.lam - gamma
        if step % 16 == 15:
            st.c = st.corr - st.codes @ G  # exact now and then, against rounding drift
        else:
            st.c.addcmul_(gamma[:, None], u, value=-1.0)  # c(γ) = c − γ·u, exact in exact arithmetic
        live = ~st.done
        stop = live & (g_stop <= g_event)
        leave = live & ~stop & (g_out < g_in)
        enter = live & ~stop & ~leave
        rejected = sets.add(enter, j_in)  # the step above stays on the path: the event was spurious
        at_in = j_in[:, None]
        st.active.scatter_(1, at_in, st.active.gather(1, at_in) | (enter & ~rejected)[:, None])
        st.dependent.scatter_(1, at_in, st.dependent.gather(1, at_in) | rejected[:, None])
        if left_last:
            st.just_left.zero_()
        rows = torch.nonzero(leave).flatten()
        left_last = rows.numel() > 0
        if left_last:
            j_left = j_out[rows]
            st.active[rows, j_left] = False
            st.codes[rows, j_left] = 0.0
            sets.remove(rows, j_left)
            # the span shrank: dependent atoms may enter again, but not at once; neither may
            # the atom that left nor its copies (±, the pivot test on the span of that atom
            # alone), which sit on |c_j| = λ exactly as it does
            g_left = G[j_left]  # [l, K]
            g_ll = torch.gather(g_left, 1, j_left[:, None])
            copies = (diag_G - g_left.pow(2) / g_ll) <= sets.pivot_tol * diag_G
            st.just_left[rows] = st.dependent[rows] | copies
            st.just_left[rows, j_left] = True
            st.dependent[rows] = False
        st.done = st.done | stop
        if stop_active is not None:
            st.done = st.done | (sets.count >= stop_active)
        n_live = int((~st.done).sum())
    out[st.orig] = st.codes
    if not record:
        return out, None
    lam_all[st.orig] = st.lam
    path = LarsPath(
        lam=torch.stack(lam_hist) if lam_hist else torch.zeros(0, n, dtype=dt, device=dev),
        n_active=torch.stack(act_hist) if act_hist else torch.zeros(0, n, dtype=torch.long, device=dev),
        lam_end=lam_all,
        lam_max=lam_max,
    )
    return out, path


def _lars_native(
    G: Tensor, corr: Tensor, dim: int, alpha: float, steps: int, stop_active: int | None, record: bool
) -> tuple[Tensor, LarsPath | None]:
    """:func:`_lars` by the compiled kernel (:mod:`sgan_cli.native`, CPU): the same path per
    signal, in float64; codes [n, K] and the record in corr's dtype."""
    n, K = corr.shape
    dt = corr.dtype
    pivot_tol = _CholeskyActiveSet.pivot_tolerance(G.dtype)
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


def omp(Y: Tensor, atoms: Tensor, n_nonzero: int) -> Tensor:
    """Orthogonal matching pursuit with ``n_nonzero`` atoms per signal, batched.

    Y [n, dim], atoms [K, dim] → codes [n, K]. Each step picks, for every signal at once, the
    atom most correlated with its residual, appends it to a Cholesky factor of the selected
    Gram matrix (:class:`_CholeskyActiveSet`) and re-solves least squares on the selected
    atoms with two triangular solves; the residual correlations Dᵀy − G_S c come from one
    dense [n, K] × [K, K] product. This is Batch-OMP (Rubinstein, Zibulevsky & Elad 2008),
    the algorithm of SPAMS' ``omp`` and scikit-learn's ``orthogonal_mp_gram``; the loop runs
    over the sparsity level, never over signals. A signal stops early, with fewer non-zeros,
    when its best next atom lies in the span of the selected ones (d² ≤ tol·G_jj, see
    :meth:`_CholeskyActiveSet.add`): its residual is then orthogonal to every atom it could
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
        return native.omp(gram, corr0, s, _CholeskyActiveSet.pivot_tolerance(gram.dtype)).to(Y.dtype)
    sets = _CholeskyActiveSet(n, gram, s)
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
