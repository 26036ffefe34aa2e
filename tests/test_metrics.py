"""Metric maths against closed forms and reference implementations (scipy, scikit-learn, numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgan_cli.errors import SganError
from sgan_cli.metrics import (
    FeatureStats,
    canonical_order,
    feature_stats,
    frechet_distance,
    inception_score,
    kernel_distance,
    knn_radii,
    mean_psnr,
    mode_coverage,
    precision_recall,
    stacked_modes,
)


def _features(n: int = 300, d: int = 12, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + shift).float()


def test_feature_stats_match_numpy():
    x = _features()
    s = feature_stats(x)
    assert s.mean.dtype == torch.float64 and s.n == 300
    np.testing.assert_allclose(s.mean.numpy(), x.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.cov.numpy(), np.cov(x.double().numpy(), rowvar=False), rtol=1e-10)


def test_fid_of_a_set_against_itself_is_zero():
    s = feature_stats(_features())
    assert abs(frechet_distance(s, s)) < 1e-8


def test_fid_with_equal_covariances_is_squared_mean_distance():
    cov = feature_stats(_features()).cov
    mu1 = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mu2 = mu1 + torch.linspace(-1, 2, 12, dtype=torch.float64)
    fid = frechet_distance(FeatureStats(mu1, cov, 100), FeatureStats(mu2, cov, 100))
    assert fid == pytest.approx(float(((mu1 - mu2) ** 2).sum()), rel=1e-9)


def test_fid_matches_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    a, b = feature_stats(_features(seed=0)), feature_stats(_features(seed=1, shift=0.3))
    s1, s2 = a.cov.numpy(), b.cov.numpy()
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    expected = float(((a.mean - b.mean) ** 2).sum()) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_fid_handles_singular_covariances():
    # more features than images (and a dead feature): Σ is singular, sqrtm-based code needs an ε
    x = _features(n=8, d=20)
    x[:, 3] = 0
    s = feature_stats(x)
    assert abs(frechet_distance(s, s)) < 1e-6
    t = feature_stats(_features(n=8, d=20, seed=5))
    assert math.isfinite(frechet_distance(s, t)) and frechet_distance(s, t) > 0


def test_inception_score_of_confident_even_predictions_is_the_class_count():
    c = 7
    labels = torch.arange(c).repeat(30)  # 210 images, 30 per class
    logits = torch.nn.functional.one_hot(labels, c).double() * 60.0  # softmax ≈ one-hot to 1e-26
    s = inception_score(logits, splits=1)
    assert s.mean == pytest.approx(c, rel=1e-9) and s.std == 0.0
    ten = inception_score(logits, splits=10, seed=3)  # each split's classes are not quite even
    assert 1.0 < ten.mean <= c + 1e-9 and ten.n_parts == 10


def test_inception_score_of_one_class_is_one():
    logits = torch.zeros(50, 10)
    logits[:, 4] = 80.0
    assert inception_score(logits).mean == pytest.approx(1.0, abs=1e-9)


def test_inception_score_needs_a_sample_per_split():
    with pytest.raises(SganError, match="at least 10 images"):
        inception_score(torch.zeros(5, 3))


def _mmd_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with (xᵀy/d + 1)³, written out with numpy (Bińkowski et al., eq. 3)."""
    d, m = x.shape[1], x.shape[0]
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    return (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()


def test_kid_matches_numpy_on_the_same_subsets():
    real, fake = _features(200, seed=0), _features(150, seed=1, shift=0.5)
    got = kernel_distance(real, fake, subsets=6, subset_size=50, seed=4)
    gen = torch.Generator().manual_seed(4)
    values = []
    for _ in range(6):
        ir = torch.randperm(200, generator=gen)[:50]
        jf = torch.randperm(150, generator=gen)[:50]
        values.append(_mmd_reference(real[ir].double().numpy(), fake[jf].double().numpy()))
    assert got.mean == pytest.approx(np.mean(values), rel=1e-10)
    assert got.std == pytest.approx(np.std(values), rel=1e-8)
    assert got.part_size == 50


def test_kid_caps_the_subset_size_and_separates_distributions():
    real = _features(60, seed=0)
    same = kernel_distance(real, _features(40, seed=2), subsets=20, subset_size=1000)
    far = kernel_distance(real, _features(40, seed=2, shift=3.0), subsets=20, subset_size=1000)
    assert same.part_size == 40
    assert abs(same.mean) < far.mean / 20


def _coverage_reference(support: np.ndarray, query: np.ndarray, k: int) -> float:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1).fit(support)
    radii = nn.kneighbors(support)[0][:, k]
    dist = np.linalg.norm(query[:, None, :] - support[None, :, :], axis=2)
    return float((dist <= radii[None, :]).any(axis=1).mean())


def test_precision_recall_match_a_scikit_learn_knn_reference():
    real, fake = _features(120, d=5, seed=0), _features(90, d=5, seed=1, shift=0.8)
    pr = precision_recall(real, fake, k=3)
    r, f = real.double().numpy(), fake.double().numpy()
    assert pr.precision == pytest.approx(_coverage_reference(r, f, 3), abs=1e-12)
    assert pr.recall == pytest.approx(_coverage_reference(f, r, 3), abs=1e-12)
    assert 0 < pr.precision < 1 and 0 < pr.recall < 1
    same = precision_recall(real, real, k=3)
    assert same.precision == 1.0 and same.recall == 1.0


def test_knn_radii_chunking_does_not_matter():
    x = _features(70, d=4)
    assert torch.equal(knn_radii(x, 3, chunk=8), knn_radii(x, 3, chunk=1000))


def test_mode_coverage_counts_and_kl():
    modes = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])  # 4 of 10 modes, evenly
    mc = mode_coverage(modes, 10)
    assert mc.covered == 4 and mc.total == 10
    assert mc.kl == pytest.approx(math.log(10 / 4), rel=1e-12)  # KL(U₄ ‖ U₁₀)
    assert mode_coverage(torch.arange(10), 10).kl == pytest.approx(0.0, abs=1e-15)


def test_stacked_modes_spell_three_digit_numbers():
    per_channel = torch.tensor([[1, 2, 3], [0, 0, 7], [9, 9, 9]])
    assert stacked_modes(per_channel, 10).tolist() == [123, 7, 999]


def test_mean_psnr_closed_form():
    orig = torch.full((3, 1, 4, 4), 100, dtype=torch.uint8)
    recon = orig.clone()
    recon[0] += 5  # every pixel off by 5 levels: PSNR = 20·log10(255/5)
    recon[1] -= 1
    recon[2] += 2
    p = mean_psnr(orig, recon)
    expected = [20 * math.log10(255 / d) for d in (5, 1, 2)]
    assert p.mean == pytest.approx(np.mean(expected), rel=1e-12)
    assert p.std == pytest.approx(np.std(expected), rel=1e-10)


def test_canonical_order_is_independent_of_input_order():
    imgs = torch.randint(0, 256, (50, 1, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    a = imgs[canonical_order(imgs)]
    b = imgs[perm][canonical_order(imgs[perm])]
    assert torch.equal(a, b)


def test_fid_small_set_form_equals_covariance_form():
    a, b = feature_stats(_features(n=9, d=30, seed=0)), feature_stats(_features(n=12, d=30, seed=1, shift=0.2))
    rows = frechet_distance(a, b)  # n < D: SVD of the n₁×n₂ cross product
    a.centered = b.centered = None
    assert frechet_distance(a, b) == pytest.approx(rows, rel=1e-7)  # D×D eigendecompositions


def test_canonical_order_refuses_images_it_cannot_hash_exactly():
    """Above 2²⁴ values per image the int64 content hash could overflow: a user error, not a crash."""
    with pytest.raises(SganError, match="too large to order by content.*--image-size"):
        canonical_order(torch.zeros(1, 3, 2400, 2400, dtype=torch.uint8))
