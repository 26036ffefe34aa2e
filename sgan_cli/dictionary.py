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
  exact from the second pass on where they are sparse (see
  :func:`sgan_cli.dictionary_schedules.run_passes`, :class:`~sgan_cli.dictionary_schedules.PassCoder`);
* ``online`` (large redundant data seen about once, e.g. patches): exact codes of each
  minibatch by a batched LARS homotopy and forgetting statistics. On coherent patch
  dictionaries FISTA is far from the exact codes even after hundreds of iterations, and
  inexact codes bias the statistics: exactness is what reaches scikit-learn's objective.

α is a poor knob for sparsity (measured: the α giving 10 % support ranged from 0.016 to 0.36),
so α is tuned on the lasso paths of held-out signals: :func:`~sgan_cli.alpha_search.predict_alpha`
from the path record alone before and during learning, :func:`~sgan_cli.alpha_search.find_alpha`
(the record, then a check against exact codes) on the final dictionary.

This module is the learner (:func:`learn_dictionary`: hold signals out, start, run a schedule,
tune α, measure); the atoms' start and update are :mod:`sgan_cli.dictionary_atoms`, the
schedules :mod:`sgan_cli.dictionary_schedules`, the α search :mod:`sgan_cli.alpha_search`,
learning from a data configuration :mod:`sgan_cli.dictionary_job`, and ``sgan learn-dict``
:mod:`sgan_cli.learn_dict_run`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .alpha_search import find_alpha, predict_alpha
from .dictionary_atoms import init_atoms
from .dictionary_schedules import run_online, run_passes
from .lars import lasso_lars
from .progress import ProgressFn
from .sparse_coding import lasso_objective, psnr, support_fraction


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
      where they are sparse, :class:`~sgan_cli.dictionary_schedules.PassCoder`), and the statistics replace a signal's
      old contribution (exact full-data sums after one pass);
    * ``"online"`` — for large redundant data seen about once (patches): exact LARS codes,
      statistics with forgetting (scikit-learn's schedule).

    ``"auto"`` takes ``online`` above 20,000 training signals. Either ``alpha`` is fixed, or
    it is re-tuned up to ``retarget`` times during learning and once at the end so that the exact
    codes of held-out signals have support fraction ``target_sparsity``. ``evaluate=False``
    skips the final exact coding of the held-out signals (benchmarks time learning alone);
    sparsity, objective and PSNR are then NaN, and α is the last interim one
    (:func:`~sgan_cli.alpha_search.predict_alpha`, unchecked).
    """
    if (alpha is None) == (target_sparsity is None):
        raise ValueError("give exactly one of alpha and target_sparsity")
    gen = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    Y_train, Y_held, n_held = _hold_out(Y, heldout_fraction, max_heldout, gen, dev)
    solver = _resolve_solver(solver, Y_train.shape[0])
    atoms = init_atoms(Y_train, n_atoms, gen).to(dev)
    if alpha is None:
        assert target_sparsity is not None
        alpha = predict_alpha(Y_held, atoms, target_sparsity)
    retune = None if target_sparsity is None else _retuner(Y_held, target_sparsity)
    run = run_online if solver == "online" else run_passes
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
        alpha, sparsity, objective, quality = _evaluate(Y_held, atoms, alpha, target_sparsity)
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


def _hold_out(
    Y: Tensor, fraction: float, max_heldout: int, gen: torch.Generator, dev: torch.device
) -> tuple[Tensor, Tensor, int]:
    """Signals Y [n, dim] → (training signals, held-out signals, how many are held out), float32
    on ``dev``: a random ``fraction`` of them (at most ``max_heldout``, none of a single signal)
    held out. With none held out, every signal trains in its order (the schedules draw their
    own), and the held-out figures are measured on the training signals (the same tensor)."""
    n = Y.shape[0]
    perm = torch.randperm(n, generator=gen)
    n_held = min(max_heldout, int(round(fraction * n))) if n > 1 else 0
    held_idx, train_idx = perm[:n_held], perm[n_held:]
    Y_train = Y[train_idx].to(dev, torch.float32) if n_held > 0 else Y.to(dev, torch.float32)
    Y_held = Y[held_idx].to(dev, torch.float32) if n_held > 0 else Y_train
    return Y_train, Y_held, n_held


def _resolve_solver(solver: str, n_train: int) -> str:
    """``"online"`` or ``"passes"``; ``"auto"`` takes ``online`` above 20,000 training signals."""
    if solver == "auto":
        return "online" if n_train > 20000 else "passes"
    if solver not in ("online", "passes"):
        raise ValueError(f"unknown solver {solver!r}")
    return solver


def _retuner(Y_held: Tensor, target: float) -> Callable[[Tensor], float]:
    """The interim re-tuning of α: for the current atoms [K, dim], the α whose exact codes of
    Y_held [n, dim] have support fraction ≈ ``target``, from their path record alone."""

    def retune(current: Tensor) -> float:
        return predict_alpha(Y_held, current, target)

    return retune


def _evaluate(Y_held: Tensor, atoms: Tensor, alpha: float, target: float | None) -> tuple[float, float, float, float]:
    """The final α (found for the ``target`` support fraction, else the given one) and, for the
    exact codes of Y_held [n, dim] at that α: support fraction, objective ½‖Y − AD‖²/n + α‖A‖₁/n,
    and mean PSNR (dB) of the reconstructions."""
    if target is not None:
        alpha, held_codes = find_alpha(Y_held, atoms, target)
    else:
        held_codes = lasso_lars(Y_held, atoms, alpha)
    sparsity = support_fraction(held_codes)
    objective = lasso_objective(Y_held, atoms, held_codes, alpha)
    return alpha, sparsity, objective, float(psnr(held_codes @ atoms, Y_held).mean())
