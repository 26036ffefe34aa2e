"""Sampling throughput (images/s) of `sgan sample`'s generation loop, by generator and batch size.

Generators are those of `sgan train` with its default configuration (``--arch auto``
resolved for the dictionary and device, z 64, g_width 256), trained for one step through the
library (``sgan_cli.train``) over a dictionary learned in a fraction of a pass (throughput
depends on neither the training nor the atoms), and loaded back with
``sgan_cli.load_generator``, as `sgan sample` loads them. The mnist cases train on MNIST from
``--mnist-root``, else on stand-ins of its size (digits upscaled to 28×28):

  (a) digits quickstart: 8×8, 64 whole-image atoms, MLP body
  (b) mnist whole-image: 28×28, 784 whole-image atoms, MLP body
  (c) mnist patch: 28×28, 100 3×3 patch atoms, DCGAN body emitting a 100×28×28 code map

Timed: latents → G → uint8 images (+ codes kept), in eval mode, for batch sizes 64/256/1024
(`generate`, no files). Separately, one full `run_sample` per generator at batch 256 with
the numbered PNGs and samples.safetensors, to show what writing files costs.

    python benchmarks/bench_sample.py              # all, n = 4096
    python benchmarks/bench_sample.py --n 2048 --cases a b
    python benchmarks/bench_sample.py --smoke      # seconds: cases a and c, n = 64, no results written

Results: ``benchmarks/results/sample.json`` (``--out``; none with ``--smoke`` unless given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

import sgan_cli
from sgan_cli.devices import resolve_device
from sgan_cli.sampling import draw_latents, generate, run_sample

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402

# case → (description, channels, size, atoms, patch)
CASES: dict[str, tuple[str, int, int, int, int | None]] = {
    "a": ("digits quickstart 8×8, K=64 whole-image, MLP", 1, 8, 64, None),
    "b": ("mnist 28×28, K=784 whole-image, MLP", 1, 28, 784, None),
    "c": ("mnist 28×28, K=100 3×3 patches, DCGAN", 1, 28, 100, 3),
}


def make_run(folder: Path, case: str, device: str, mnist_root: Path | None) -> Path:
    """A run folder of ``sgan train`` at the case's size: its default configuration, one step
    at batch 16, over a dictionary of the case's shape learned at a fixed α in a tenth of a
    pass. Returns the folder."""
    _, _, S, K, P = CASES[case]
    data, root = ("digits", None) if S == 8 else ("mnist", mnist_root)
    dictionary = folder / case / "dictionary.safetensors"
    learned = sgan_cli.learn_dictionary(data, data_root=root, atoms=K, patch=P, alpha=1.0, solver="online", passes=0.1)
    learned.save(dictionary, force=True)
    cfg = sgan_cli.SganConfig()
    cfg.data.name, cfg.data.root = data, None if root is None else str(root)
    cfg.train.steps, cfg.train.batch_size, cfg.train.device = 1, 16, device
    return sgan_cli.train(cfg, folder / case / "run", dictionary=dictionary, force=True).out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4096, help="samples per measurement")
    ap.add_argument("--cases", nargs="*", default=None, choices=list(CASES), help="default: all (--smoke: a c)")
    ap.add_argument("--batch-sizes", nargs="*", type=int, default=[64, 256, 1024])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mnist-root", type=Path, default=None, help="torchvision MNIST root (default: stand-in images)")
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON results (default results/sample.json; none with --smoke)"
    )
    ap.add_argument(
        "--smoke", action="store_true", help="seconds: cases a and c (MLP and DCGAN bodies), n = 64 at batch size 64"
    )
    args = ap.parse_args()
    args.cases = args.cases or (["a", "c"] if args.smoke else list(CASES))
    if args.smoke:
        args.n, args.batch_sizes = 64, [64]
    elif args.out is None:
        args.out = HERE / "results" / "sample.json"
    device = resolve_device(args.device)
    results = []
    with harness.work_folder(None, "bench-sample") as root:
        mnist_root = args.mnist_root
        if mnist_root is None and any(CASES[c][2] == 28 for c in args.cases):
            mnist_root = harness.stand_in_mnist(root / "mnist", n_train=1000)
        for case in args.cases:
            g = sgan_cli.load_generator(make_run(root, case, args.device, mnist_root), device=device)
            z = draw_latents(0, 0, args.n, g.z_dim)
            generate(g, z[: min(256, args.n)], 256)  # warm-up (allocator, kernels)
            row: dict[str, object] = {"case": case, "what": CASES[case][0], "n": args.n, "images_per_s": {}}
            for bs in args.batch_sizes:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                generate(g, z, bs)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                row["images_per_s"][str(bs)] = args.n / (time.perf_counter() - t)  # type: ignore[index]
            t = time.perf_counter()
            run_sample(g, root / case / "samples", n=args.n, seed=0, batch_size=256)
            row["with_files_images_per_s_bs256"] = args.n / (time.perf_counter() - t)
            results.append(row)
            ips = row["images_per_s"]
            cells = "  ".join(f"bs {bs}: {ips[str(bs)]:>8.0f}" for bs in args.batch_sizes)  # type: ignore[index]
            print(
                f"({case}) {CASES[case][0]:<44} {cells}   "
                f"with PNGs+file (bs 256): {row['with_files_images_per_s_bs256']:>7.0f} images/s",
                flush=True,
            )
    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"env": env, "results": results}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
