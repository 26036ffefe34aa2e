"""Batched active sets of atoms with Cholesky factors of their Gram matrices, grown one atom at
a time: the linear algebra the LARS homotopy (:mod:`sgan_cli.lars`) and OMP
(:func:`sgan_cli.sparse_coding.omp`) share."""

from __future__ import annotations

import torch
from torch import Tensor


class CholeskyActiveSet:
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
