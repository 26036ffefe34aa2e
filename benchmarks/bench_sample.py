"""Sampling throughput (images/s) of `sgan sample`'s generation loop, by generator and batch size.

Generators are built at the sizes `sgan train` uses by default (z 64, g_width 256), with random
weights and random unit-norm atoms (throughput does not depend on training), written as
generator files and loaded back the way `sgan sample` loads them:

  (a) digits quickstart: 8×8, 64 whole-image atoms, MLP body
  (b) mnist whole-image: 28×28, 784 whole-image atoms, MLP body
  (c) mnist patch: 28×28, 100 3×3 patch atoms, DCGAN body emitting a 100×28×28 code map

Timed: latents → G → uint8 images (+ codes kept), in eval mode, for batch sizes 64/256/1024
(`generate`, no files). Separately, one full `run_sample` per generator at batch 256 with
the numbered PNGs and samples.safetensors, to show what writing files costs.

    python benchmarks/bench_sample.py              # all, n = 4096
    python benchmarks/bench_sample.py --n 2048 --cases a b
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from sgan_cli.builders import Geometry, build_generator
from sgan_cli.config import ModelConfig, to_dict
from sgan_cli.contracts import write_file
from sgan_cli.devices import resolve_device
from sgan_cli.run_files import GeneratorDictionary, load_generator
from sgan_cli.sampling import draw_latents, generate, run_sample

HERE = Path(__file__).resolve().parent

# case → (description, channels, size, atoms, patch)
CASES: dict[str, tuple[str, int, int, int, int | None]] = {
    "a": ("digits quickstart 8×8, K=64 whole-image, MLP", 1, 8, 64, None),
    "b": ("mnist 28×28, K=784 whole-image, MLP", 1, 28, 784, None),
    "c": ("mnist 28×28, K=100 3×3 patches, DCGAN", 1, 28, 100, 3),
}


def make_generator_file(folder: Path, case: str) -> Path:
    """A generator file with random weights at the case's size, as `sgan train` writes it."""
    _, C, S, K, P = CASES[case]
    torch.manual_seed(0)
    dim = C * (P or S) ** 2
    atoms = torch.nn.functional.normalize(torch.randn(K, dim), dim=1)
    d = GeneratorDictionary(atoms, C, S, P, 1, "", "random")
    model = ModelConfig()
    G = build_generator(model, Geometry(C, S), d)
    meta = {
        "channels": str(C),
        "image_size": str(S),
        "step": "0",
        "sparse": "true",
        "dictionary_patch": json.dumps(P),
        "dictionary_stride": "1",
    }
    path = folder / case / "generator.safetensors"
    write_file(path, "sgan.generator", G.state_dict(), config={"model": to_dict(model)}, meta=meta)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4096, help="samples per measurement")
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--batch-sizes", nargs="*", type=int, default=[64, 256, 1024])
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for case in args.cases:
            path = make_generator_file(root, case)
            g = load_generator(path, device=device)
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
    out = HERE / "results" / "sample.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"env": env, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
