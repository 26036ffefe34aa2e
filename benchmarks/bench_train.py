"""Training throughput: sgan's loop against a straightforward eager loop, side by side.

Both train the same nets (built by sgan from one config and seed), with the same losses,
optimiser hyper-parameters, batch size and random draws; ``eager_reference.py`` is the
plain loop. Each case alternates timed blocks of the two (after a warm-up) so drifts in
machine load hit both alike; images/s counts every image through the critic and the
generator (batch × (critic steps + 1) per iteration), as ``metrics.jsonl`` does.

The eager loop always runs in fp32 with PyTorch's default NCHW layout; sgan runs each
``--precision`` asked (fp32: the same arithmetic; bf16: mixed precision, whose losses
``bench_precision.py`` compares with fp32's in distribution).

    python benchmarks/bench_train.py                 # all cases, sgan in fp32 and bf16
    python benchmarks/bench_train.py --precision fp32
    python benchmarks/bench_train.py --cases quickstart --blocks 3 --steps 40
    python benchmarks/bench_train.py --mnist-root ../shared/data/mnist-5k

Cases: quickstart (digits 8×8, 64-atom whole-image dictionary, WGAN-GP + reconstructor,
the README demo's config, with the DCGAN critic it had before --arch auto); mnist-patch
(28×28, 3×3 patch dictionary of 100 atoms, DCGAN generator emitting 100 code channels,
WGAN-GP + reconstructor); mnist-dense (Goyal 2019's
dense DCGAN shapes, WGAN-GP). MNIST cases use random stand-in images when no root is given
(throughput does not depend on pixel values).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from eager_reference import eager_steps, plain_optimizers  # noqa: E402

from sgan_cli.builders import Geometry  # noqa: E402
from sgan_cli.checkpoint import new_state  # noqa: E402
from sgan_cli.config import load_config  # noqa: E402
from sgan_cli.contracts import DictionaryFile  # noqa: E402
from sgan_cli.training import train_steps  # noqa: E402

CASES: dict[str, list[str]] = {
    # model.arch=dcgan: the convolutional critics these cases were measured with (before --arch auto)
    "quickstart": ["model.arch=dcgan", "model.threshold=0.3", "model.beta=0.5", "recon.mode=latent"],
    "mnist-patch": [
        "model.arch=dcgan",
        "model.z_dim=100",
        "model.g_width=128",
        "model.d_width=32",
        "recon.mode=latent",
        "train.batch_size=50",
    ],
    "mnist-dense": [
        "model.arch=dcgan",
        "model.z_dim=100",
        "model.g_width=256",
        "model.d_width=64",
        "train.batch_size=50",
    ],
}


def _dictionary(case: str) -> DictionaryFile | None:
    """A random unit-norm dictionary of the case's shape (speed does not depend on the atoms)."""
    g = torch.Generator().manual_seed(0)
    if case == "quickstart":
        atoms, C, S, patch = torch.randn(64, 64, generator=g), 1, 8, None
    elif case == "mnist-patch":
        atoms, C, S, patch = torch.randn(100, 9, generator=g), 1, 28, 3
    else:
        return None
    atoms = torch.nn.functional.normalize(atoms, dim=1)
    return DictionaryFile(
        atoms=atoms,
        channels=C,
        image_size=S,
        patch=patch,
        stride=1,
        alpha=0.0,
        achieved_sparsity=0.1,
        hash="",
        file=None,
    )  # type: ignore[arg-type]


def _real(case: str, mnist_root: Path | None) -> torch.Tensor:
    if case == "quickstart":
        from sgan_cli.config import DataConfig
        from sgan_cli.data import load_data

        return load_data(DataConfig(name="digits")).floats()
    if mnist_root is not None:
        import torchvision

        ds = torchvision.datasets.MNIST(str(mnist_root), train=True, download=False)
        return ds.data.unsqueeze(1).float() / 127.5 - 1.0
    return torch.rand(4000, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1


def run_case(case: str, blocks: int, steps: int, mnist_root: Path | None, precision: str = "fp32") -> dict:
    cfg = load_config(None, [*CASES[case], f"train.precision={precision}"])
    real = _real(case, mnist_root)
    geometry = Geometry(real.shape[1], real.shape[-1])
    base = new_state(cfg, geometry, _dictionary(case), torch.device("cpu"))
    ours, ref = base, copy.deepcopy(base)
    for module in ref.modules().values():  # the plain loop keeps PyTorch's default NCHW layout
        module.to(memory_format=torch.contiguous_format)
    ref_opts = plain_optimizers(ref, cfg)  # the plain loop runs in fp32 whatever ``precision``
    per_iter = cfg.train.batch_size * ((cfg.gan.critic_steps or 5) + 1)
    # warm-up (allocator, oneDNN primitive caches), untimed
    train_steps(ours, cfg, real, ours.step + 3)
    eager_steps(ref, cfg, real, 3, ref_opts)
    t_ours = t_ref = 0.0
    losses = {"ours": [], "eager": []}
    for _ in range(blocks):
        t0 = time.perf_counter()
        train_steps(ours, cfg, real, ours.step + steps, on_log=None)
        t_ours += time.perf_counter() - t0
        t0 = time.perf_counter()
        losses["eager"] += eager_steps(ref, cfg, real, steps, ref_opts)
        t_ref += time.perf_counter() - t0
    n_img = blocks * steps * per_iter
    return {
        "case": case,
        "precision": precision,
        "batch_size": cfg.train.batch_size,
        "images": n_img,
        "ours_images_per_s": n_img / t_ours,
        "eager_images_per_s": n_img / t_ref,
        "speedup": t_ref / t_ours,
        "ours_s": t_ours,
        "eager_s": t_ref,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--blocks", type=int, default=4, help="alternating timed blocks per loop")
    ap.add_argument("--steps", type=int, default=25, help="generator iterations per block")
    ap.add_argument(
        "--mnist-root", type=Path, default=None, help="torchvision MNIST root (e.g. ../shared/data/mnist-5k)"
    )
    ap.add_argument(
        "--precision",
        nargs="+",
        default=["fp32", "bf16"],
        choices=["fp32", "bf16"],
        help="sgan's train.precision (the eager loop is fp32)",
    )
    args = ap.parse_args()
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"machine: {machine}")
    print(f"{'case':<12} {'sgan precision':>14} {'batch':>5} {'eager img/s':>12} {'sgan img/s':>11} {'speed-up':>9}")
    rows = []
    for case in args.cases:
        for precision in args.precision:
            r = run_case(case, args.blocks, args.steps, args.mnist_root, precision)
            rows.append(r)
            print(
                f"{case:<12} {precision:>14} {r['batch_size']:>5} {r['eager_images_per_s']:>12.0f} "
                f"{r['ours_images_per_s']:>11.0f} {r['speedup']:>8.2f}×",
                flush=True,
            )
    out = HERE / "results" / "train.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
