"""Every benchmark, one after the other, with one command (each prints its table and writes
its JSON under benchmarks/results/).

    python benchmarks/run_all.py                                   # digits / generated data
    python benchmarks/run_all.py --mnist-root ../shared/data/mnist-5k

Run it on a quiet machine: the scripts time two implementations side by side, and another
busy process on the same cores distorts small-op timings (docs/benchmarks.md). Each script's
``--smoke`` checks in seconds that it still runs (``tests/test_benchmarks.py`` runs them all).

Not run here, each by its own command (docs/benchmarks.md, docs/results.md): the studies, which
train many runs for many minutes each and resume (``study_*.py``, ``bench_sparsity.py``,
``bench_arch_quality.py``), the plain-loop quality references (``reference_*.py``), and
``bench_recon.py``, which measures one recipe's reconstructor given on its command line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def runs(mnist_root: Path | None) -> list[list[str]]:
    """Each benchmark it runs: [script, arguments…]."""
    mnist = ["--mnist-root", str(mnist_root)] if mnist_root else []
    return [
        ["bench_learn_dict.py", *(mnist if mnist else ["--cases", "a", "b"])],
        ["bench_coding.py", *mnist],
        ["bench_train.py", *mnist],
        ["bench_penalty.py"],
        ["bench_precision.py"],
        ["bench_sample.py", *mnist],
        ["bench_score.py", *mnist],
        ["bench_ddp.py"],
        ["bench_arch.py"],
        ["bench_dict_mean.py", *mnist],
        ["bench_wait_policy.py"],
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--mnist-root", type=Path, default=None, help="torchvision MNIST root for the MNIST cases (mnist-5k)"
    )
    args = ap.parse_args()
    failed = []
    for script, *rest in runs(args.mnist_root):
        print(f"\n=== {script} {' '.join(rest)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *rest]).returncode != 0:
            failed.append(script)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
