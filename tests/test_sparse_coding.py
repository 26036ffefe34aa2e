"""Sparse coders against closed forms and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import sparse_encode
from sklearn.linear_model import orthogonal_mp_gram

from sgan_cli import native
from sgan_cli.lars import lasso_lars
from sgan_cli.sparse_coding import lasso_fista, lasso_objective, omp, psnr, soft_threshold, support_fraction


@pytest.fixture(autouse=True, params=["native", "torch"])
def engine(request):
    """Every test here runs on both engines: the compiled CPU kernels and the torch engine."""
    if request.param == "torch":
        with native.disabled():
            yield request.param
    else:
        if native.library() is None:
            pytest.skip(f"compiled kernels unavailable here: {native.reason()}")
        yield request.param


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
    atoms = torch.nn.functional.normalize(
        torch.randn(100, 8, generator=g) @ base + 0.1 * torch.randn(100, 27, generator=g), dim=1
    )
    Y = torch.randn(256, 8, generator=g) @ base
    alpha = 0.3
    ours = lasso_lars(Y, atoms, alpha)
    ref = torch.from_numpy(
        sparse_encode(Y.double().numpy(), atoms.double().numpy(), algorithm="lasso_cd", alpha=alpha, max_iter=100000)
    )
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
    from sgan_cli.lars import lars_path

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
    from sgan_cli.lars import lars_path

    g = torch.Generator().manual_seed(7)
    base = torch.randn(6, 10, generator=g, dtype=torch.float64)
    atoms = torch.nn.functional.normalize(
        torch.randn(40, 6, generator=g, dtype=torch.float64) @ base
        + 0.3 * torch.randn(40, 10, generator=g, dtype=torch.float64),
        dim=1,
    )
    Y = torch.randn(64, 10, generator=g, dtype=torch.float64)
    alpha = 0.01
    ours, path = lars_path(Y, atoms, alpha)
    left = (path.n_active[1:] < path.n_active[:-1]).any(dim=0)
    assert int(left.sum()) >= 5  # the case under test happened
    ref = torch.from_numpy(sparse_encode(Y.numpy(), atoms.numpy(), algorithm="lasso_lars", alpha=alpha))
    assert lasso_objective(Y, atoms, ours, alpha) <= lasso_objective(Y, atoms, ref, alpha) + 1e-9
    assert torch.allclose(ours, ref, atol=1e-6)


@pytest.mark.parametrize("alpha", [1e-9, 0.01])
def test_lars_lets_a_dropped_atom_re_enter_with_the_opposite_sign(alpha):
    # square and 1.7× overcomplete random dictionaries at small α: paths drop an atom and,
    # further down, must take it back with the other sign (full support at α → 0 on a
    # square dictionary); blocking a dropped atom for a whole step used to end such paths
    # at α with it missing (objective 0.0197 against 2e-30 on a 4 × 4 case)
    from sgan_cli.lars import lars_path

    worst, dropped = 0.0, 0
    for seed in range(10):
        for n, dim, k in ((9, 4, 4), (20, 6, 10)):
            Y, atoms = _problem(n=n, dim=dim, k=k, seed=seed)
            ours, path = lars_path(Y, atoms, alpha)
            dropped += int((path.n_active[1:] < path.n_active[:-1]).any(dim=0).sum())
            ref = torch.from_numpy(sparse_encode(Y.numpy(), atoms.numpy(), algorithm="lasso_lars", alpha=alpha))
            gap = lasso_objective(Y, atoms, ours, alpha) - lasso_objective(Y, atoms, ref, alpha)
            worst = max(worst, gap)
            assert torch.allclose(ours, ref, atol=1e-6), (seed, n, dim, k)
    assert worst <= 1e-12
    assert dropped >= 20  # the case under test happened


def test_lars_codes_do_not_depend_on_the_batch():
    # signals whose paths end are set aside mid-run (the batch shrinks to its live rows);
    # each signal's codes must come out the same whether it is coded alone, in small
    # batches or in one large batch, on a coherent dictionary where many paths drop atoms
    g = torch.Generator().manual_seed(11)
    base = torch.randn(6, 10, generator=g, dtype=torch.float64)
    atoms = torch.nn.functional.normalize(
        torch.randn(40, 6, generator=g, dtype=torch.float64) @ base
        + 0.3 * torch.randn(40, 10, generator=g, dtype=torch.float64),
        dim=1,
    )
    Y = (
        torch.randn(300, 10, generator=g, dtype=torch.float64)
        * torch.rand(300, 1, generator=g, dtype=torch.float64)
        * 3
    )
    from sgan_cli.lars import lars_path

    alpha = 0.02
    whole, path = lars_path(Y, atoms, alpha)
    assert len(set((whole != 0).sum(dim=1).tolist())) >= 5  # paths of many lengths
    clear = whole.abs() > 1e-9  # away from a kink, where round-off may decide zero or not
    for size in (1, 7, 64):
        chunks = [lars_path(y, atoms, alpha) for y in Y.split(size)]
        parts = torch.cat([c for c, _ in chunks])
        assert torch.allclose(parts, whole, atol=1e-10, rtol=0), size
        assert torch.equal((parts != 0)[clear], (whole != 0)[clear]), size
        # the path record too (find_alpha reads supports at any α from it)
        for a in (0.05, 0.3, 1.0):
            counts = torch.cat([p.support_counts(a) for _, p in chunks])
            assert torch.equal(counts, path.support_counts(a)), (size, a)


@pytest.mark.parametrize("k", [1, 9, 31])
def test_omp_large_k_matches_sklearn(k):
    # k beyond the first allocation of the Cholesky factor (8 columns) and up to dim − 1
    Y, atoms = _problem(n=50, dim=32, k=60, seed=2)
    ours = omp(Y, atoms, k)
    gram = (atoms @ atoms.T).numpy()
    ref = orthogonal_mp_gram(gram, (Y @ atoms.T).numpy().T, n_nonzero_coefs=k).T
    assert ((ours != 0).sum(dim=1) == k).all()
    assert np.allclose(ours.numpy(), ref, atol=1e-8)


def _duplicated_atoms(dtype, n=64, dim=12, seed=0):
    # 20 random unit-norm atoms, then exact copies of 5 of them: every copy lies in the span
    # of its original, so the lasso and OMP optima are those of the 20 distinct atoms
    g = torch.Generator().manual_seed(seed)
    distinct = torch.nn.functional.normalize(torch.randn(20, dim, generator=g, dtype=torch.float64), dim=1)
    copies = [0, 3, 7, 11, 15]
    Y = torch.randn(n, dim, generator=g, dtype=torch.float64)
    return Y.to(dtype), torch.cat([distinct, distinct[copies]]).to(dtype), distinct, copies


def _fold(codes, copies):
    """Codes over the duplicated atoms → codes over the distinct ones (a copy's share to its original)."""
    return codes[:, :20].double().index_add(1, torch.tensor(copies), codes[:, 20:].double())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lars_on_duplicated_atoms_reaches_the_distinct_atoms_optimum(dtype):
    # a copy enters the factor with pivot d² = 0 (it used to return NaN codes in float64);
    # splitting a coefficient between an atom and its copy leaves ½‖y − aD‖² + α‖a‖₁ unchanged
    # (same signs), so the optimum equals scikit-learn's exact lasso on the 20 distinct atoms
    import warnings

    Y, atoms, distinct, copies = _duplicated_atoms(dtype)
    alpha = 0.05
    ours = lasso_lars(Y, atoms, alpha)
    assert bool(torch.isfinite(ours).all())
    Y64 = Y.double()
    ref = torch.from_numpy(sparse_encode(Y64.numpy(), distinct.numpy(), algorithm="lasso_lars", alpha=alpha))
    f_ours = lasso_objective(Y64, atoms.double(), ours.double(), alpha)
    f_ref = lasso_objective(Y64, distinct, ref, alpha)
    assert f_ours == pytest.approx(f_ref, abs=1e-8)
    assert torch.allclose(_fold(ours, copies), ref, atol=1e-6 if dtype == torch.float64 else 1e-4)
    # scikit-learn on the duplicated atoms warns "Regressors in active set degenerate" and
    # stops early on these signals; it is never better
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_dup = torch.from_numpy(
            sparse_encode(Y64.numpy(), atoms.double().numpy(), algorithm="lasso_lars", alpha=alpha)
        )
    assert f_ours <= lasso_objective(Y64, atoms.double(), ref_dup, alpha) + 1e-9


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_omp_on_duplicated_atoms_matches_sklearn_and_stops_at_full_rank(dtype):
    import warnings

    Y, atoms, distinct, copies = _duplicated_atoms(dtype)
    Y64 = Y.double()
    # below the rank: a copy is never chosen (its residual correlation is 0 after its original)
    ours = omp(Y, atoms, 5)
    ref = orthogonal_mp_gram((distinct @ distinct.T).numpy(), (Y64 @ distinct.T).numpy().T, n_nonzero_coefs=5).T
    assert bool(torch.isfinite(ours).all())
    assert np.allclose(_fold(ours, copies).numpy(), ref, atol=1e-8 if dtype == torch.float64 else 1e-4)
    # 14 > dim = 12 non-zeros: after 12 atoms the residual is 0 and every further atom is
    # dependent; each signal stops there (float32 codes used to blow up to 1e16 / NaN), as
    # scikit-learn's orthogonal_mp_gram does ("selected atoms are dependent")
    ours = omp(Y, atoms, 14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = orthogonal_mp_gram(
            (atoms.double() @ atoms.double().T).numpy(), (Y64 @ atoms.double().T).numpy().T, n_nonzero_coefs=14
        ).T
    assert bool(torch.isfinite(ours).all())
    assert torch.equal((ours != 0).sum(dim=1), torch.from_numpy((ref != 0).sum(axis=1)))  # 12 each
    resid = (Y64 - ours.double() @ atoms.double()).norm(dim=1) / Y64.norm(dim=1)
    assert float(resid.max()) <= (1e-12 if dtype == torch.float64 else 1e-5)


def test_active_set_rejects_dependent_atoms_and_refactors_a_singular_remainder():
    from sgan_cli.active_set import CholeskyActiveSet

    gram = torch.eye(4, dtype=torch.float64)
    gram[3, 3], gram[1, 3], gram[3, 1] = 2.0, math.sqrt(2.0), math.sqrt(2.0)  # atom 3 = √2 · atom 1
    sets = CholeskyActiveSet(2, gram, 4)
    both, first = torch.tensor([True, True]), torch.tensor([True, False])
    assert not bool(sets.add(both, torch.tensor([0, 0]))[0])
    assert not bool(sets.add(first, torch.tensor([1, 1])).any())
    assert not bool(sets.add(both, torch.tensor([2, 2])).any())
    # active {0, 1, 2} and {0, 2}: atom 3 is in the first span only
    assert sets.add(both, torch.tensor([3, 3])).tolist() == [True, False]
    assert sets.count.tolist() == [3, 3]
    # the Gram matrix changes under the set (atom 2 := atom 1): removing atom 0 leaves the
    # first signal {1, 2}, singular, where cholesky_ex fails; its factor and solves stay finite
    gram[1, 2] = gram[2, 1] = 1.0
    sets.remove(torch.tensor([0, 1]), torch.tensor([0, 0]))
    assert sets.count.tolist() == [2, 2] and sets.idx[:, :2].tolist() == [[1, 2], [2, 3]]
    assert bool(torch.isfinite(sets.L).all())
    assert bool(torch.isfinite(sets.solve(torch.ones(2, 2, dtype=torch.float64))).all())
    L1 = sets.L[1, :2, :2]
    assert torch.allclose(L1 @ L1.T, gram[[2, 3]][:, [2, 3]])  # the regular signal: exact factor
