"""Compiled CPU kernels of the sparse coders (``native_coding.c``), built on first use.

On the CPU, sgan's LARS-lasso and OMP spend their time in per-step bookkeeping that costs
a few microseconds per torch operation, while one signal's step is a few hundred
flops: a loop per signal in C runs them 5–15× faster (2-core AMD EPYC; README,
Benchmarks). The C source ships with the package and is compiled once per machine with the
system's C compiler (``$CC``, else ``cc``/``gcc``/``clang``) into :func:`cache_dir`, keyed
by the source, the compiler and the CPU (``-march=native``); it is loaded with
ctypes, so there is nothing to build at install time and no Python headers are needed.
Where no compiler works, or ``SGAN_NATIVE=0`` is set, :func:`library` returns None and the
batched torch engine of :mod:`sgan_cli.sparse_coding` runs instead (it is also what runs
on GPUs); :func:`reason` says why.

The signals are split between ``torch.get_num_threads()`` Python threads; a ctypes call
releases the GIL, so the shares run in parallel, and each signal's result is the same
whatever the split (bit-reproducible for a seed). Units and shapes are those of
:func:`sgan_cli.sparse_coding.lasso_lars` and :func:`~sgan_cli.sparse_coding.omp`; all
arithmetic is in float64.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("native_coding.c")
# -O3 vectorises the inner loops over atoms; -fopenmp-simd lets the maximum over atoms
# vectorise too (no OpenMP runtime); either extra is dropped where a compiler refuses it
FLAGS = ["-O3", "-std=c99", "-fPIC", "-shared"]
EXTRA_FLAGS = (["-march=native", "-fopenmp-simd"], ["-fopenmp-simd"], [])
# below this many signals per thread, one more thread costs more than it saves
MIN_SIGNALS_PER_THREAD = 16

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


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$SGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/sgan``
    (an absolute ``$XDG_CACHE_HOME`` only, as the XDG rules say), else ``~/.cache/sgan``."""
    if os.environ.get("SGAN_CACHE_DIR"):
        return Path(os.environ["SGAN_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sgan"


def _compiler() -> list[str] | None:
    """The C compiler's command: ``$CC`` (which may carry arguments, e.g. ``ccache gcc``),
    else the first of cc, gcc and clang on the PATH; None if there is none. A ``$CC``
    that is not found is not replaced by another compiler: the build fails and says so.
    Raises ValueError for a ``$CC`` that does not parse (an unclosed quote)."""
    if os.environ.get("CC", "").strip():
        cmd = shlex.split(os.environ["CC"])
        found = shutil.which(cmd[0])
        return [found, *cmd[1:]] if found else cmd
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def _cpu_signature() -> str:
    """The CPU model and feature flags (Linux), so a cache shared between machines never
    hands one a kernel built with -march=native for another; elsewhere the host name too
    (the CPU's features are not read there)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return "\n".join([platform.processor(), platform.machine(), platform.node()])


class BuildError(Exception):
    """The kernels could not be built or loaded; the message says why."""


# seconds: `cc --version`, then each compile (a stuck compiler must not hang a command)
VERSION_TIMEOUT, COMPILE_TIMEOUT = 15, 120


def _run_tool(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run cmd with its output captured, in its own process group, which is killed whole if
    it outlives ``timeout`` or the caller is interrupted (a compiler's own children too)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        if hasattr(os, "killpg"):
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _load(path: Path | str) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    _bind(lib)
    return lib


def _load_or_build(cc: list[str]) -> ctypes.CDLL:
    """The kernels from the cache (once per source, compiler and CPU), built there first if
    absent or damaged. A cached library is loaded only if it matches the checksum written
    beside it when it was built (a truncated file would crash the process on loading), and
    a new one is installed only once it has loaded; raises BuildError."""
    try:
        version = _run_tool([*cc, "--version"], VERSION_TIMEOUT).stdout
    except subprocess.TimeoutExpired:
        raise BuildError(f"{' '.join(cc)} --version did not answer within {VERSION_TIMEOUT} s") from None
    except OSError as exc:
        raise BuildError(f"cannot run the C compiler {' '.join(cc)}: {exc}") from None
    key = hashlib.sha256(
        b"\0".join(
            [
                SOURCE.read_bytes(),
                " ".join(cc).encode(),
                version.encode(),
                repr((FLAGS, EXTRA_FLAGS)).encode(),
                _cpu_signature().encode(),
            ]
        )
    )
    out_dir = cache_dir()
    lib_path = out_dir / f"native_coding-{key.hexdigest()[:16]}.so"
    stamp = lib_path.with_suffix(".sha256")
    try:
        if lib_path.is_file() and stamp.is_file() and stamp.read_text().strip() == _sha256(lib_path):
            return _load(lib_path)
    except (OSError, AttributeError):
        pass  # unreadable or not loadable here: build it again
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".native_coding-", suffix=".so", dir=out_dir)
        os.close(fd)
    except OSError as exc:
        raise BuildError(
            f"cannot write the kernel cache {out_dir}: {exc} (set SGAN_CACHE_DIR to a writable folder)"
        ) from None
    try:
        errors = ""
        for extra in EXTRA_FLAGS:
            cmd = [*cc, *FLAGS, *extra, "-o", tmp, str(SOURCE), "-lm"]
            try:
                proc = _run_tool(cmd, COMPILE_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise BuildError(
                    f"{' '.join(cc)} did not finish compiling {SOURCE.name} within {COMPILE_TIMEOUT} s"
                ) from None
            if proc.returncode == 0:
                break
            errors = (proc.stderr or proc.stdout or f"exit status {proc.returncode}").strip()
        else:
            raise BuildError(f"building {SOURCE.name} with {' '.join(cc)} failed: {errors[:500]}")
        os.chmod(tmp, 0o755)  # mkstemp's 0600 would keep other users off a shared cache
        try:
            lib = _load(tmp)  # the inode stays loaded when it is renamed below
        except (OSError, AttributeError) as exc:
            raise BuildError(f"what {' '.join(cc)} built from {SOURCE.name} does not load: {exc}") from None
        digest = _sha256(tmp)
        os.replace(tmp, lib_path)  # atomic: concurrent builders race harmlessly
        stamp_tmp = f"{tmp}.sha256"
        Path(stamp_tmp).write_text(digest + "\n")
        os.replace(stamp_tmp, stamp)
        return lib
    except OSError as exc:
        raise BuildError(
            f"cannot install the kernels in {out_dir}: {exc} (set SGAN_CACHE_DIR to a writable folder)"
        ) from None
    finally:
        for leftover in (tmp, f"{tmp}.sha256"):
            if os.path.exists(leftover):
                os.unlink(leftover)


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
    """The loaded kernels, building them on first use; None where they are unavailable
    (``SGAN_NATIVE=0``, no working C compiler, a read-only cache): see :func:`reason`."""
    global _lib, _reason, _tried
    if _off_by_env() or _disabled:
        return None
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            try:
                cc = _compiler()
            except ValueError as exc:
                cc, _reason = None, f"CC={os.environ.get('CC')!r} does not parse as a command: {exc}"
            else:
                if cc is None:
                    _reason = "no C compiler found (set CC, or install cc/gcc/clang)"
            if cc is not None:
                try:
                    _lib = _load_or_build(cc)
                except BuildError as exc:
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
    """The block-coordinate sweeps of :func:`sgan_cli.dictionary.update_atoms` (one thread:
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
