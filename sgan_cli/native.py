"""Compiled CPU kernels of the sparse coders (``native_coding.c``), built when sgan is installed.

On the CPU, sgan's LARS-lasso and OMP spend their time in per-step bookkeeping that costs
a few microseconds per torch operation, while one signal's step is a few hundred
flops: a loop per signal in C runs them 5–15× faster (2-core AMD EPYC; README,
Benchmarks). ``pip install`` compiles the C source (setup.py: an optional extension, with
``-O3 -march=native`` for a local install) into a shared library beside this module, which
is loaded here with ctypes. Where it was not built (no C compiler at install time), does not
load, or was built from another version of the source, or where ``SGAN_NATIVE=0`` is set,
:func:`library` returns None and the batched torch engines of :mod:`sgan_cli.lars` and
:mod:`sgan_cli.sparse_coding` run instead (they are also what runs on GPUs); :func:`reason`
says why, in one line.

The signals are split between ``torch.get_num_threads()`` Python threads; a ctypes call
releases the GIL, so the shares run in parallel, and each signal's result is the same
whatever the split (bit-reproducible for a seed). Units and shapes are those of
:func:`sgan_cli.lars.lasso_lars` and :func:`sgan_cli.sparse_coding.omp`; all
arithmetic is in float64.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.machinery
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("native_coding.c")
LIBRARY_NAME = "_native_coding"  # the extension setup.py builds: sgan_cli/_native_coding<suffix>
# below this many signals per thread, one more thread costs more than it saves
MIN_SIGNALS_PER_THREAD = 16
# the fix each reason below names
REINSTALL = "reinstall sgan with a working C compiler (a checkout: pip install -e .)"

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_reason: str | None = None
_tried = False
_pool: ThreadPoolExecutor | None = None
_disabled = 0  # > 0 inside disabled()


def _after_fork_in_child() -> None:
    """A forked child has the pool object but not its threads: start afresh."""
    global _pool, _lock
    _pool = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

_i64 = ctypes.c_int64
_dbl = ctypes.c_double
_ptr = ctypes.c_void_p


def built_library() -> Path | None:
    """The shared library that ``pip install`` built beside this module (named with one of
    this Python's extension suffixes), or None."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = Path(__file__).with_name(LIBRARY_NAME + suffix)
        if path.is_file():
            return path
    return None


class LoadError(Exception):
    """The kernels are not there or cannot be used; the message says why, in one line."""


def _load(path: Path) -> ctypes.CDLL:
    """The kernels in ``path``, their argument types declared; raises LoadError when the file
    does not load, lacks a kernel, or was built from another version of native_coding.c."""
    try:
        lib = ctypes.CDLL(str(path))
        _bind(lib)
    except (OSError, AttributeError) as exc:
        raise LoadError(f"{path.name} does not load ({' '.join(str(exc).split())}); {REINSTALL}") from None
    built_from = lib.sgan_source_sha256().decode()
    try:
        shipped = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    except OSError:
        shipped = built_from  # the source is not installed: nothing to compare with
    if built_from != shipped:
        raise LoadError(f"{path.name} was built from another {SOURCE.name}; {REINSTALL}")
    return lib


def _bind(lib: ctypes.CDLL) -> None:
    lib.sgan_lars.restype = ctypes.c_int
    lib.sgan_lars.argtypes = [
        _i64,
        _i64,
        _i64,
        _ptr,
        _ptr,
        _dbl,
        _i64,
        _i64,
        _dbl,
        _ptr,
        _ptr,
        _ptr,
        _i64,
        _ptr,
        _ptr,
        _ptr,
    ]
    lib.sgan_omp.restype = ctypes.c_int
    lib.sgan_omp.argtypes = [_i64, _i64, _ptr, _ptr, _i64, _dbl, _ptr]
    lib.sgan_update_atoms.restype = ctypes.c_int
    lib.sgan_update_atoms.argtypes = [_i64, _i64, _ptr, _ptr, _ptr, _ptr, _i64]
    lib.sgan_source_sha256.restype = ctypes.c_char_p
    lib.sgan_source_sha256.argtypes = []


def _off_by_env() -> bool:
    """``SGAN_NATIVE`` set to 0, false, no or off (any case): the torch engine runs."""
    return os.environ.get("SGAN_NATIVE", "1").strip().lower() in ("0", "false", "no", "off")


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the torch engine within the block (:func:`library` returns None): for tests and
    benchmarks that compare the two engines."""
    global _disabled
    _disabled += 1
    try:
        yield
    finally:
        _disabled -= 1


def library() -> ctypes.CDLL | None:
    """The loaded kernels, loaded on first use; None where they are unavailable
    (``SGAN_NATIVE=0``, not built at install time, not loadable): see :func:`reason`."""
    global _lib, _reason, _tried
    if _off_by_env() or _disabled:
        return None
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            path = built_library()
            try:
                if path is None:
                    raise LoadError(f"compiled kernels not built at install time (no C compiler?); {REINSTALL}")
                _lib, _reason = _load(path), None
            except LoadError as exc:
                _reason = str(exc)
            _tried = True
    return _lib


def reason() -> str | None:
    """Why :func:`library` is None (None when it is loaded, or not tried yet)."""
    if _off_by_env():
        return f"disabled by SGAN_NATIVE={os.environ['SGAN_NATIVE'].strip()}"
    if _disabled:
        return "disabled within sgan_cli.native.disabled()"
    return _reason


def engine(device: torch.device | str) -> tuple[str, str | None]:
    """Which engine codes tensors on ``device``: ("compiled", None), or ("torch", why not
    the compiled kernels) — for the commands' summaries."""
    dev = torch.device(device)
    if dev.type != "cpu":
        return "torch", f"tensors on {dev.type}: the compiled kernels are CPU-only"
    if library() is None:
        return "torch", reason()
    return "compiled", None


def usable(*tensors: Tensor) -> bool:
    """True when the kernels are loaded and every tensor is on the CPU."""
    return all(t.device.type == "cpu" for t in tensors) and library() is not None


def _shares(n: int) -> list[tuple[int, int]]:
    """Row ranges [i0, i1) of n signals, one per thread."""
    threads = max(1, min(torch.get_num_threads(), n // MIN_SIGNALS_PER_THREAD))
    bounds = [n * t // threads for t in range(threads + 1)]
    return [(bounds[t], bounds[t + 1]) for t in range(threads) if bounds[t + 1] > bounds[t]]


def _run(shares: list[tuple[int, int]], call) -> None:
    global _pool
    codes = []
    if not shares:
        return
    if len(shares) > 1:  # the other shares in pool threads, the first one in this thread
        with _lock:
            if _pool is None or _pool._max_workers < len(shares) - 1:
                if _pool is not None:
                    _pool.shutdown(wait=False)
                _pool = ThreadPoolExecutor(max_workers=len(shares) - 1, thread_name_prefix="sgan-native")
        others = [_pool.submit(call, *share) for share in shares[1:]]
        codes.append(call(*shares[0]))
        codes.extend(f.result() for f in others)
    else:
        codes.append(call(*shares[0]))
    if any(codes):
        raise MemoryError("sgan's native sparse coder could not allocate its workspace")


def _operands(gram: Tensor, corr: Tensor) -> tuple[ctypes.CDLL, Tensor, Tensor, Tensor]:
    """(the kernels, gram and corr as contiguous float64, an empty [n, K] float64 codes
    tensor) for a coder call."""
    lib = library()
    assert lib is not None
    G = gram.detach().to(torch.float64).contiguous()
    C = corr.detach().to(torch.float64).contiguous()
    return lib, G, C, torch.empty(C.shape, dtype=torch.float64)


def lars(
    gram: Tensor,
    corr: Tensor,
    dim: int,
    alpha: float,
    max_steps: int,
    pivot_tol: float,
    stop_active: int | None = None,
    record_width: int = 0,
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """LARS-lasso codes [n, K] (float64) for correlations corr = Dᵀy [n, K] over the Gram
    matrix gram [K, K] of atoms of dimension ``dim``, down to λ = ``alpha`` ≥ 0.

    With ``record_width`` > 0 also each signal's path record: ``lam`` and ``count`` [n,
    record_width] (λ and active count at the start of each of its first record_width steps),
    ``steps`` [n] (steps taken), ``lam_end`` and ``count_end`` [n]."""
    lib, G, C, codes = _operands(gram, corr)
    n, K = C.shape
    rec = None
    if record_width > 0:
        rec = {
            "lam": torch.empty(n, record_width, dtype=torch.float64),
            "count": torch.empty(n, record_width, dtype=torch.int64),
            "steps": torch.empty(n, dtype=torch.int64),
            "lam_end": torch.empty(n, dtype=torch.float64),
            "count_end": torch.empty(n, dtype=torch.int64),
        }

    def call(i0: int, i1: int) -> int:
        def at(t: Tensor | None) -> int | None:
            return None if t is None else t[i0:i1].data_ptr()

        r = rec or {}
        return lib.sgan_lars(
            i1 - i0,
            K,
            dim,
            G.data_ptr(),
            C[i0:i1].data_ptr(),
            float(alpha),
            max_steps,
            -1 if stop_active is None else stop_active,
            pivot_tol,
            codes[i0:i1].data_ptr(),
            at(r.get("lam")),
            at(r.get("count")),
            record_width,
            at(r.get("steps")),
            at(r.get("lam_end")),
            at(r.get("count_end")),
        )

    _run(_shares(n), call)
    return codes, rec


def omp(gram: Tensor, corr: Tensor, n_nonzero: int, pivot_tol: float) -> Tensor:
    """Batch-OMP codes [n, K] (float64) with at most ``n_nonzero`` ≤ K atoms each, for
    corr = Dᵀy [n, K] over the Gram matrix gram [K, K]."""
    lib, G, C, codes = _operands(gram, corr)
    n, K = C.shape

    def call(i0: int, i1: int) -> int:
        return lib.sgan_omp(
            i1 - i0, K, G.data_ptr(), C[i0:i1].data_ptr(), n_nonzero, pivot_tol, codes[i0:i1].data_ptr()
        )

    _run(_shares(n), call)
    return codes


def update_atoms(atoms: Tensor, stat_aa: Tensor, stat_ay: Tensor, use: Tensor, sweeps: int) -> Tensor:
    """The block-coordinate sweeps of :func:`sgan_cli.dictionary_atoms.update_atoms` (one thread:
    each atom's update depends on the previous one's): new atoms [K, dim] (float64) from
    atoms [K, dim], stat_aa [K, K], stat_ay [K, dim] and the mask ``use`` [K] of atoms to
    update."""
    lib = library()
    assert lib is not None
    D = atoms.detach().to(torch.float64).clone().contiguous()
    AA = stat_aa.detach().to(torch.float64).contiguous()
    AY = stat_ay.detach().to(torch.float64).contiguous()
    flags = use.detach().to(torch.uint8).contiguous()
    K, dim = D.shape
    if lib.sgan_update_atoms(K, dim, D.data_ptr(), AA.data_ptr(), AY.data_ptr(), flags.data_ptr(), sweeps):
        raise MemoryError("sgan's native dictionary update could not allocate its workspace")
    return D
