"""Which mean term for dictionaries: none, the mean signal (mean image / mean patch), or the
per-patch DC (each patch's own mean, K-SVD style) — held-out PSNR at equal support.

The dictionary is learned by ``dictionary.learn_dictionary`` on the signals as each variant
centres them (the same solver, α tuned to the same support); PSNR is measured on the
held-out signals after adding the removed part back. The per-patch DC is one more dense
coefficient per patch (a generator would have to emit it as an extra, unthresholded code
channel), so its PSNR is an upper bound for what a mean term can give, not a like-for-like
alternative to the mean patch.

    python benchmarks/bench_dict_mean.py --mnist-root ../shared/data/mnist-5k
    python benchmarks/bench_dict_mean.py --smoke      # seconds: 400 digits, 16 atoms, no results written

Results: ``benchmarks/results/bench_dict_mean.json`` (``--out``; none with ``--smoke`` unless given).
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
    """Learn ``n_atoms`` atoms on 90 % of the signals ``Y`` [N, dim] centred per ``variant``
    ("none", "mean" or "dc") at ``sparsity``; PSNR in dB of exact lasso codes of the rest."""
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
    ap.add_argument("--out", type=Path, default=None, help="default: results/bench_dict_mean.json (none with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="seconds: 400 digits, 16 atoms per case (checks the script)")
    args = ap.parse_args()
    if not args.smoke and args.out is None:
        args.out = ROOT / "benchmarks" / "results" / "bench_dict_mean.json"
    cases = [("digits", "digits", None, None, 0.1), ("digits", "digits 3×3 patches", 3, 100, 0.03)]
    if args.smoke:
        cases = [("digits", "digits (smoke)", None, 16, 0.1), ("digits", "digits 3×3 patches (smoke)", 3, 16, 0.1)]
    if args.mnist_root:
        cases += [("mnist", "mnist-5k whole images", None, 784, 0.1), ("mnist", "mnist-5k 3×3 patches", 3, 100, 0.03)]
    rows = []
    for name, label, patch, atoms, sparsity in cases:
        data = load_data(DataConfig(name=name, root=str(args.mnist_root) if args.mnist_root else None, download=False))
        Y = extract_signals(data.floats()[:400] if args.smoke else data.floats(), patch, 1)
        if args.smoke:
            Y = Y[torch.randperm(Y.shape[0], generator=torch.Generator().manual_seed(0))[:2000]]
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
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        machine = {"cpu": platform.processor() or platform.machine(), "load": os.getloadavg()}
        args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
