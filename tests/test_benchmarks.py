"""Every benchmark still runs: ``python benchmarks/X.py --smoke`` for each script in benchmarks/.

A smoke run is the whole script on tiny inputs (digits or generated data, a few steps, a few
samples) in seconds; it exits 0 and writes nothing into the checkout (only into a temporary
folder, or the ``--out`` / ``--work`` its caller gives). A new script in benchmarks/ is picked
up here: it needs a ``--smoke`` mode, or an entry in ``EXEMPT`` saying why it measures nothing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"

# scripts of benchmarks/ that measure nothing themselves, and why
EXEMPT = {
    "harness.py": "a module the benchmarks import (running sgan commands, work folders, stand-in data)",
    "eager_reference.py": "the plain training loop bench_train.py imports; bench_train.py --smoke runs it "
    "and tests/test_training.py checks its losses",
    "run_all.py": "runs the other benchmarks in full; each of them has its --smoke here",
}
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))
SMOKED = [s for s in SCRIPTS if s not in EXEMPT]
CACHES = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", ".venv"}


def _checkout_state() -> dict[str, tuple[int, int]]:
    """Every file of the checkout (caches aside): relative path → (size, mtime in ns)."""
    state = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in CACHES]
        for name in files:
            path = Path(folder, name)
            st = path.stat()
            state[str(path.relative_to(ROOT))] = (st.st_size, st.st_mtime_ns)
    return state


def test_exempt_scripts_exist():
    assert set(EXEMPT) <= set(SCRIPTS), set(EXEMPT) - set(SCRIPTS)


def test_run_all_names_existing_benchmarks():
    spec = importlib.util.spec_from_file_location("run_all", BENCHMARKS / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    named = [script for script, *_ in run_all.runs(None)]
    assert named and all(s in SMOKED for s in named), named


def _run_smoke(script: str, cwd: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "TMPDIR": str(tmp),  # the smoke's temporary folders, under pytest's
        "MPLBACKEND": "Agg",
    }
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def smokes(tmp_path_factory):
    """Every smoke, two at a time (one thread each, passive waiting: most of a smoke is starting
    Python and importing torch, so two side by side take about half the time on two cores):
    script → (its result, its working folder); and the checkout's files before and after all."""
    folders = {}
    for script in SMOKED:
        base = tmp_path_factory.mktemp(script.removesuffix(".py"))
        (base / "cwd").mkdir()
        (base / "tmp").mkdir()
        folders[script] = base
    before = _checkout_state()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {s: pool.submit(_run_smoke, s, folders[s] / "cwd", folders[s] / "tmp") for s in SMOKED}
        results = {s: (f.result(), folders[s] / "cwd") for s, f in futures.items()}
    return results, before, _checkout_state()


@pytest.mark.parametrize("script", SMOKED)
def test_benchmark_smoke(script, smokes):
    results, _, _ = smokes
    res, cwd = results[script]
    assert res.returncode == 0, f"{script} --smoke exited {res.returncode}:\n{res.stdout[-5000:]}"
    left = sorted(p.name for p in cwd.iterdir())
    assert not left, f"{script} --smoke wrote into its working folder: {left}"


def test_no_smoke_wrote_into_the_checkout(smokes):
    _, before, after = smokes
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a benchmark's --smoke wrote into the checkout: {changed}"
