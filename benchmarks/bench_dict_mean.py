"""Which mean term for dictionaries: none, the mean signal (mean image / mean patch), or the
per-patch DC (each patch's own mean, K-SVD style) — held-out PSNR at equal support.

The dictionary is learned by ``dictionary.learn_dictionary`` on the signals as each variant
centres them (the same solver, α tuned to the same support); PSNR is measured on the
held-out signals after adding the removed part back. The per-patch DC is one more dense
coefficient per patch (a generator would have to emit it as an extra, unthresholded code
channel), so its PSNR is an upper bound for what a mean term can give, not a like-for-like
alternative to the mean patch.

    python benchmarks/bench_dict_mean.py --mnist-root ../shared/data/mnist-5k
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def held_out_psnr(Y: torch.Tensor, variant: str, n_atoms: int, sparsity: float, seed: int = 0) -> dict:
    from sgan_cli.dictionary import learn_dictionary
    from sgan_cli.dictionary_job import centre_signals
    from sgan_cli.lars import lasso_lars
    from sgan_cli.sparse_coding import psnr

    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(Y.shape[0], generator=gen)
    n_test = min(2000, Y.shape[0] // 10)
    test, train = Y[perm[:n_test]], Y[perm[n_test:]]
    if variant == "none":
        Yc, add_test = train, 0.0
    elif variant == "mean":
        Yc, mean = centre_signals(train)
        add_test = mean
    else:  # per-signal DC
        Yc = train - train.mean(dim=1, keepdim=True)
        add_test = test.mean(dim=1, keepdim=True)
    t0 = time.perf_counter()
    learned = learn_dictionary(Yc, n_atoms, target_sparsity=sparsity, seed=seed)
    seconds = time.perf_counter() - t0
    codes = lasso_lars(test - add_test, learned.atoms, learned.alpha)
    recon = codes @ learned.atoms + add_test
    return {
        "variant": variant,
        "psnr_db": float(psnr(recon, test).mean()),
        "support": float((codes != 0).float().mean()),
        "learn_s": seconds,
    }


def main() -> None:
    from sgan_cli.config import DataConfig
    from sgan_cli.data import load_data
    from sgan_cli.dictionary_job import extract_signals

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--mnist-root", type=Path, default=None, help="torchvision MNIST root (mnist-5k); default: digits only"
    )
    args = ap.parse_args()
    cases = [("digits", "digits", None, None, 0.1), ("digits", "digits 3×3 patches", 3, 100, 0.03)]
    if args.mnist_root:
        cases += [("mnist", "mnist-5k whole images", None, 784, 0.1), ("mnist", "mnist-5k 3×3 patches", 3, 100, 0.03)]
    rows = []
    for name, label, patch, atoms, sparsity in cases:
        data = load_data(DataConfig(name=name, root=str(args.mnist_root) if args.mnist_root else None, download=False))
        Y = extract_signals(data.floats(), patch, 1)
        if Y.shape[0] > 100_000:
            Y = Y[torch.randperm(Y.shape[0], generator=torch.Generator().manual_seed(0))[:100_000]]
        K = atoms or Y.shape[1]
        for variant in ("none", "mean", *(("dc",) if patch else ())):
            row = {"case": label, **held_out_psnr(Y, variant, K, sparsity)}
            rows.append(row)
            print(
                f"{label:26} {variant:5} PSNR {row['psnr_db']:6.2f} dB  "
                f"support {row['support']:.4f}  learn {row['learn_s']:.1f} s",
                flush=True,
            )
    out = ROOT / "benchmarks" / "results" / "bench_dict_mean.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"machine": {"cpu": platform.processor() or platform.machine(), "load": os.getloadavg()}, "rows": rows},
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
