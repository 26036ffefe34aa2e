"""OpenMP waiting, quiet and busy: the sgan commands' wall time under each setting.

PyTorch's CPU kernels run on GNU OpenMP (libgomp). After a parallel region its threads spin
before they sleep: 300,000 spins with OMP_WAIT_POLICY unset, none with PASSIVE, forever with
ACTIVE. On a quiet machine spinning saves the wake-up; beside another busy process a spinning
thread holds a core the other thread of the same region is waiting for, and every small op
stalls. This script times the same commands (``learn-dict``, ``train`` with an MLP and a
convolutional critic, ``score``) under several settings, on a quiet machine and beside one
competing busy process (``--busy spin``: a pure-Python loop on one core, like a browser tab or a
build; ``--busy torch``: a second torch job at its defaults), alternating the settings in each
round and keeping the fastest of ``--repeats`` rounds.

Settings: ``sgan`` (what the ``sgan`` command does when the user sets nothing), ``gomp-default``
(OpenMP's own default: the variables removed), ``passive`` (OMP_WAIT_POLICY=PASSIVE),
``spin-N`` (GOMP_SPINCOUNT=N) and ``threads-1`` (OMP_NUM_THREADS=1).

    python benchmarks/bench_wait_policy.py              # full table (minutes)
    python benchmarks/bench_wait_policy.py --smoke      # seconds: one tiny learn-dict, quiet, sgan's setting
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def settings(spins: list[int]) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {"sgan": {}, "gomp-default": {"SGAN_OPENMP": "keep"}}
    table["passive"] = {"OMP_WAIT_POLICY": "PASSIVE"}
    for n in spins:
        table[f"spin-{n}"] = {"GOMP_SPINCOUNT": str(n)}
    table["threads-1"] = {"OMP_NUM_THREADS": "1"}
    return table


def sgan(*args: str, env: dict[str, str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sgan_cli", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def workloads(smoke: bool) -> dict[str, list[str]]:
    steps_mlp, steps_conv = ("4", "2") if smoke else ("80", "12")
    target = ["--atoms", "16", "--alpha", "0.5"] if smoke else ["--sparsity", "0.1"]
    return {
        "learn-dict": ["learn-dict", "digits", *target, "--out", "d.safetensors", "--force"],
        "train-mlp": ["train", "--dict", "dict.safetensors", "--data", "digits", "--arch", "mlp", "--gan", "wgan-gp"]
        + ["--steps", steps_mlp, "--out", "runs/mlp", "--force"],
        "train-conv": ["train", "--data", "digits", "--arch", "dcgan", "--gan", "wgan-gp", "--steps", steps_conv]
        + ["--out", "runs/conv", "--force"],
        "score": ["score", "samples", "-m", "fid", "-m", "inception", "--ref", "digits"]
        + ["--features", "classifier:clf.safetensors"],
    }


def prepare(work: Path, env: dict[str, str], smoke: bool, jobs: list[str]) -> None:
    """The inputs of ``jobs`` in ``work``: the dictionary the MLP training and the sampled run
    use, the samples and the classifier that ``score`` reads."""
    if "train-mlp" in jobs or "score" in jobs:
        sgan("learn-dict", "digits", "--sparsity", "0.1", "--out", "dict.safetensors", "--force", env=env, cwd=work)
    if "score" in jobs:
        sgan(
            "train", "--dict", "dict.safetensors", "--data", "digits", "--steps", "2", "--out", "runs/s",
            env=env, cwd=work,
        )  # fmt: skip
        sgan("sample", "runs/s", "-n", "200" if smoke else "1000", "--out", "samples", env=env, cwd=work)
        sgan("classifier", "digits", "--epochs", "1", "--out", "clf.safetensors", env=env, cwd=work)


def competitor(kind: str) -> subprocess.Popen | None:
    if kind == "none":
        return None
    if kind == "spin":
        code = "while True: pass"
    else:
        code = "import torch\nx = torch.randn(256, 256)\nwhile True: x = torch.tanh(x @ x / 256)"
    return subprocess.Popen(
        [sys.executable, "-c", code], env={k: v for k, v in os.environ.items() if k not in OMP_VARS}
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: a tiny learn-dict (unless --jobs), one round, quiet only (unless --loads), sgan's setting only",
    )
    ap.add_argument("--busy", choices=["spin", "torch"], default="spin", help="the competing process")
    ap.add_argument(
        "--loads", nargs="+", choices=["quiet", "busy"], default=None, help="default: both (--smoke: quiet)"
    )
    ap.add_argument("--spins", type=int, nargs="*", default=[1000, 10000, 30000])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--jobs", nargs="*", default=None, help="only these commands (learn-dict, train-mlp, …)")
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    args = ap.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in OMP_VARS and k != "SGAN_OPENMP"}
    table = settings(args.spins)
    jobs = workloads(args.smoke)
    if args.smoke:
        table = {"sgan": table["sgan"]}
        args.jobs = args.jobs or ["learn-dict"]
    loads = args.loads or (["quiet"] if args.smoke else ["quiet", "busy"])
    if args.jobs:
        jobs = {k: v for k, v in jobs.items() if k in args.jobs}
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="sgan-bench-wait-") as tmp:
        work = Path(tmp)
        prepare(work, {**base, "OMP_WAIT_POLICY": "PASSIVE"}, args.smoke, list(jobs))
        for load in loads:
            proc = competitor(args.busy if load == "busy" else "none")
            try:
                for _ in range(1 if args.smoke else args.repeats):
                    for job, argv in jobs.items():
                        for name, extra in table.items():
                            t = sgan(*argv, env={**base, **extra}, cwd=work)
                            cell = results.setdefault(load, {}).setdefault(job, {})
                            cell[name] = min(t, cell.get(name, float("inf")))
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
    cpu = harness.cpu_name()
    print(f"CPU: {cpu}; {os.cpu_count()} cores; busy = --busy {args.busy}; seconds (fastest of rounds)")
    names = list(table)
    print("| load | command | " + " | ".join(names) + " | sgan / best |")
    print("|---" * (len(names) + 3) + "|")
    for load, rows in results.items():
        for job, cell in rows.items():
            best = min(cell.values())
            cells = " | ".join(f"{cell[n]:.2f}" for n in names)
            print(f"| {load} | {job} | {cells} | {cell['sgan'] / best:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "busy": args.busy, "results": results}, indent=1))


if __name__ == "__main__":
    main()
