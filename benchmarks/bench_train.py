"""Training speed: sgan's loop against a plain PyTorch loop of the same nets, side by side.

Each case is a recipe (by default the six MNIST recipes, with the papers' nets:
``dcgan-mnist``, ``wgan-mnist``, ``wgan-gp-mnist`` with Goyal's, ``sparse-mnist``,
``sparse-fashion`` with Ganz & Blau's, ``sparse-patch-mnist`` with Goyal's emitting 36 code
maps over 3×3 atoms; the stacked-MNIST recipes with PacGAN's tiny nets on request). Both
loops train the same nets from the same initial state, with the same losses, optimiser
settings, batch size and random draws, at the same precision: fp32, or bf16 autocast on both sides (``--precision``).
``eager_reference.py`` is the plain loop: per-tensor optimisers, two critic calls, the
gradient penalty by autograd's double backward, NCHW layout, ``nn.Dropout``.

The two loops alternate timed blocks after an untimed warm-up (sgan first in odd blocks,
the plain loop first in even ones), so drifts in machine load hit both alike. Reported:
milliseconds per generator iteration (critic steps, generator step and the recipe's third
player included) of each, and their ratio sgan / plain (below 1: sgan is faster), with the
median and spread of the per-block ratios. Each block is timed twice: wall-clock, and the
process's CPU time, which other processes on a shared machine inflate far less (run with
``OMP_NUM_THREADS=1`` so that one thread does all the work and CPU time is its time).

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py            # six recipes, fp32 and bf16
    python benchmarks/bench_train.py --cases wgan-gp-mnist --precision bf16 --blocks 6
    python benchmarks/bench_train.py --mnist-root ../shared/data/mnist-5k
    python benchmarks/bench_train.py --smoke                       # seconds: each objective once, no results

MNIST cases use random stand-in images when no root is given (the time of an iteration does
not depend on pixel values), and sparse cases a random unit-norm 784-atom whole-image
dictionary (the soft threshold's support changes no dense matmul); stacked-MNIST cases use
random 3-channel images. Extra cases:
``quickstart`` (the README demo's config with a DCGAN critic) and ``mnist-patch`` (a DCGAN
generator emitting 100 code maps over 3×3 patch atoms, WGAN-GP + reconstructor).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RECIPES = HERE.parent / "recipes"
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
from eager_reference import eager_steps, plain_nets, plain_optimizers  # noqa: E402

from sgan_cli.builders import Geometry  # noqa: E402
from sgan_cli.checkpoint import new_state  # noqa: E402
from sgan_cli.config import load_config  # noqa: E402
from sgan_cli.contracts import DictionaryFile  # noqa: E402
from sgan_cli.precision import resolve_precision  # noqa: E402
from sgan_cli.training import train_steps  # noqa: E402

MNIST_RECIPES = ("dcgan-mnist", "wgan-mnist", "wgan-gp-mnist", "sparse-mnist", "sparse-fashion", "sparse-patch-mnist")
STACKED_RECIPES = ("stacked-mnist-quarter", "stacked-mnist-quarter-pac2", "stacked-mnist-half")
RECIPE_DICTIONARIES = {"sparse-mnist": "whole", "sparse-fashion": "whole", "sparse-patch-mnist": "patch36"}
# case → (recipe or None, overrides, dictionary: None | "whole" | "patch" | "patch36" | "digits")
CASES: dict[str, tuple[str | None, list[str], str | None]] = {
    **{name: (name, [], RECIPE_DICTIONARIES.get(name)) for name in (*MNIST_RECIPES, *STACKED_RECIPES)},
    "quickstart": (
        None,
        ["model.arch=dcgan", "model.threshold=0.3", "model.beta=0.5", "recon.mode=latent", "model.sparsity=fixed"],
        "digits",
    ),
    "mnist-patch": (
        None,
        ["model.arch=dcgan", "model.z_dim=100", "model.g_width=128", "model.d_width=32", "recon.mode=latent"]
        + ["train.batch_size=50", "model.sparsity=fixed"],
        "patch",
    ),
}


def _dictionary(kind: str | None) -> DictionaryFile | None:
    """A random unit-norm dictionary of the case's shape (speed does not depend on the atoms)."""
    if kind is None:
        return None
    g = torch.Generator().manual_seed(0)
    shapes = {
        "digits": (64, 64, 8, None),
        "whole": (784, 784, 28, None),
        "patch": (100, 9, 28, 3),
        "patch36": (36, 9, 28, 3),
    }
    k, dim, size, patch = shapes[kind]
    atoms = torch.nn.functional.normalize(torch.randn(k, dim, generator=g), dim=1)
    return DictionaryFile(
        atoms=atoms,
        mean=torch.zeros(dim),
        channels=1,
        image_size=size,
        patch=patch,
        stride=1,
        alpha=0.0,
        achieved_sparsity=0.1,
        hash="",
        file=None,  # type: ignore[arg-type]
    )


def _real(kind: str | None, mnist_root: Path | None, n: int, channels: int = 1) -> torch.Tensor:
    if kind == "digits":
        from sgan_cli.config import DataConfig
        from sgan_cli.data import load_data

        return load_data(DataConfig(name="digits")).floats()[:n]
    if mnist_root is not None and channels == 1:
        import torchvision

        ds = torchvision.datasets.MNIST(str(mnist_root), train=True, download=False)
        return ds.data[:n].unsqueeze(1).float() / 127.5 - 1.0
    return torch.rand(n, channels, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _config(case: str, precision: str, batch: int | None):
    recipe, overrides, _ = CASES[case]
    settings = [*overrides, f"train.precision={precision}"] + ([f"train.batch_size={batch}"] if batch else [])
    cfg = load_config(RECIPES / f"{recipe}.yaml" if recipe else None, settings)
    cfg.train.dict = None  # the case's random dictionary stands in for the recipe's file
    return cfg


def run_case(
    case: str,
    blocks: int,
    steps: int,
    mnist_root: Path | None,
    precision: str,
    batch: int | None = None,
    n: int = 4000,
    warm_up: int = 2,
) -> dict:
    """Time ``blocks`` alternating blocks of ``steps`` generator iterations of each loop, after
    ``warm_up`` untimed iterations of each."""
    cfg = _config(case, precision, batch)
    kind = CASES[case][2]
    real = _real(kind, mnist_root, n, 3 if cfg.data.name == "stacked-mnist" else 1)
    device = torch.device("cpu")
    ours = new_state(cfg, Geometry(real.shape[1], real.shape[-1]), _dictionary(kind), device)
    ref = copy.deepcopy(ours)
    plain_nets(ref)
    ref_opts = plain_optimizers(ref, cfg)
    amp = resolve_precision(precision, device)

    def timed(run) -> tuple[float, float]:  # (wall, CPU) seconds
        w0, c0 = time.perf_counter(), time.process_time()
        run()
        return time.perf_counter() - w0, time.process_time() - c0

    def sgan_block(k: int) -> tuple[float, float]:
        return timed(lambda: train_steps(ours, cfg, real, ours.step + k))

    def plain_block(k: int) -> tuple[float, float]:
        return timed(lambda: eager_steps(ref, cfg, real, k, ref_opts, amp))

    sgan_block(warm_up)  # warm-up (allocator, oneDNN primitive caches, the penalty's traceability probe), untimed
    plain_block(warm_up)
    t_sgan: list[tuple[float, float]] = []
    t_plain: list[tuple[float, float]] = []
    for b in range(blocks):
        if b % 2 == 0:
            t_sgan.append(sgan_block(steps))
            t_plain.append(plain_block(steps))
        else:
            t_plain.append(plain_block(steps))
            t_sgan.append(sgan_block(steps))
    n_it = blocks * steps
    out = {
        "case": case,
        "precision": precision,
        "arch": cfg.model.arch,
        "objective": cfg.gan.objective,
        "batch_size": cfg.train.batch_size,
        "iterations": n_it,
    }
    for i, clock in enumerate(("wall", "cpu")):
        a, b = [t[i] for t in t_sgan], [t[i] for t in t_plain]
        ratios = [x / max(y, 1e-9) for x, y in zip(a, b)]
        out.update({
            f"sgan_ms_per_iter_{clock}": 1e3 * sum(a) / n_it,
            f"plain_ms_per_iter_{clock}": 1e3 * sum(b) / n_it,
            f"ratio_{clock}": sum(a) / max(sum(b), 1e-9),
            f"ratio_{clock}_median": statistics.median(ratios),
            f"ratio_{clock}_min": min(ratios),
            f"ratio_{clock}_max": max(ratios),
        })  # fmt: skip
    return out


def machine() -> dict:
    """The CPU (model, AMX), torch and its thread count, the load when the run started."""
    model = harness.cpu_name()
    amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return {
        "cpu": model,
        "amx": amx,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=None, choices=list(CASES), help="default: the MNIST recipes")
    ap.add_argument("--blocks", type=int, default=8, help="alternating timed blocks per loop")
    ap.add_argument("--steps", type=int, default=2, help="generator iterations per block")
    ap.add_argument("--batch-size", type=int, default=None, help="override the recipes' batch size")
    ap.add_argument(
        "--mnist-root", type=Path, default=None, help="torchvision MNIST root (e.g. ../shared/data/mnist-5k)"
    )
    ap.add_argument("--precision", nargs="+", default=None, choices=["fp32", "bf16"], help="default: fp32 bf16")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default benchmarks/results/train.json)")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: dcgan-, wgan-, wgan-gp- and sparse-mnist (each objective and the VAE), fp32 and bf16 in "
        "turn, batch 8, one block of one iteration after one warm-up, 64 images; writes no results",
    )
    args = ap.parse_args()
    n, warm_up = 4000, 2
    runs = [(c, p) for c in args.cases or MNIST_RECIPES for p in args.precision or ["fp32", "bf16"]]
    if args.smoke:
        args.blocks, args.steps, args.batch_size, n, warm_up = 1, 1, args.batch_size or 8, 64, 1
        if args.cases is None and args.precision is None:  # sparse-fashion is sparse-mnist on other images
            runs = list(zip(MNIST_RECIPES[:4], ["fp32", "bf16"] * 2))
    info = machine()
    print(
        f"machine: {info['cpu']} (AMX: {'yes' if info['amx'] else 'no'}), {info['cpus']} CPUs, "
        f"torch {info['torch']}, {info['threads']} threads, load {info['load_1min']}"
    )
    print("ms per generator iteration, CPU time (wall-clock); sgan/plain: total, median and range over blocks")
    print(
        f"{'case':<26} {'arch':<10} {'gan':<8} {'prec':<5} {'batch':>5} "
        f"{'plain ms/it':>16} {'sgan ms/it':>16} {'sgan/plain CPU':>25} {'wall':>6}"
    )
    rows = []
    for case, precision in runs:
        r = run_case(case, args.blocks, args.steps, args.mnist_root, precision, args.batch_size, n, warm_up)
        rows.append(r)
        print(
            f"{case:<26} {r['arch']:<10} {r['objective']:<8} {precision:<5} {r['batch_size']:>5} "
            f"{r['plain_ms_per_iter_cpu']:>7.1f} ({r['plain_ms_per_iter_wall']:>6.1f}) "
            f"{r['sgan_ms_per_iter_cpu']:>7.1f} ({r['sgan_ms_per_iter_wall']:>6.1f}) "
            f"{r['ratio_cpu']:>6.2f}× {r['ratio_cpu_median']:.2f} "
            f"{r['ratio_cpu_min']:.2f}–{r['ratio_cpu_max']:.2f} "
            f"{r['ratio_wall']:>5.2f}×",
            flush=True,
        )
    out = args.out or (None if args.smoke else HERE / "results" / "train.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
