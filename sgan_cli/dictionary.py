"""Dictionary learning: online Mairal-style learning in PyTorch, sparsity targeting.

Objective (Ganz & Blau eq. 1; Mahdizadehaghdam et al. 2019, eq. 5), per signal and averaged over n signals:

    min_{D, A}  ½‖Y − A D‖²/n + α‖A‖₁/n      s.t. ‖d_k‖₂ = 1 for every atom (row) d_k.

The solver follows Mairal et al. 2009 (online dictionary learning, the algorithm of
scikit-learn's ``MiniBatchDictionaryLearning``): minibatches are sparse-coded, the sufficient
statistics Σ aaᵀ [K, K] and Σ a yᵀ [K, dim] are accumulated, and the atoms take one
block-coordinate sweep on the surrogate they define. Two schedules, in batched PyTorch (so
the same code runs on a GPU) around compiled CPU kernels of the per-signal parts
(:mod:`sgan_cli.native`) where they were built when sgan was installed:

* ``passes`` (data revisited many times, e.g. whole images): every signal keeps its latest
  code; the first pass accumulates statistics with forgetting, later passes *replace* a
  signal's old contribution (the incremental variant of Mairal et al. 2010 §3.4), so the
  statistics are exact full-data sums. On the CPU with the compiled kernels
  (:mod:`sgan_cli.native`) every 256-signal step codes exactly (LARS); with the torch
  engine codes are warm-started FISTA solves, all signals at once on small problems,
  exact from the second pass on where they are sparse (see :func:`_run_passes`,
  :class:`_PassCoder`);
* ``online`` (large redundant data seen about once, e.g. patches): exact codes of each
  minibatch by a batched LARS homotopy and forgetting statistics. On coherent patch
  dictionaries FISTA is far from the exact codes even after hundreds of iterations, and
  inexact codes bias the statistics: exactness is what reaches scikit-learn's objective.

α is a poor knob for sparsity (measured: the α giving 10 % support ranged from 0.016 to 0.36),
so α is tuned on the lasso paths of held-out signals: :func:`predict_alpha` from the path
record alone before and during learning, :func:`find_alpha` (the record, then a check
against exact codes) on the final dictionary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from . import native
from .config import DictConfig, SganConfig, check_section, to_dict
from .contracts import check_writable, save_dictionary
from .data import ImageData, absolute_paths, load_data
from .devices import resolve_device
from .errors import SganError
from .images import save_atoms_png
from .lars import LarsPath, lars_path, lasso_lars
from .outputs import AtomicGroup
from .progress import ProgressFn
from .sparse_coding import lasso_fista, lasso_objective, lipschitz, psnr, support_fraction
from .validation import check_memory


@dataclass
class LearnedDictionary:
    """What :func:`learn_dictionary` returns; everything ``learn-dict`` writes and prints."""

    atoms: Tensor  # [K, dim], unit-norm rows, float32 on CPU
    alpha: float  # α of eq. (1) for which the held-out codes have the reported support
    target_sparsity: float | None  # requested support fraction (None when α was given)
    # sparsity, objective and PSNR are measured on the held-out signals, or on the training
    # signals when none were held out (n_heldout = 0: too few signals, or dict.heldout = 0)
    achieved_sparsity: float  # support fraction of exact lasso codes of held-out signals
    objective: float  # ½‖Y − AD‖²/n + α‖A‖₁/n on the held-out signals, exact codes
    train_objective: float  # running (exponentially weighted) minibatch cost at the end
    psnr: float  # mean PSNR (dB) of the held-out reconstructions AD, pixels in [−1, 1]
    n_train: int
    n_heldout: int  # signals held out (0: the figures above are of the training signals)
    steps: int  # minibatch steps taken
    solver: str  # "online" or "passes"
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per pass


def extract_signals(images: Tensor, patch: int | None, stride: int) -> Tensor:
    """Images [N, C, H, W] in [−1, 1] → signals [n, dim].

    Whole images (patch None): dim = C·H·W. Patches: every P×P window at the given stride,
    flattened in (C, P, P) order — the order ``conv_transpose2d`` uses when the atoms are
    viewed as a [K, C, P, P] kernel, so patch synthesis needs no reshuffling. ``F.unfold``
    does the extraction without loops: [N, C·P·P, L] → [N·L, C·P·P].
    """
    if patch is None:
        return images.reshape(images.shape[0], -1)
    cols = F.unfold(images, kernel_size=patch, stride=stride)  # [N, C·P·P, L]
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


# signals of at most this many values (patches: 3×3×C for C ≤ 5) start from principal
# directions, longer ones (whole images) from random signals; see init_atoms
PCA_INIT_MAX_DIM = 48


def init_atoms(Y: Tensor, n_atoms: int, generator: torch.Generator, max_rows: int = 20000) -> Tensor:
    """Initial dictionary [K, dim] for signals Y [n, dim]: random signals, after the leading
    principal directions for short signals (dim ≤ ``PCA_INIT_MAX_DIM``: patches).

    Patches start from the top min(K, dim) right singular vectors of (a random subset of)
    Y — scikit-learn's ``MiniBatchDictionaryLearning`` start, which finds the DC and
    gradient atoms at once (100k 3×3×3 patches, K = 100, α = 0.3: objective 1.06800 after
    half a pass against 1.06964 from random patches). Whole images start from distinct
    random signals of non-negligible norm (Mairal 2009 §3.1, SPAMS' trainDL start): a
    complete principal basis is a poor start for sparse codes, every signal is dense in it
    (SPAMS itself from that start: objective 4.550 against 4.006 after 25 minibatches on
    digits, K = 64, α = 0.36; mnist-5k at 0.1 support: held-out objective 21.83 against
    22.18). Gaussian directions follow if signals run out. Singular vectors have an
    arbitrary sign; it is fixed so each has a non-negative sum, for reproducible pictures.
    """
    n, dim = Y.shape
    rows = torch.randperm(n, generator=generator)[:max_rows].to(Y.device)
    sample = Y[rows]
    n_svd = min(n_atoms, dim, sample.shape[0]) if dim <= PCA_INIT_MAX_DIM else 0
    atoms = sample[:0]
    if n_svd > 0:
        # right singular vectors of the sample = eigenvectors of its [dim, dim] second
        # moment (float64), largest first: cheaper than an SVD of up to 20,000 rows
        s64 = sample.double()
        _, vecs = torch.linalg.eigh(s64.T @ s64)  # ascending eigenvalues
        atoms = vecs.flip(1).T[:n_svd].to(sample.dtype)
        atoms = atoms * torch.where(atoms.sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    if n_atoms > n_svd:
        norms = sample.norm(dim=1)
        usable = torch.nonzero(norms > 1e-3 * norms.max().clamp_min(1e-12)).flatten()
        pick = usable[torch.randperm(usable.numel(), generator=generator).to(usable.device)]
        extra = sample[pick[: n_atoms - n_svd]]
        if extra.shape[0] < n_atoms - n_svd:
            gauss = torch.randn(n_atoms - n_svd - extra.shape[0], dim, generator=generator).to(Y)
            extra = torch.cat([extra, gauss])
        atoms = torch.cat([atoms, extra])
    return F.normalize(atoms, dim=1)


# update_atoms runs the compiled sweep (one thread, no BLAS: about 6 GFLOP/s here) where
# an atom's K·dim multiply-adds cost less than the blocked sweep's ~15 µs of per-atom
# overhead; measured on a 2-core AMD EPYC: K = 64, dim = 64: 0.16 ms against 0.81 ms;
# K = 256, dim = 75: 0.83 against 2.35 ms; K = dim = 784: 69 against 21 ms (BLAS wins)
NATIVE_SWEEP_MAX_SIZE = 50_000


def update_atoms(atoms: Tensor, stat_aa: Tensor, stat_ay: Tensor, sweeps: int = 1, block: int = 64) -> Tensor:
    """Block-coordinate descent on the surrogate ½Tr(DᵀD·AA) − Tr(D·AY) (Mairal 2009, Alg. 2).

    atoms [K, dim]; stat_aa = Σ aaᵀ [K, K]; stat_ay = Σ a yᵀ [K, dim]. Atom k moves to
    d_k + (AY_k − AA_k D)/AA_kk and is projected back onto the unit sphere, one atom after
    the other (Gauss–Seidel). The residuals AY_k − AA_k D of a block of ``block`` atoms come
    from one matrix product, then each atom's change is folded into the rest of its block by
    a rank-one update: the same sweep as atom-by-atom matrix–vector products, with one
    product per block. On the CPU the per-atom vector work runs in NumPy (about 1 µs per call
    against torch's 5–10 µs: the loop over atoms is pure overhead at these sizes); small
    dictionaries (K·dim ≤ ``NATIVE_SWEEP_MAX_SIZE``) take the compiled sweep of
    :mod:`sgan_cli.native` instead, the same updates atom by atom in float64. Atoms no
    code uses (AA_kk ≈ 0) are left for :func:`revive_atoms`.
    """
    diag = stat_aa.diagonal()
    used = diag > 1e-10 * diag.max().clamp_min(1e-30)  # [K] atoms some code uses
    K, dim = atoms.shape
    if K * dim <= NATIVE_SWEEP_MAX_SIZE and native.usable(atoms):
        return native.update_atoms(atoms, stat_aa, stat_ay, used, sweeps).to(atoms.dtype)
    D = atoms.clone()
    use = used.tolist()
    inv = (1.0 / diag.clamp_min(1e-30)).tolist()
    on_cpu = D.device.type == "cpu"
    for _ in range(sweeps):
        for b0 in range(0, K, block):
            b1 = min(K, b0 + block)
            R = stat_ay[b0:b1] - stat_aa[b0:b1] @ D  # [B, dim] residuals of the block's atoms
            coupling = stat_aa[b0:b1, b0:b1]  # [B, B]
            if on_cpu:
                _sweep_block_numpy(D[b0:b1].numpy(), R.numpy(), coupling.numpy(), use[b0:b1], inv[b0:b1])
            else:
                _sweep_block_torch(D[b0:b1], R, coupling, use[b0:b1], inv[b0:b1])
    return D


def _sweep_block_numpy(D, R, coupling, use: list[bool], inv: list[float]) -> None:
    """In place on D [B, dim]: sequential atom updates within one block (see update_atoms)."""
    import numpy as np

    for i in range(D.shape[0]):
        if not use[i]:
            continue
        u = D[i] + R[i] * inv[i]
        u /= max(float(np.sqrt(u @ u)), 1e-12)
        delta = u - D[i]
        D[i] = u
        if i + 1 < D.shape[0]:
            R[i + 1 :] -= np.outer(coupling[i + 1 :, i], delta)


def _sweep_block_torch(D: Tensor, R: Tensor, coupling: Tensor, use: list[bool], inv: list[float]) -> None:
    """The same sweep as :func:`_sweep_block_numpy` with torch ops (GPU)."""
    for i in range(D.shape[0]):
        if not use[i]:
            continue
        u = D[i] + R[i] * inv[i]
        u = u / u.norm().clamp_min(1e-12)
        delta = u - D[i]
        D[i] = u
        if i + 1 < D.shape[0]:
            R[i + 1 :].addr_(coupling[i + 1 :, i], delta, alpha=-1.0)


def revive_atoms(atoms: Tensor, stat_aa: Tensor, batch: Tensor, generator: torch.Generator) -> Tensor:
    """Replace atoms that no code uses by random signals of the current minibatch.

    An unused atom gets no gradient from the surrogate and would stay wasted for good.
    """
    diag = stat_aa.diagonal()
    dead = torch.nonzero(diag <= 1e-10 * diag.max().clamp_min(1e-30)).flatten()
    if dead.numel() == 0 or batch.shape[0] == 0:
        return atoms
    pick = torch.randint(0, batch.shape[0], (dead.numel(),), generator=generator).to(batch.device)
    fresh = batch[pick] + 1e-3 * torch.randn(dead.numel(), batch.shape[1], generator=generator).to(batch)
    atoms = atoms.clone()
    atoms[dead] = F.normalize(fresh, dim=1)
    return atoms


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


def learn_dictionary(
    Y: Tensor,
    n_atoms: int,
    *,
    target_sparsity: float | None = 0.1,
    alpha: float | None = None,
    solver: str = "auto",
    passes: float | None = None,
    batch_size: int | None = None,
    heldout_fraction: float = 0.1,
    max_heldout: int = 2000,
    retarget: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: ProgressFn | None = None,
    evaluate: bool = True,
) -> LearnedDictionary:
    """Learn K = ``n_atoms`` unit-norm atoms for the signals Y [n, dim] (float32, [−1, 1]).

    Two schedules of Mairal's algorithm share everything but the sparse coder:

    * ``"passes"`` — for data revisited many times (whole images): every training signal
      keeps its latest code, which warm-starts a batched FISTA solve (or exact LARS codes
      where they are sparse, :class:`_PassCoder`), and the statistics replace a signal's
      old contribution (exact full-data sums after one pass);
    * ``"online"`` — for large redundant data seen about once (patches): exact LARS codes,
      statistics with forgetting (scikit-learn's schedule).

    ``"auto"`` takes ``online`` above 20,000 training signals. Either ``alpha`` is fixed, or
    it is re-tuned up to ``retarget`` times during learning and once at the end so that the exact
    codes of held-out signals have support fraction ``target_sparsity``. ``evaluate=False``
    skips the final exact coding of the held-out signals (benchmarks time learning alone);
    sparsity, objective and PSNR are then NaN, and α is the last interim one
    (:func:`predict_alpha`, unchecked).
    """
    if (alpha is None) == (target_sparsity is None):
        raise ValueError("give exactly one of alpha and target_sparsity")
    gen = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    n = Y.shape[0]
    perm = torch.randperm(n, generator=gen)
    n_held = min(max_heldout, int(round(heldout_fraction * n))) if n > 1 else 0
    held_idx, train_idx = perm[:n_held], perm[n_held:]
    # with nothing held out, every signal trains as it is (the solvers draw their own order)
    Y_train = Y[train_idx].to(dev, torch.float32) if n_held > 0 else Y.to(dev, torch.float32)
    # with no held-out share, sparsity and objective are measured on the training signals
    Y_held = Y[held_idx].to(dev, torch.float32) if n_held > 0 else Y_train
    if solver == "auto":
        solver = "online" if Y_train.shape[0] > 20000 else "passes"
    if solver not in ("online", "passes"):
        raise ValueError(f"unknown solver {solver!r}")
    atoms = init_atoms(Y_train, n_atoms, gen).to(dev)
    if alpha is None:
        assert target_sparsity is not None
        alpha = predict_alpha(Y_held, atoms, target_sparsity)
    retune: Callable[[Tensor], float] | None = None
    if target_sparsity is not None:
        target = target_sparsity

        def retune(current: Tensor) -> float:
            return predict_alpha(Y_held, current, target)

    run = _run_online if solver == "online" else _run_passes
    atoms, alpha, steps, cost, history = run(
        Y_train,
        atoms,
        alpha,
        passes=passes,
        batch_size=batch_size,
        retarget=retarget,
        retune=retune,
        gen=gen,
        progress=progress,
    )
    sparsity = objective = quality = math.nan
    if evaluate:
        if target_sparsity is not None:
            alpha, held_codes = find_alpha(Y_held, atoms, target_sparsity)
        else:
            held_codes = lasso_lars(Y_held, atoms, alpha)
        sparsity = support_fraction(held_codes)
        objective = lasso_objective(Y_held, atoms, held_codes, alpha)
        quality = float(psnr(held_codes @ atoms, Y_held).mean())
    return LearnedDictionary(
        atoms=atoms.float().cpu().contiguous(),
        alpha=float(alpha),
        target_sparsity=target_sparsity,
        achieved_sparsity=sparsity,
        objective=objective,
        train_objective=cost,
        psnr=quality,
        n_train=int(Y_train.shape[0]),
        n_heldout=n_held,
        steps=steps,
        solver=solver,
        history=history,
    )


_RunResult = tuple[Tensor, float, int, float, list[dict[str, float]]]


def _run_online(
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
) -> _RunResult:
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
# epoch; see _run_passes
FULL_BATCH_FLOPS = 2e8
FULL_BATCH_FISTA = 30
# minibatch steps code exactly (LARS) from the pass where a trial minibatch's exact codes
# average at most EXACT_MAX_SUPPORT non-zeros: a LARS solve takes about 2 homotopy steps
# per non-zero, each about the cost of 2 FISTA iterations, so at the limit about 1.3× the
# cost of FISTA's 100 iterations (measured on mnist-5k: 28 non-zeros, the same time per
# pass); see _PassCoder
EXACT_MAX_SUPPORT = 32


class _PassCoder:
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


def _run_passes(
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
) -> _RunResult:
    """Whole passes over Y with exact LARS (or warm-started FISTA) codes and replaced (exact)
    statistics.

    On the CPU with sgan's compiled kernels (:mod:`sgan_cli.native`) every step codes a
    256-signal minibatch exactly (:class:`_PassCoder`), about 300 steps within 4–40 passes
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
    n_passes = max(1, int(math.ceil(passes if passes is not None else default)))
    max_iter = FULL_BATCH_FISTA if full else 100
    codes = torch.zeros(n, K, device=Y.device)  # latest code of every signal     [n, K]
    stat_aa = torch.zeros(K, K, device=Y.device)  # Σ_i a_i a_iᵀ over latest codes [K, K]
    stat_ay = torch.zeros(K, dim, device=Y.device)  # Σ_i a_i y_iᵀ               [K, dim]
    retarget_at = {int(n_passes * (i + 1) / (retarget + 1)) for i in range(retarget)} if retune else set()
    history: list[dict[str, float]] = []
    coder = _PassCoder(max_iter, exact_allowed=not full, exact_at_once=compiled)
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
            if p == 0:
                # first pass: Mairal's forgetting, early codes came from poor dictionaries
                accumulate_forgetting(stat_aa, stat_ay, new, Yb, forgetting_factor(b, m))
            else:
                # later passes: replace this minibatch's contribution (exact full-data sums)
                stat_aa += new.T @ new - old.T @ old
                stat_ay += (new - old).T @ Yb
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


@dataclass
class DictionaryJob:
    """A dictionary learned from a configuration, with the geometry it was learned for."""

    learned: LearnedDictionary
    dataset: str
    channels: int
    image_size: int
    patch: int | None
    stride: int
    n_signals: int  # signals used (training + held-out)
    device: str
    mean: Tensor | None = None  # [dim] subtracted before learning, added back at synthesis (None: no mean term)
    warnings: list[str] = field(default_factory=list)  # what the data cannot support (check_signals)


def centre_signals(Y: Tensor) -> tuple[Tensor, Tensor]:
    """Signals Y [n, dim] → (Y − m, m) with m [dim] their mean: the mean image for whole
    images, the mean patch for patches. Sparse coding of centred signals with the mean
    added back at synthesis is the classic pipeline (DC removal in K-SVD, Elad & Aharon
    2006); without it, sums of unit-norm atoms must rebuild the background on their own."""
    mean = Y.mean(dim=0)
    return Y - mean, mean


def check_dict_config(cfg: DictConfig, channels: int, image_size: int, n_images: int | None = None) -> None:
    """Reject impossible settings with one clear message each, before any work starts
    (including sizes that cannot fit in memory: atoms × dimension, Gram matrices, signals)."""
    check_section("dict", cfg, "the dictionary configuration")
    if cfg.patch is not None and cfg.patch > image_size:
        raise SganError(
            f"dict.patch {cfg.patch} is larger than the {image_size}×{image_size} images",
            where="dict.patch",
            fix=f"give a patch size of at most {image_size}",
        )
    if cfg.solver not in ("auto", "passes", "online"):
        raise SganError(f"unknown solver {cfg.solver!r}", where="dict.solver", fix="use auto, passes or online")

    side = image_size if cfg.patch is None else cfg.patch
    dim = channels * side * side
    k = cfg.atoms or dim
    # atoms, their gradient/statistics (≈4 copies of K×dim), Gram matrices K×K, and the signals
    positions = 1 if cfg.patch is None else max(1, (image_size - cfg.patch) // cfg.stride + 1) ** 2
    n_signals = min(cfg.max_samples, (n_images if n_images is not None else cfg.max_samples) * positions)
    need = 4 * (4 * k * dim + 2 * k * k + n_signals * (dim + k))
    check_memory(
        need,
        f"a dictionary of {k} atoms of {dim} values on {n_signals} signals",
        "--atoms / --image-size / --max-samples",
        "give fewer --atoms, a smaller --image-size or --patch, or fewer --max-samples",
    )


DEFAULT_SPARSITY = 0.1


def target_sparsity_for(cfg: DictConfig, dim: int, n_atoms: int) -> float:
    """The support fraction to aim for, checked against what lasso codes can reach.

    Exact lasso codes have at most ``dim`` non-zeros (the active atoms stay linearly
    independent), so a target of s·K ≥ dim is out of reach: 3×3 grayscale patches (dim 9)
    with 100 atoms cannot have 10 % support. Without an explicit ``--sparsity`` the
    default 0.1 then becomes dim/(3K) (about three atoms per 9-pixel patch); an explicit
    unreachable value is an error that says what is reachable.
    """
    if cfg.sparsity is None:
        return DEFAULT_SPARSITY if DEFAULT_SPARSITY * n_atoms <= dim / 2 else dim / (3 * n_atoms)
    if cfg.sparsity * n_atoms >= dim:
        raise SganError(
            f"--sparsity {cfg.sparsity:g} asks for {cfg.sparsity * n_atoms:.3g} non-zero coefficients per signal, "
            f"but lasso codes of {dim}-dimensional signals have at most {dim} (of {n_atoms} atoms)",
            where="dict.sparsity",
            fix=(
                f"give --sparsity below {dim / n_atoms:.3g} (e.g. "
                f"{dim / (3 * n_atoms):.2g}), fewer --atoms, or a larger --patch"
            ),
        )
    return cfg.sparsity


def signals_from_images(data: ImageData, cfg: DictConfig, gen: torch.Generator) -> Tensor:
    """At most ``cfg.max_samples`` random signals [n, dim] (whole images or patches) in [−1, 1].

    For patches, only as many images as needed are unfolded, so a 60,000-image set never
    materialises its 40 million patches.
    """
    n_img = len(data)
    if cfg.patch is None:
        pick = torch.randperm(n_img, generator=gen)[: cfg.max_samples]
        return extract_signals(data.floats(pick.sort().values), None, 1)
    per_image = ((data.image_size - cfg.patch) // cfg.stride + 1) ** 2
    need = min(n_img, math.ceil(2 * cfg.max_samples / per_image))
    pick = torch.randperm(n_img, generator=gen)[:need].sort().values
    patches = extract_signals(data.floats(pick), cfg.patch, cfg.stride)
    keep = torch.randperm(patches.shape[0], generator=gen)[: cfg.max_samples]
    return patches[keep]


RANK_SUBSET = 1024  # signals whose rank check_signals measures
WIDE_FACTOR = 8  # more atoms than this many per dimension the signals span is a warning


def count_distinct(Y: Tensor) -> int:
    """The number of distinct rows of Y [n, dim], by a random projection of each row (rows
    that differ project equal with probability 0), in chunks: no copy of Y is made."""
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(Y.shape[1], dtype=torch.float64, generator=gen)
    keys = torch.cat([chunk.double() @ r for chunk in Y.split(4096)]) if Y.shape[0] else torch.zeros(0)
    return int(torch.unique(keys).numel())


def check_signals(Y: Tensor, n_atoms: int, centred: bool, source: str) -> list[str]:
    """What the signals Y [n, dim] (as the solver sees them) can support.

    An SganError when there is nothing to learn: every signal the same (after removing their
    mean, when ``centred``), so every code would be 0 and every atom point one way. Warnings
    when fewer distinct signals than atoms (``--limit 3 --atoms 64``: at most 3 atoms are
    determined), or when the signals span a subspace of their space that is far too small for
    the atoms (more than :data:`WIDE_FACTOR` atoms per dimension spanned; over-complete
    dictionaries of full-rank data are not warned about). The rank is measured on the first
    :data:`RANK_SUBSET` signals (a random subset already)."""
    n, dim = int(Y.shape[0]), int(Y.shape[1])
    sub = Y[:RANK_SUBSET].double()
    gram = sub @ sub.T if sub.shape[0] <= dim else sub.T @ sub
    eig = torch.linalg.eigvalsh(gram)
    # pixels step by 2/255 in [−1, 1]: values within 1e-4 of 0 are rounding (a float32 mean
    # of equal values may miss them by an ulp), and so are directions 1e-10 below the largest
    flat = bool(sub.abs().max() < 1e-4) if sub.numel() else True
    rank = 0 if flat else int((eig > float(eig.max()) * max(gram.shape) * 1e-10).sum())
    where = "once their mean is removed" if centred else "as they are"
    if rank == 0:
        raise SganError(
            f"the {n} signals of {source} are all the same ({where}): there is nothing for atoms to "
            "describe (every code would be 0, every atom point one way)",
            where=source,
            fix="give varied images (check the data set), or learn with --no-mean if they differ only by a constant",
        )
    distinct = count_distinct(Y)
    notes = []
    if distinct < n_atoms:
        notes.append(f"{distinct} distinct signal{'' if distinct == 1 else 's'} for {n_atoms} atoms")
    if rank < dim and n_atoms > WIDE_FACTOR * rank:
        notes.append(f"the signals span only {rank} of their {dim} dimensions ({where})")
    if not notes:
        return []
    most = min(distinct, rank) if rank < dim else distinct
    return [
        f"the data cannot support {n_atoms} atoms: {' and '.join(notes)}; they determine at most about "
        f"{most} atoms, the others repeat them or keep their random start. Learn fewer atoms "
        f"(--atoms {max(1, most)}) or give more, more varied images"
    ]


def learn_from_config(
    data: ImageData,
    cfg: DictConfig,
    progress: ProgressFn | None = None,
    note: Callable[[str], None] | None = None,
) -> DictionaryJob:
    """Validate the settings, cut the signals and learn the dictionary they describe.
    ``note`` gets one line, before learning starts, saying what is learned (:func:`plan_text`)."""
    check_dict_config(cfg, data.channels, data.image_size, len(data))
    device = resolve_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    Y = signals_from_images(data, cfg, gen)
    n_atoms = cfg.atoms if cfg.atoms is not None else Y.shape[1]
    mean = None
    if cfg.mean:  # a stage of its own: the solver sees centred signals only
        Y, mean = centre_signals(Y)
    warnings = check_signals(Y, n_atoms, cfg.mean, data.source)
    target = None if cfg.alpha is not None else target_sparsity_for(cfg, int(Y.shape[1]), n_atoms)
    if note is not None:
        note(plan_text(data, cfg, int(Y.shape[0]), int(Y.shape[1]), n_atoms, target, str(device)))
    learned = learn_dictionary(
        Y,
        n_atoms,
        target_sparsity=target,
        alpha=cfg.alpha,
        solver=cfg.solver,
        passes=cfg.passes,
        batch_size=cfg.batch_size,
        heldout_fraction=cfg.heldout,
        seed=cfg.seed,
        device=device,
        progress=progress,
    )
    return DictionaryJob(
        learned,
        data.name,
        data.channels,
        data.image_size,
        cfg.patch,
        cfg.stride,
        int(Y.shape[0]),
        str(device),
        mean,
        warnings,
    )


def plan_text(
    data: ImageData, cfg: DictConfig, n_signals: int, dim: int, n_atoms: int, target: float | None, device: str
) -> str:
    """What learn-dict is about to do, in one line: atoms (and why that many), signals, target."""
    if cfg.atoms is not None:
        atoms = f"{n_atoms} atoms"
    else:  # the default that made MNIST take minutes: say it, and the knob
        atoms = f"{n_atoms} atoms (square: K = {dim} values per signal; --atoms K for fewer, and faster)"
    shape = f"{data.channels}×{data.image_size}×{data.image_size}"
    signals = (
        f"{n_signals:,} whole {shape} images of {data.name}"
        if cfg.patch is None
        else f"{n_signals:,} {cfg.patch}×{cfg.patch} patches of {len(data):,} {shape} {data.name} images"
    )
    aim = f"target support {target:g}" if target is not None else f"α = {cfg.alpha:g}"
    return f"learning {atoms} from {signals}, {aim}, on {device}; the time left shows once the first steps are timed"


# --- the `sgan learn-dict` pipeline, as named stages ---------------------------------------------


@dataclass
class LearnDictRun:
    """What :func:`run_learn_dict` did, for the command to print."""

    job: DictionaryJob
    out: Path
    atoms_png: Path
    hash: str
    seconds: float


def atoms_png_path(out_path: Path) -> Path:
    """``atoms.png`` beside ``dictionary.safetensors``; ``NAME_atoms.png`` beside other names."""
    return out_path.with_name("atoms.png" if out_path.stem == "dictionary" else f"{out_path.stem}_atoms.png")


def run_learn_dict(
    cfg: SganConfig,
    out_path: Path,
    force: bool = False,
    progress: ProgressFn | None = None,
    note: Callable[[str], None] | None = None,
) -> LearnDictRun:
    """``sgan learn-dict``: check outputs and device → load images → learn → dictionary file → atoms.png.

    The file records the data it was learned on (the ``data`` section, its paths made absolute),
    which ``sgan train`` reads to train on the same data. ``note``: see :func:`learn_from_config`."""
    import time

    png_path = atoms_png_path(out_path)
    check_writable(out_path, force)
    check_writable(png_path, force)
    resolve_device(cfg.dict.device)  # an absent or unknown device fails before the images load
    images = load_data(cfg.data)
    native.library()  # loading the compiled kernels is not learning time
    start = time.perf_counter()
    job = learn_from_config(images, cfg.dict, progress, note)
    seconds = time.perf_counter() - start
    side = job.image_size if job.patch is None else job.patch
    # both written first, then renamed in as one group: the old picture removed, the dictionary
    # renamed in, then the new picture (AtomicGroup): a kill leaves no picture of other atoms
    with AtomicGroup() as group:
        save_atoms_png(job.learned.atoms, job.channels, side, png_path, group)
        record = {"data": to_dict(absolute_paths(cfg.data)), "dict": to_dict(cfg.dict)}  # train reads "data"
        digest = save_dictionary(out_path, job, record, force=force, group=group)
    return LearnDictRun(job, out_path, png_path, digest, seconds)


def learn_dict_summary(run: LearnDictRun) -> dict[str, Any]:
    """The record ``sgan learn-dict --json`` prints."""
    job, r = run.job, run.job.learned
    engine, why = native.engine(job.device)
    return {
        "out": str(run.out), "atoms_png": str(run.atoms_png), "hash": run.hash, "dataset": job.dataset,
        "channels": job.channels, "image_size": job.image_size, "patch": job.patch, "stride": job.stride,
        "n_atoms": int(r.atoms.shape[0]), "dim": int(r.atoms.shape[1]), "n_signals": job.n_signals,
        "n_heldout": r.n_heldout, "target_sparsity": r.target_sparsity, "achieved_sparsity": r.achieved_sparsity,
        "alpha": r.alpha, "objective": r.objective, "psnr_db": r.psnr, "mean": job.mean is not None,
        "measured_on": "held-out" if r.n_heldout else "training", "warnings": job.warnings,
        "solver": r.solver, "steps": r.steps, "device": job.device,
        "engine": engine, "engine_note": why, "seconds": run.seconds,
    }  # fmt: skip
