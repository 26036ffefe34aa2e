"""The compiled CPU kernels (sgan_cli/native.py, built by setup.py at install time) against the
torch engine, and the fallback to the torch engine where they are absent or unusable."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch

from sgan_cli import native
from sgan_cli.lars import lars_path, lasso_lars
from sgan_cli.sparse_coding import lasso_objective, omp

needs_kernels = pytest.mark.skipif(native.library() is None, reason=f"compiled kernels unavailable: {native.reason()}")


def _coherent(n, dim, k, seed, dtype=torch.float64, duplicates=False):
    """Signals and a coherent dictionary (atoms near a low-dimensional subspace): many paths
    drop atoms. With ``duplicates`` its last 3 atoms copy the first 3 (with either sign)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(dim // 2, dim, generator=g, dtype=dtype)
    atoms = torch.randn(k, dim // 2, generator=g, dtype=dtype) @ base + 0.3 * torch.randn(
        k, dim, generator=g, dtype=dtype
    )
    if duplicates:
        atoms[k - 3 :] = atoms[:3] * torch.tensor([[1.0], [-1.0], [1.0]], dtype=dtype)
    atoms = torch.nn.functional.normalize(atoms, dim=1)
    Y = torch.randn(n, dim, generator=g, dtype=dtype) * torch.rand(n, 1, generator=g, dtype=dtype) * 3
    return Y, atoms


@needs_kernels
@pytest.mark.parametrize("case", [(300, 10, 40, 0.02), (200, 12, 12, 0.0), (150, 30, 90, 0.1), (100, 6, 60, 0.3)])
def test_kernels_give_the_torch_engines_lasso_codes_and_paths(case):
    n, dim, k, alpha = case
    Y, atoms = _coherent(n, dim, k, seed=dim + k)
    codes, path = lars_path(Y, atoms, alpha)
    with native.disabled():
        ref, ref_path = lars_path(Y, atoms, alpha)
    assert torch.allclose(codes, ref, atol=1e-9, rtol=1e-9)  # α = 0: least squares, codes up to 200
    clear = ref.abs() > 1e-9
    assert torch.equal((codes != 0)[clear], (ref != 0)[clear])
    assert lasso_objective(Y, atoms, codes, alpha) == pytest.approx(lasso_objective(Y, atoms, ref, alpha), rel=1e-12)
    # the record (what find_alpha reads supports from) is the same path, step for step
    assert path.lam.shape == ref_path.lam.shape
    assert torch.allclose(path.lam, ref_path.lam, atol=1e-9, rtol=0)
    assert torch.equal(path.n_active, ref_path.n_active)
    assert torch.allclose(path.lam_end, ref_path.lam_end, atol=1e-9, rtol=0)
    assert torch.equal(path.lam_max, ref_path.lam_max)


@needs_kernels
def test_kernels_on_duplicated_atoms_reach_the_torch_engines_objective():
    # exact copies tie: rounding decides which copy a path takes, in either engine, so the
    # codes are not unique; each signal's objective is
    Y, atoms = _coherent(300, 10, 40, seed=7, duplicates=True)
    codes = lasso_lars(Y, atoms, 0.02)
    with native.disabled():
        ref = lasso_lars(Y, atoms, 0.02)
    per_signal = [lasso_objective(Y[i : i + 1], atoms, c[i : i + 1], 0.02) for c in (codes, ref) for i in range(300)]
    assert per_signal[:300] == pytest.approx(per_signal[300:], rel=1e-11)
    for a, b in ((0, 37), (1, 38), (2, 39)):  # never both copies of an atom
        assert not bool(((codes[:, a] != 0) & (codes[:, b] != 0)).any())


@needs_kernels
def test_kernels_path_record_stops_at_the_active_cap_and_widens_when_paths_are_long():
    # stop_active as in find_alpha; paths with many leaves outgrow the first record width
    Y, atoms = _coherent(200, 10, 40, seed=5)
    for cap in (0, 1, 3, 10):
        _, path = lars_path(Y, atoms, 0.0, stop_active=cap)
        with native.disabled():
            _, ref = lars_path(Y, atoms, 0.0, stop_active=cap)
        assert torch.equal(path.n_active, ref.n_active), cap
        assert int(path.n_active.max()) <= max(cap, 1)  # a path stops after its first step at the earliest
        assert torch.allclose(path.lam, ref.lam, atol=1e-9, rtol=0), cap


@needs_kernels
def test_kernels_handle_empty_batches_and_zero_steps():
    Y, atoms = _coherent(20, 8, 16, seed=4)
    G, corr = atoms @ atoms.T, Y @ atoms.T
    codes, _ = native.lars(G, corr[:0], 8, 0.1, 10, 1e-13)
    assert codes.shape == (0, 16) and native.omp(G, corr[:0], 3, 1e-13).shape == (0, 16)
    codes, path = lars_path(Y, atoms, 0.1, max_steps=0)
    with native.disabled():
        ref, ref_path = lars_path(Y, atoms, 0.1, max_steps=0)
    assert torch.equal(codes, ref) and not codes.any()
    assert path.lam.shape == ref_path.lam.shape == (0, 20) and torch.equal(path.lam_end, ref_path.lam_end)


@needs_kernels
@pytest.mark.parametrize("k", [1, 5, 12, 40])
def test_kernels_give_the_torch_engines_omp_codes(k):
    Y, atoms = _coherent(120, 12, 40, seed=k)
    codes = omp(Y, atoms, k)
    with native.disabled():
        ref = omp(Y, atoms, k)
    assert torch.allclose(codes, ref, atol=1e-10, rtol=0)
    assert torch.equal(codes != 0, ref != 0)
    assert int((codes != 0).sum(dim=1).max()) <= min(k, 12)


@needs_kernels
def test_kernels_codes_do_not_depend_on_the_thread_split():
    Y, atoms = _coherent(400, 10, 40, seed=1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = (lasso_lars(Y, atoms, 0.05), omp(Y, atoms, 7))
        torch.set_num_threads(2)
        assert len(native._shares(400)) == 2
        two = (lasso_lars(Y, atoms, 0.05), omp(Y, atoms, 7))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


@needs_kernels
def test_kernels_keep_the_signals_dtype():
    Y, atoms = _coherent(50, 10, 30, seed=2, dtype=torch.float32)
    codes = lasso_lars(Y, atoms, 0.1)
    assert codes.dtype == torch.float32
    with native.disabled():
        ref = lasso_lars(Y, atoms, 0.1)
    assert ref.dtype == torch.float32
    assert lasso_objective(Y, atoms, codes, 0.1) == pytest.approx(lasso_objective(Y, atoms, ref, 0.1), rel=1e-5)


@pytest.fixture()
def fresh_state(monkeypatch):
    """native as if not loaded yet in this process."""
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_reason", None)


def _sklearn_lasso(Y, atoms, alpha):
    from sklearn.decomposition import sparse_encode

    return torch.from_numpy(sparse_encode(Y.numpy(), atoms.numpy(), algorithm="lasso_lars", alpha=alpha))


def test_without_a_built_library_the_torch_engine_codes_and_says_why(fresh_state, monkeypatch):
    monkeypatch.setattr(native, "LIBRARY_NAME", "_no_such_library")  # as after an install without a compiler
    assert native.built_library() is None
    assert native.library() is None and not native.usable(torch.zeros(1))
    why = native.reason()
    assert "not built at install time" in why and "pip install -e ." in why and "\n" not in why
    assert native.engine("cpu") == ("torch", why)  # what the summaries' coders row shows
    Y, atoms = _coherent(40, 8, 20, seed=3)
    assert torch.allclose(lasso_lars(Y, atoms, 0.1), _sklearn_lasso(Y, atoms, 0.1), atol=1e-8)


def test_a_library_that_does_not_load_is_not_used(fresh_state, monkeypatch, tmp_path):
    broken = tmp_path / "_native_coding.so"
    broken.write_bytes(b"\x7fELF truncated")  # what an interrupted copy would leave
    monkeypatch.setattr(native, "built_library", lambda: broken)
    assert native.library() is None
    assert native.reason().startswith("_native_coding.so does not load (") and "\n" not in native.reason()


@needs_kernels
def test_a_library_built_from_another_version_of_the_source_is_not_used(fresh_state, monkeypatch, tmp_path):
    # an editable install whose native_coding.c changed after it was built: its functions may
    # take other arguments, so calling them could crash the process
    shipped = native.SOURCE
    edited = tmp_path / "native_coding.c"
    edited.write_bytes(shipped.read_bytes() + b"\n/* edited */\n")
    monkeypatch.setattr(native, "SOURCE", edited)
    assert native.library() is None
    assert "was built from another native_coding.c" in native.reason()
    monkeypatch.setattr(native, "SOURCE", shipped)
    monkeypatch.setattr(native, "_tried", False)
    assert native.library() is not None and native.reason() is None
    assert native.library().sgan_source_sha256().decode() == hashlib.sha256(shipped.read_bytes()).hexdigest()


@pytest.mark.parametrize("value", ["0", "False", " off ", "NO"])
def test_sgan_native_0_forces_the_torch_engine(monkeypatch, value):
    monkeypatch.setenv("SGAN_NATIVE", value)
    assert native.library() is None and native.reason() == f"disabled by SGAN_NATIVE={value.strip()}"
    assert native.engine("cpu") == ("torch", native.reason()) and not native.usable(torch.zeros(1))
    Y, atoms = _coherent(40, 8, 20, seed=3)
    assert torch.allclose(lasso_lars(Y, atoms, 0.1), _sklearn_lasso(Y, atoms, 0.1), atol=1e-8)


@needs_kernels
def test_a_forked_child_codes_after_a_threaded_call():
    import signal

    # (torch's own OpenMP matmuls may hang in such a child — a libgomp limitation, which is
    # why DataLoader workers run single-threaded — so the child calls the kernels directly)
    Y, atoms = _coherent(400, 10, 40, seed=6)
    G, corr = atoms @ atoms.T, Y @ atoms.T
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parent, _ = native.lars(G, corr, 10, 0.05, 170, 1e-13)  # starts the thread pool
        pid = os.fork()
        if pid == 0:  # child: the pool's threads did not survive the fork
            signal.alarm(20)
            ok = torch.equal(native.lars(G, corr, 10, 0.05, 170, 1e-13)[0], parent)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        torch.set_num_threads(threads)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def test_engine_names_the_torch_engine_off_the_cpu():
    name, why = native.engine("cuda")  # no device needed: only its type is read
    assert name == "torch" and why == "tensors on cuda: the compiled kernels are CPU-only"
    assert not native.usable(torch.zeros(1, device="meta"))
