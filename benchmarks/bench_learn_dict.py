"""learn-dict against scikit-learn's MiniBatchDictionaryLearning, side by side in one run.

For each case scikit-learn runs with its defaults (batch 256, early stopping), and its
dictionary's objective ½‖Y − AD‖²/n + α‖A‖₁/n is measured with exact lasso codes of every
signal. sgan's solver then runs from scratch with growing pass budgets until it reaches an
objective at least as good; the time of that run is compared. Objective evaluation is not
timed on either side.

    python benchmarks/bench_learn_dict.py                    # all cases
    python benchmarks/bench_learn_dict.py --cases a b        # some
    python benchmarks/bench_learn_dict.py --mnist-root PATH  # case c data (mnist-5k)

Cases: (a) digits 1797×64, K = 64; (b) 100,000 3×3×3 patches of scikit-learn's sample
images, K = 100; (c) mnist-5k training images 4000×784, K = 784.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sgan_cli.dictionary import extract_signals, learn_dictionary
from sgan_cli.sparse_coding import lasso_lars, lasso_objective, support_fraction

HERE = Path(__file__).resolve().parent


def case_signals(case: str, mnist_root: Path) -> tuple[torch.Tensor, int, float, str]:
    """(signals [n, dim] in [−1, 1], K, α, description)."""
    if case == "a":
        from sklearn.datasets import load_digits

        return torch.tensor(load_digits().data, dtype=torch.float32) / 8.0 - 1.0, 64, 0.36, "digits 8×8, K=64"
    if case == "b":
        from sklearn.datasets import load_sample_images

        imgs = np.stack([im[:427, :640] for im in load_sample_images().images]).astype(np.float32) / 127.5 - 1.0
        patches = extract_signals(torch.from_numpy(imgs).permute(0, 3, 1, 2), 3, 1)
        pick = torch.randperm(patches.shape[0], generator=torch.Generator().manual_seed(0))[:100_000]
        return patches[pick].contiguous(), 100, 0.3, "100k 3×3×3 patches, K=100"
    if case == "c":
        import torchvision

        ds = torchvision.datasets.MNIST(str(mnist_root), train=True, download=False)
        return ds.data.reshape(-1, 784).float() / 127.5 - 1.0, 784, 1.0, "mnist-5k train 28×28, K=784"
    raise ValueError(case)


# pass budgets tried in order for sgan (each run from scratch); solver per case
SCHEDULES: dict[str, tuple[str, list[float]]] = {
    "a": ("passes", [2, 3, 4, 6, 8, 12, 16]),
    "b": ("online", [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]),
    "c": ("passes", [2, 3, 4, 5, 6, 8]),
}


def objective(Y: torch.Tensor, atoms: torch.Tensor, alpha: float) -> tuple[float, float]:
    codes = torch.cat([lasso_lars(y, atoms, alpha) for y in Y.split(8192)])
    return lasso_objective(Y, atoms, codes, alpha), support_fraction(codes)


def run_case(case: str, mnist_root: Path) -> dict:
    from sklearn.decomposition import MiniBatchDictionaryLearning

    Y, K, alpha, desc = case_signals(case, mnist_root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        sk = MiniBatchDictionaryLearning(n_components=K, alpha=alpha, batch_size=256, random_state=0).fit(Y.numpy())
        t_sk = time.perf_counter() - t
    f_sk, s_sk = objective(Y, torch.tensor(sk.components_, dtype=torch.float32), alpha)
    print(f"[{case}] scikit-learn: {t_sk:.1f} s, {sk.n_iter_:g} passes, objective {f_sk:.5f}", flush=True)
    solver, budgets = SCHEDULES[case]
    tried = []
    best = None
    for passes in budgets:
        t = time.perf_counter()
        r = learn_dictionary(Y, K, alpha=alpha, target_sparsity=None, solver=solver, passes=passes, heldout_fraction=0.0, evaluate=False)
        t_ours = time.perf_counter() - t
        f_ours, s_ours = objective(Y, r.atoms, alpha)
        tried.append({"passes": passes, "seconds": t_ours, "objective": f_ours})
        print(f"[{case}] sgan {solver} {passes:g} passes: {t_ours:.1f} s, objective {f_ours:.5f}", flush=True)
        if f_ours <= f_sk:
            best = {"passes": passes, "seconds": t_ours, "objective": f_ours, "support": s_ours}
            break
    return {
        "case": case,
        "description": desc,
        "n": int(Y.shape[0]),
        "dim": int(Y.shape[1]),
        "atoms": K,
        "alpha": alpha,
        "sklearn": {"seconds": t_sk, "passes": float(sk.n_iter_), "objective": f_sk, "support": s_sk},
        "sgan_solver": solver,
        "sgan": best,
        "sgan_tried": tried,
        "speedup": (t_sk / best["seconds"]) if best else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    parser.add_argument("--mnist-root", type=Path, default=HERE.parent.parent / "shared" / "data" / "mnist-5k")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "learn_dict.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [run_case(c, args.mnist_root) for c in args.cases]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads"
    print(f"\nlearn-dict vs scikit-learn MiniBatchDictionaryLearning — {machine}")
    header = f"{'case':<30} {'α':>5} {'sklearn s':>10} {'sklearn obj':>12} {'sgan s':>8} {'sgan obj':>10} {'passes':>7} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        sg = r["sgan"]
        sgs = f"{sg['seconds']:8.1f} {sg['objective']:10.5f} {sg['passes']:7g} {r['speedup']:8.1f}×" if sg else f"{'not reached':>37}"
        print(f"{r['description']:<30} {r['alpha']:>5g} {r['sklearn']['seconds']:10.1f} {r['sklearn']['objective']:12.5f} {sgs}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "cases": rows}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
