"""Sparse coders against closed forms and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import sparse_encode
from sklearn.linear_model import orthogonal_mp_gram

from sgan_cli.sparse_coding import lasso_fista, lasso_lars, lasso_objective, omp, psnr, soft_threshold, support_fraction


def _problem(n=64, dim=12, k=30, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(k, dim, generator=g, dtype=dtype), dim=1)
    Y = torch.randn(n, dim, generator=g, dtype=dtype)
    return Y, atoms


def test_soft_threshold_closed_form():
    u = torch.tensor([-3.0, -0.5, 0.0, 0.2, 2.0])
    assert torch.equal(soft_threshold(u, 1.0), torch.tensor([-2.0, 0.0, 0.0, 0.0, 1.0]))
    assert torch.equal(soft_threshold(u, 1.0), torch.nn.functional.softshrink(u, 1.0))


@pytest.mark.parametrize("alpha", [0.05, 0.3, 1.0])
def test_lars_matches_sklearn_lasso_lars(alpha):
    Y, atoms = _problem()
    ours = lasso_lars(Y, atoms, alpha)
    ref = torch.from_numpy(sparse_encode(Y.numpy(), atoms.numpy(), algorithm="lasso_lars", alpha=alpha))
    assert torch.allclose(ours, ref, atol=1e-6)
    # same support, up to coefficients at the entering kink (|a| ≲ 1e-9: zero on one side,
    # round-off on the other, depending on the BLAS)
    clear = (ours.abs() > 1e-9) | (ref.abs() > 1e-9)
    assert torch.equal((ours != 0)[clear], (ref != 0)[clear])
    assert abs(support_fraction(ours) - support_fraction(ref)) <= 2 / ours.numel()


def test_lars_float32_on_coherent_overcomplete_dictionary():
    # 3×3 RGB-like: 27-dim signals, 100 highly coherent atoms (the hard case for FISTA)
    g = torch.Generator().manual_seed(1)
    base = torch.randn(8, 27, generator=g)
    atoms = torch.nn.functional.normalize(torch.randn(100, 8, generator=g) @ base + 0.1 * torch.randn(100, 27, generator=g), dim=1)
    Y = torch.randn(256, 8, generator=g) @ base
    alpha = 0.3
    ours = lasso_lars(Y, atoms, alpha)
    ref = torch.from_numpy(sparse_encode(Y.double().numpy(), atoms.double().numpy(), algorithm="lasso_cd", alpha=alpha, max_iter=100000))
    f_ours = lasso_objective(Y, atoms, ours, alpha)
    f_ref = lasso_objective(Y.double(), atoms.double(), ref, alpha)
    assert f_ours <= f_ref + 1e-4 * abs(f_ref)


def test_fista_reaches_the_lars_objective_and_support():
    Y, atoms = _problem()
    alpha = 0.2
    exact_codes = lasso_lars(Y, atoms, alpha)
    exact = lasso_objective(Y, atoms, exact_codes, alpha)
    fista_codes = lasso_fista(Y, atoms, alpha, max_iter=3000, tol=1e-12)
    assert lasso_objective(Y, atoms, fista_codes, alpha) == pytest.approx(exact, rel=1e-6)
    # the closing ISTA step leaves FISTA with the exact support once converged
    assert torch.equal(fista_codes != 0, exact_codes != 0)


def test_lars_path_predicts_support_at_any_alpha():
    from sgan_cli.sparse_coding import lars_path

    Y, atoms = _problem(seed=5)
    _, path = lars_path(Y, atoms, 0.0)
    for alpha in (0.05, 0.2, 0.7, 2.0, 100.0):
        counts = (lasso_lars(Y, atoms, alpha) != 0).sum(dim=1)
        assert torch.equal(path.support_counts(alpha), counts), alpha


def test_lars_kkt_conditions():
    Y, atoms = _problem(seed=3)
    alpha = 0.25
    a = lasso_lars(Y, atoms, alpha)
    corr = (Y - a @ atoms) @ atoms.T  # Dᵀ(y − aD)
    on = a != 0
    assert torch.allclose(corr[on], alpha * torch.sign(a[on]), atol=1e-8)
    assert bool((corr[~on].abs() <= alpha + 1e-8).all())


def test_omp_matches_sklearn():
    Y, atoms = _problem(n=20, dim=16, k=24)
    ours = omp(Y, atoms, 5)
    gram = (atoms @ atoms.T).numpy()
    ref = orthogonal_mp_gram(gram, (Y @ atoms.T).numpy().T, n_nonzero_coefs=5).T
    assert ((ours != 0).sum(dim=1) == 5).all()
    assert np.allclose(ours.numpy(), ref, atol=1e-8)


def test_psnr_closed_form():
    x = torch.zeros(2, 4)
    y = torch.full((2, 4), 0.2)  # mse 0.04 → 10·log10(4 / 0.04) = 20 dB
    assert torch.allclose(psnr(x, y), torch.tensor([20.0, 20.0], dtype=torch.float64))


def test_lars_with_leaving_atoms_matches_sklearn():
    # coherent overcomplete atoms and a small α: many paths drop an atom (the lasso
    # modification), which refactorises the Cholesky factors of those signals
    from sgan_cli.sparse_coding import lars_path

    g = torch.Generator().manual_seed(7)
    base = torch.randn(6, 10, generator=g, dtype=torch.float64)
    atoms = torch.nn.functional.normalize(torch.randn(40, 6, generator=g, dtype=torch.float64) @ base + 0.3 * torch.randn(40, 10, generator=g, dtype=torch.float64), dim=1)
    Y = torch.randn(64, 10, generator=g, dtype=torch.float64)
    alpha = 0.01
    ours, path = lars_path(Y, atoms, alpha)
    left = (path.n_active[1:] < path.n_active[:-1]).any(dim=0)
    assert int(left.sum()) >= 5  # the case under test happened
    ref = torch.from_numpy(sparse_encode(Y.numpy(), atoms.numpy(), algorithm="lasso_lars", alpha=alpha))
    assert lasso_objective(Y, atoms, ours, alpha) <= lasso_objective(Y, atoms, ref, alpha) + 1e-9
    assert torch.allclose(ours, ref, atol=1e-6)


@pytest.mark.parametrize("k", [1, 9, 31])
def test_omp_large_k_matches_sklearn(k):
    # k beyond the first allocation of the Cholesky factor (8 columns) and up to dim − 1
    Y, atoms = _problem(n=50, dim=32, k=60, seed=2)
    ours = omp(Y, atoms, k)
    gram = (atoms @ atoms.T).numpy()
    ref = orthogonal_mp_gram(gram, (Y @ atoms.T).numpy().T, n_nonzero_coefs=k).T
    assert ((ours != 0).sum(dim=1) == k).all()
    assert np.allclose(ours.numpy(), ref, atol=1e-8)
