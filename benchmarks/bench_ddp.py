"""Scaling under torchrun: training images/s at 1 process and at N ranks, same global batch.

Each case trains the same config once as one process (``python -m sgan_cli train``) and
once per rank count as ``torchrun --standalone --nproc-per-node N -m sgan_cli train``; the
global batch (``--batch-size``) is the same, so N ranks each compute batch/N rows. The CPU
threads are split evenly: one process gets all of them, each of N ranks 1/N (the rank
processes themselves set nothing; OMP_NUM_THREADS does). images/s is the mean of the
``images_per_s`` that ``metrics.jsonl`` records (global images: batch × (critic steps + 1)
per step) over the logged intervals after the first (warm-up).

On a CPU the ranks share the cores a single process would use anyway, so this measures the
overhead of the distributed step (gradient all-reduce, sharded small matmuls, one stop/loss
collective per step), not a speed-up. On GPUs each rank has its own device.

    python benchmarks/bench_ddp.py                         # quickstart and dense-dcgan, 1 and 2 ranks
    python benchmarks/bench_ddp.py --ranks 1 2 4 --steps 120
    python benchmarks/bench_ddp.py --device cuda --ranks 1 2 --batch-size 256
    python benchmarks/bench_ddp.py --smoke                 # seconds: dense-dcgan, 2 ranks, 4 steps

Results: ``benchmarks/results/ddp.json`` (``--out``; none with ``--smoke`` unless given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from harness import work_folder  # noqa: E402

CASES = {
    "quickstart": (
        "digits, 64-atom whole-image dict, MLP, WGAN-GP + reconstructor",
        ["--arch", "mlp", "--gan", "wgan-gp", "--recon"],
        True,
    ),
    "dense-dcgan": (
        "digits, dense DCGAN generator and critic, WGAN-GP",
        ["--arch", "dcgan", "--gan", "wgan-gp"],
        False,
    ),
}


def run_case(work: Path, case: str, ranks: int, args: argparse.Namespace, dictionary: Path) -> float:
    _, flags, sparse = CASES[case]
    out = work / f"{case}-{ranks}"
    threads = max(1, (os.cpu_count() or 1) // ranks) if args.threads is None else args.threads
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    train = [
        "train", "--data", "digits", *flags, *(["--dict", str(dictionary)] if sparse else []),
        "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--device", args.device,
        "--out", str(out), "--json",
        "--set", f"train.log_every={args.log_every}", "--set", f"train.grid_every={args.steps}",
        "--set", f"train.save_every={args.steps}",
    ]  # fmt: skip
    if ranks == 1:
        cmd = [sys.executable, "-m", "sgan_cli", *train]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(ranks),
            "-m",
            "sgan_cli",
            *train,
        ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{case} at {ranks} rank(s) failed:\n{proc.stderr[-3000:]}")
    logs = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [e["images_per_s"] for e in logs[1:]] or [logs[-1]["images_per_s"]]
    return sum(rates) / len(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--ranks", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64, help="the global batch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS per process (default: cores / ranks)")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default results/ddp.json; none with --smoke)")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: the dense-dcgan case as 2 ranks (the torchrun path), 4 steps at batch 16, 1 thread per rank",
    )
    args = ap.parse_args()
    if args.smoke:
        args.cases, args.ranks, args.steps, args.log_every, args.batch_size, args.threads = (
            ["dense-dcgan"], [2], 4, 2, 16, 1
        )  # fmt: skip
    elif args.out is None:
        args.out = HERE / "results" / "ddp.json"
    results = []
    with work_folder(None, "bench-ddp") as work:
        dictionary = work / "dictionary.safetensors"
        if any(CASES[case][2] for case in args.cases):  # a sparse case: `sgan learn-dict digits --atoms 64`
            import sgan_cli  # in this process: one command fewer to start

            sgan_cli.learn_dictionary("digits", atoms=64).save(dictionary)
        for case in args.cases:
            row: dict[str, object] = {
                "case": case,
                "what": CASES[case][0],
                "batch_size": args.batch_size,
                "images_per_s": {},
            }
            for r in args.ranks:
                row["images_per_s"][str(r)] = run_case(work, case, r, args, dictionary)  # type: ignore[index]
            ips = row["images_per_s"]
            base = ips[str(args.ranks[0])]  # type: ignore[index]
            cells = "  ".join(f"{r} rank(s): {ips[str(r)]:>7.0f} ({ips[str(r)] / base:.2f}×)" for r in args.ranks)  # type: ignore[index]
            print(f"({case}) {CASES[case][0]:<62} {cells}", flush=True)
            results.append(row)
    env_info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
        "device": args.device,
        "steps": args.steps,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"env": env_info, "results": results}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
