"""Every benchmark, one after the other, with one command (each prints its table and writes
its JSON under benchmarks/results/).

    python benchmarks/run_all.py                                   # digits / generated data
    python benchmarks/run_all.py --mnist-root ../shared/data/mnist-5k

Run it on a quiet machine: the scripts time two implementations side by side, and another
busy process on the same cores distorts small-op timings (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--mnist-root", type=Path, default=None, help="torchvision MNIST root for the MNIST cases (mnist-5k)"
    )
    args = ap.parse_args()
    mnist = ["--mnist-root", str(args.mnist_root)] if args.mnist_root else []
    runs = [
        ["bench_learn_dict.py", *(mnist if mnist else ["--cases", "a", "b"])],
        ["bench_coding.py", *mnist],
        ["bench_train.py", *mnist],
        ["bench_penalty.py"],
        ["bench_precision.py"],
        ["bench_sample.py"],
        ["bench_score.py", *mnist],
        ["bench_ddp.py"],
    ]
    failed = []
    for script, *rest in runs:
        print(f"\n=== {script} {' '.join(rest)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *rest]).returncode != 0:
            failed.append(script)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
