"""What ``--arch auto`` is based on: training speed of MLP and DCGAN critics on 28×28 images.

Times sgan's training loop (WGAN-GP, batch 64, 5 critic steps, the reconstructor) on
MNIST-sized images for each architecture pair, in alternating timed blocks so drifts in
machine load hit all alike, and prints images/s and the ratio to the fastest. Pixel values
do not change the speed, so random stand-in images and a random 784-atom whole-image
dictionary are used.

    python benchmarks/bench_arch.py                    # 3 blocks × 5 generator steps
    python benchmarks/bench_arch.py --blocks 2 --steps 3
    python benchmarks/bench_arch.py --smoke            # seconds: batch 4, one step, no results written

Results: ``benchmarks/results/arch.json`` (``--out``; none with ``--smoke`` unless given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from sgan_cli.builders import Geometry
from sgan_cli.checkpoint import new_state
from sgan_cli.config import load_config
from sgan_cli.contracts import DictionaryFile
from sgan_cli.training import train_steps

HERE = Path(__file__).resolve().parent

# name → (config keys, whole-image dictionary?)
CASES: dict[str, tuple[list[str], bool]] = {
    "whole-dict, mlp critic (auto)": (["model.arch=mlp"], True),
    "whole-dict, dcgan critic (old default)": (["model.arch=dcgan"], True),
    "dense, mlp (auto on CPU)": (["model.arch=mlp"], False),
    "dense, dcgan (auto on GPU)": (["model.arch=dcgan"], False),
}


def whole_dictionary() -> DictionaryFile:
    """A random unit-norm square 784-atom dictionary of whole 28×28 images (no mean term)."""
    atoms = torch.nn.functional.normalize(torch.randn(784, 784, generator=torch.Generator().manual_seed(0)), dim=1)
    return DictionaryFile(
        atoms=atoms,
        mean=torch.zeros(784),
        channels=1,
        image_size=28,
        patch=None,
        stride=1,
        alpha=1.0,
        achieved_sparsity=0.1,
        hash="random",
        file=None,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5, help="generator steps per timed block")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON results (default results/arch.json; none with --smoke)"
    )
    ap.add_argument("--smoke", action="store_true", help="seconds: batch 4, one block of one step (checks the script)")
    args = ap.parse_args()
    n = 4000
    if args.smoke:
        args.blocks, args.steps, args.batch_size, n = 1, 1, 4, 64
    elif args.out is None:
        args.out = HERE / "results" / "arch.json"
    real = torch.rand(n, 1, 28, 28) * 2 - 1
    states = {}
    for name, (keys, sparse) in CASES.items():
        sets = [*keys, "recon.mode=latent", f"train.batch_size={args.batch_size}", "train.log_every=1000000"]
        cfg = load_config(None, sets)
        state = new_state(cfg, Geometry(1, 28), whole_dictionary() if sparse else None, torch.device("cpu"))
        train_steps(state, cfg, real, 1)  # warm-up
        states[name] = (cfg, state, [])
    for _ in range(args.blocks):
        for _name, (cfg, state, times) in states.items():
            t0 = time.perf_counter()
            train_steps(state, cfg, real, state.step + args.steps)
            times.append(time.perf_counter() - t0)
    rows = {}
    for name, (_cfg, _state, times) in states.items():
        images = args.steps * args.batch_size * (5 + 1)
        rows[name] = images / (sum(times) / len(times))
    best = max(rows.values())
    print(f"{'case':45s} {'images/s':>10s} {'× slower':>9s}")
    for name, ips in rows.items():
        print(f"{name:45s} {ips:10.0f} {best / ips:9.1f}")
    info = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "load": os.getloadavg(),
        "blocks": args.blocks,
        "steps": args.steps,
        "batch_size": args.batch_size,
    }
    print(f"load {os.getloadavg()[0]:.1f}, {torch.get_num_threads()} threads")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"images_per_s": rows, **info}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
