"""The two schedules of Mairal's online dictionary learning: minibatches sparse-coded, their
statistics accumulated, the atoms moved one block-coordinate sweep (:mod:`sgan_cli.dictionary_atoms`).

* :func:`run_online` (large redundant data seen about once, e.g. patches): exact LARS codes
  of each minibatch and statistics with forgetting (Mairal et al. 2009, Alg. 1; scikit-learn's
  ``MiniBatchDictionaryLearning`` schedule);
* :func:`run_passes` (data revisited many times, e.g. whole images): every signal keeps its
  latest code; the first pass accumulates statistics with forgetting, later passes replace a
  signal's old contribution (Mairal et al. 2010 §3.4), so the statistics are exact full-data
  sums. Codes are exact (LARS) or warm-started FISTA solves (:class:`PassCoder`).

Both return (atoms, α, steps, final cost, history) and re-tune α through ``retune`` at
``retarget`` points (:func:`sgan_cli.alpha_search.predict_alpha`, from
:func:`sgan_cli.dictionary.learn_dictionary`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from . import native
from .dictionary_atoms import revive_atoms, update_atoms
from .lars import lasso_lars
from .progress import ProgressFn
from .sparse_coding import lasso_fista, lasso_objective, lipschitz


def forgetting_factor(step: int, batch_size: int) -> float:
    """Weight β_t ∈ [0, 1) that the accumulated statistics keep before minibatch t is added.

    Mairal 2009 §3.4 down-weights statistics gathered with early, poor dictionaries; this
    is the schedule scikit-learn uses (θ grows linearly, then slowly), so results are
    comparable step for step: β = (θ + 1 − m)/(θ + 1).
    """
    theta = (step + 1) * batch_size if step < batch_size - 1 else batch_size**2 + step + 1 - batch_size
    return (theta + 1 - batch_size) / (theta + 1)


def accumulate_forgetting(stat_aa: Tensor, stat_ay: Tensor, codes: Tensor, Yb: Tensor, beta: float) -> None:
    """In place: AA ← β·AA + AᵀA/m and AY ← β·AY + AᵀY/m for a minibatch A [m, K], Y [m, dim]."""
    m = Yb.shape[0]
    stat_aa.mul_(beta).add_(codes.T @ codes, alpha=1.0 / m)
    stat_ay.mul_(beta).add_(codes.T @ Yb, alpha=1.0 / m)


RunResult = tuple[Tensor, float, int, float, list[dict[str, float]]]


def run_online(
    Y: Tensor,
    atoms: Tensor,
    alpha: float,
    *,
    passes: float | None,
    batch_size: int | None,
    retarget: int,
    retune: Callable[[Tensor], float] | None,
    gen: torch.Generator,
    progress: ProgressFn | None,
) -> RunResult:
    """Mairal 2009 Alg. 1: exact LARS codes per minibatch, forgetting statistics, one BCD sweep."""
    n, dim = Y.shape
    K = atoms.shape[0]
    m = min(batch_size or 256, n)
    n_steps = max(1, int(math.ceil((passes if passes is not None else 0.5) * n / m)))
    stat_aa = torch.zeros(K, K, device=Y.device)  # Σ β-weighted a aᵀ / m   [K, K]
    stat_ay = torch.zeros(K, dim, device=Y.device)  # Σ β-weighted a yᵀ / m  [K, dim]
    retarget_at = {int(n_steps * (i + 1) / (retarget + 1)) for i in range(retarget)} if retune else set()
    history: list[dict[str, float]] = []
    order = torch.randperm(n, generator=gen).to(Y.device)
    cursor, ewa = 0, math.nan
    for step in range(n_steps):
        if cursor + m > n:  # next pass: reshuffle
            order, cursor = torch.randperm(n, generator=gen).to(Y.device), 0
        Yb = Y[order[cursor : cursor + m]]  # [m, dim]
        cursor += m
        codes = lasso_lars(Yb, atoms, alpha)  # [m, K], exact
        cost = lasso_objective(Yb, atoms, codes, alpha)
        ewa = cost if step == 0 else ewa + (cost - ewa) * min(1.0, m / n)
        accumulate_forgetting(stat_aa, stat_ay, codes, Yb, forgetting_factor(step, m))
        atoms = revive_atoms(update_atoms(atoms, stat_aa, stat_ay), stat_aa, Yb, gen)
        if retune is not None and step + 1 in retarget_at:
            alpha = retune(atoms)
        if progress is not None:
            progress(step + 1, n_steps, {"cost": ewa, "alpha": alpha})
        if (step + 1) % max(1, n_steps // 20) == 0 or step + 1 == n_steps:
            history.append({"step": float(step + 1), "samples": float((step + 1) * m), "cost": ewa, "alpha": alpha})
    return atoms, alpha, n_steps, ewa, history


# the "passes" schedule codes all signals at once where n·K² is at most FULL_BATCH_FLOPS (a
# few milliseconds of BLAS on one core), with at most FULL_BATCH_FISTA FISTA iterations per
# epoch; see run_passes
FULL_BATCH_FLOPS = 2e8
FULL_BATCH_FISTA = 30
# minibatch steps code exactly (LARS) from the pass where a trial minibatch's exact codes
# average at most EXACT_MAX_SUPPORT non-zeros: a LARS solve takes about 2 homotopy steps
# per non-zero, each about the cost of 2 FISTA iterations, so at the limit about 1.3× the
# cost of FISTA's 100 iterations (measured on mnist-5k: 28 non-zeros, the same time per
# pass); see PassCoder
EXACT_MAX_SUPPORT = 32


class PassCoder:
    """The sparse coder of the ``passes`` schedule, one minibatch at a time.

    With ``exact_at_once`` (minibatch steps on the CPU with sgan's compiled kernels,
    :mod:`sgan_cli.native`): exact LARS codes throughout. A compiled LARS step costs O(K·s)
    per signal against FISTA's O(K²) per iteration, so exact codes are also the cheaper
    ones (mnist-5k at α = 1: 2 passes in 2.8 s against 5.4 s with a FISTA first pass, at
    a better objective; quiet 2-core AMD EPYC). Otherwise FISTA, warm-started from each
    signal's previous code (at most ``max_iter`` iterations); or, with ``exact_allowed``,
    exact LARS codes from the trial minibatch on whose exact codes average at most
    ``EXACT_MAX_SUPPORT`` non-zeros (the rule for the torch engine: GPUs, CPUs without a
    C compiler). FISTA's codes carry small
    spurious non-zeros (61 against 28 exact on mnist-5k after one pass), so once they
    average at most 3× the limit, the next pass codes its first minibatch exactly as the
    trial (about 1/16 of a pass on mnist-5k) and goes on exactly if it is sparse enough.
    One trial only, and a decision for good: at 0.1 support on mnist-5k the training
    signals' exact codes stay near 50 non-zeros pass after pass, and at α = 1 the exact
    codes of all signals went from 28 non-zeros after 2 passes to 22 after 9.
    """

    def __init__(self, max_iter: int, exact_allowed: bool, exact_at_once: bool = False) -> None:
        self.max_iter = max_iter
        self.exact_allowed = exact_allowed
        self.exact = exact_at_once and exact_allowed
        self.trial = self.tried = False
        self.lip_vec: Tensor | None = None  # warm start of the power iteration

    def code(self, Yb: Tensor, atoms: Tensor, alpha: float, old: Tensor, first: bool) -> Tensor:
        """Codes [m, K] of Yb [m, dim]; ``old`` [m, K] their previous codes, ``first``: the
        pass's first minibatch."""
        gram = atoms @ atoms.T
        if self.exact or (self.trial and first):
            new = lasso_lars(Yb, atoms, alpha, gram=gram)
            if not self.exact:
                self.exact, self.tried = _mean_support(new) <= EXACT_MAX_SUPPORT, True
            return new
        lip, self.lip_vec = lipschitz(gram, self.lip_vec, iters=10 if self.lip_vec is not None else 50)
        return lasso_fista(Yb, atoms, alpha, codes0=old, max_iter=self.max_iter, tol=1e-4, gram=gram, lip=lip)

    def end_pass(self, codes: Tensor) -> None:
        """After a pass over all signals, with their latest codes [n, K]: plan the next."""
        self.trial = (
            self.exact_allowed and not (self.exact or self.tried) and _mean_support(codes) <= 3 * EXACT_MAX_SUPPORT
        )


def _mean_support(codes: Tensor) -> float:
    """Mean number of non-zeros per code row of codes [n, K]."""
    return float((codes != 0).sum(dim=1).double().mean())


def run_passes(
    Y: Tensor,
    atoms: Tensor,
    alpha: float,
    *,
    passes: float | None,
    batch_size: int | None,
    retarget: int,
    retune: Callable[[Tensor], float] | None,
    gen: torch.Generator,
    progress: ProgressFn | None,
) -> RunResult:
    """Whole passes over Y with exact LARS (or warm-started FISTA) codes and replaced (exact)
    statistics.

    On the CPU with sgan's compiled kernels (:mod:`sgan_cli.native`) every step codes a
    256-signal minibatch exactly (:class:`PassCoder`), about 300 steps within 4–40 passes
    by default. Measured on a quiet 2-core AMD EPYC at 0.1 support (held-out objective):
    digits (K = 64) 4.573 in 0.23 s (40 passes) against 4.591 in 0.42 s for the 60
    full-batch FISTA epochs below; mnist-5k (K = 784) 21.17 in 33 s (20 passes) against
    21.83 in 20 s (10 passes). Exact codes make each pass count: on mnist-5k at α = 1
    FISTA codes needed 6 passes for the objective exact ones reach in 4.

    Elsewhere (GPUs, no C compiler: the torch engine) the minibatch is sized to the cost
    model of batched torch operations: where one FISTA iteration over *all* signals is cheap
    (n·K² ≤ ``FULL_BATCH_FLOPS``, e.g. digits 1,617 × K = 64) per-call overhead, not
    arithmetic, bounds a 256-signal step, so every epoch codes all signals at once with at
    most ``FULL_BATCH_FISTA`` warm-started iterations (an inexact block coordinate step:
    the dictionary moves right after) and takes one exact dictionary update, 60 epochs by
    default; larger problems take 256-signal steps (about 150 within 4–20 passes) with
    FISTA codes solved to tolerance, exact LARS codes from the second pass on where they
    are sparse. ``batch_size`` given: minibatch steps of that size. Measured against SPAMS'
    trainDL in ``benchmarks/bench_learn_dict.py`` (README, Benchmarks).
    """
    n, dim = Y.shape
    K = atoms.shape[0]
    compiled = native.usable(Y)
    full, m, n_batches, n_passes = _passes_plan(n, K, compiled, passes, batch_size)
    max_iter = FULL_BATCH_FISTA if full else 100
    codes = torch.zeros(n, K, device=Y.device)  # latest code of every signal     [n, K]
    stat_aa = torch.zeros(K, K, device=Y.device)  # Σ_i a_i a_iᵀ over latest codes [K, K]
    stat_ay = torch.zeros(K, dim, device=Y.device)  # Σ_i a_i y_iᵀ               [K, dim]
    retarget_at = {int(n_passes * (i + 1) / (retarget + 1)) for i in range(retarget)} if retune else set()
    history: list[dict[str, float]] = []
    coder = PassCoder(max_iter, exact_allowed=not full, exact_at_once=compiled)
    total = n_passes * n_batches
    cost = math.nan
    for p in range(n_passes):
        order = torch.randperm(n, generator=gen).to(Y.device)
        cost_sum = 0.0
        for b in range(n_batches):
            idx = order[b * m : (b + 1) * m]
            Yb = Y[idx]  # [m, dim]
            old = codes[idx]
            new = coder.code(Yb, atoms, alpha, old, first=b == 0)
            codes[idx] = new
            # first pass: Mairal's forgetting, early codes came from poor dictionaries
            _add_to_statistics(stat_aa, stat_ay, new, old, Yb, forgetting_factor(b, m) if p == 0 else None)
            cost_sum += lasso_objective(Yb, atoms, new, alpha) * Yb.shape[0]
            atoms = revive_atoms(update_atoms(atoms, stat_aa, stat_ay), stat_aa, Yb, gen)
            if progress is not None:
                progress(p * n_batches + b + 1, total, {"cost": cost, "alpha": alpha})
        cost = cost_sum / n
        if p == 0:  # switch to exact sums over every signal's latest code
            stat_aa = codes.T @ codes
            stat_ay = codes.T @ Y
        coder.end_pass(codes)
        if retune is not None and p + 1 in retarget_at:
            alpha = retune(atoms)
        history.append(
            {"step": float((p + 1) * n_batches), "samples": float((p + 1) * n), "cost": cost, "alpha": alpha}
        )
    return atoms, alpha, total, cost, history


def _passes_plan(
    n: int, K: int, compiled: bool, passes: float | None, batch_size: int | None
) -> tuple[bool, int, int, int]:
    """How the passes schedule walks n signals with K atoms: (full-batch epochs?, minibatch
    size m, minibatches per pass, passes). ``compiled``: sgan's compiled kernels code the
    minibatches (:func:`sgan_cli.native.usable`)."""
    full = batch_size is None and not compiled and n * K * K <= FULL_BATCH_FLOPS
    m = n if full else min(batch_size or 256, n)
    n_batches = int(math.ceil(n / m))
    # default: 60 full-batch epochs, or a number of minibatch updates within a range of passes
    # (small sets need many passes, large ones few; scikit-learn's early stopping lands at
    # 1.6–8 passes on ours)
    if full:
        default = 60
    elif compiled:
        default = min(40, max(4, math.ceil(300 / n_batches)))
    else:
        default = min(20, max(4, math.ceil(150 / n_batches)))
    return full, m, n_batches, max(1, int(math.ceil(passes if passes is not None else default)))


def _add_to_statistics(
    stat_aa: Tensor, stat_ay: Tensor, new: Tensor, old: Tensor, Yb: Tensor, beta: float | None
) -> None:
    """In place: a minibatch Yb [m, dim] with its new codes ``new`` [m, K] enters the statistics
    Σ aaᵀ [K, K] and Σ a yᵀ [K, dim]: with forgetting factor ``beta`` (the first pass), or, with
    ``beta`` None, in place of its previous codes ``old`` [m, K]."""
    if beta is not None:
        accumulate_forgetting(stat_aa, stat_ay, new, Yb, beta)
    else:
        # later passes: replace this minibatch's contribution (exact full-data sums)
        stat_aa += new.T @ new - old.T @ old
        stat_ay += (new - old).T @ Yb
