"""Sparse coding throughput (what `encode` does): sgan's lasso (LARS) and OMP against SPAMS and
scikit-learn, side by side in one run, on the same signals, dictionary and parameters.

For each case a dictionary is learned once with sgan (fixed α, not timed), then held-out
signals are coded in float64 by

* lasso, ½‖y − aD‖² + α‖a‖₁:  sgan ``lasso_lars``, SPAMS ``spams.lasso(mode=2)`` (when the
  GPL-3.0 ``spams-bin`` wheel is importable: a benchmark-only install, never a dependency),
  scikit-learn ``sparse_encode(algorithm="lasso_lars")``;
* OMP with k = round(0.1·K) non-zeros: sgan ``omp``, ``spams.omp(L=k)``,
  ``sparse_encode(algorithm="omp")``.

"sgan" is what ``encode`` runs on the CPU: the compiled kernels of ``sgan_cli/native.py``
where they were built at install time; "sgan torch" is its batched torch engine (GPUs, and
installs without a C compiler). The implementations are timed alternately (sgan, sgan torch, SPAMS,
scikit-learn, repeated ``--repeats`` times; the best time of each is kept) with 2 threads
each, in one process under OpenMP's
default wait policy (what ``sgan encode`` runs under), and the codes are compared: the
largest coefficient difference and the objective (lasso) or residual (OMP) of each.

    python benchmarks/bench_coding.py                       # digits and 3×3×3 patches
    python benchmarks/bench_coding.py --mnist-root PATH     # + mnist-5k, K = 784
    python benchmarks/bench_coding.py --smoke               # seconds: 500 digits, K = 32, once; writes no file
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

from sgan_cli import native
from sgan_cli.dictionary import learn_dictionary
from sgan_cli.lars import lasso_lars
from sgan_cli.sparse_coding import lasso_objective, omp

HERE = Path(__file__).resolve().parent

try:  # optional, GPL-3.0: only ever imported here
    import spams  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the machine
    spams = None


def cases(
    mnist_root: Path | None, smoke: bool = False
) -> list[tuple[str, torch.Tensor, torch.Tensor, int, float, float | None]]:
    """(name, training signals, coded signals, K, α, learning passes) per case: the
    dictionary is learned with the solver's default schedule (passes None), or 2 passes
    where that would take minutes (mnist-5k). ``smoke``: 500 digits, K = 32, 2 passes only
    (that the script runs, not a measurement)."""
    import sys

    sys.path.insert(0, str(HERE))
    from bench_learn_dict import case_signals

    out = []
    Y, K, alpha, _ = case_signals("a", Path("."))
    if smoke:
        return [("digits 8×8 (smoke), K=32", Y[:500], Y[:500], 32, alpha, 2.0)]
    out.append(("digits 8×8, K=64", Y, Y, K, alpha, None))
    Y, K, alpha, _ = case_signals("b", Path("."))
    out.append(("3×3×3 patches, K=100", Y[:50_000], Y[50_000:70_000], K, alpha, None))
    if mnist_root is not None:
        import torchvision

        Y, K, alpha, _ = case_signals("c", mnist_root)
        test = torchvision.datasets.MNIST(str(mnist_root), train=False, download=False)
        out.append(("mnist-5k 28×28, K=784", Y, test.data.reshape(-1, 784).float() / 127.5 - 1.0, K, alpha, 2.0))
    return out


def torch_engine(fn):
    """fn run by sgan's batched torch engine (the engine of GPUs, and of CPUs without a C
    compiler at install time) instead of its compiled CPU kernels."""

    def run():
        with native.disabled():
            return fn()

    return run


def timed(fn, repeats: int, slot: list[float]):
    t = time.perf_counter()
    out = fn()
    slot.append(time.perf_counter() - t)
    return out


def run_case(
    name: str, Ytrain: torch.Tensor, Y: torch.Tensor, K: int, alpha: float, passes: float | None, repeats: int
) -> dict:
    from sklearn.decomposition import sparse_encode

    atoms = learn_dictionary(
        Ytrain, K, alpha=alpha, target_sparsity=None, passes=passes, heldout_fraction=0.0, evaluate=False
    ).atoms
    D64, Y64 = atoms.double(), Y.double()
    k = max(1, round(0.1 * K))
    Xf = np.asfortranarray(Y64.numpy().T)  # SPAMS: signals as columns
    Df = np.asfortranarray(D64.numpy().T)
    Yn, Dn = Y64.numpy(), D64.numpy()
    coders = {
        "lasso": {
            "sgan": lambda: lasso_lars(Y64, D64, alpha),
            "sgan_torch": torch_engine(lambda: lasso_lars(Y64, D64, alpha)),
            "spams": (lambda: torch.from_numpy(spams.lasso(Xf, D=Df, lambda1=alpha, mode=2, numThreads=2).toarray().T))
            if spams
            else None,
            "sklearn": lambda: torch.from_numpy(
                sparse_encode(Yn, Dn, algorithm="lasso_lars", alpha=alpha, n_jobs=None)
            ),
        },
        "omp": {
            "sgan": lambda: omp(Y64, D64, k),
            "sgan_torch": torch_engine(lambda: omp(Y64, D64, k)),
            "spams": (lambda: torch.from_numpy(spams.omp(Xf, D=Df, L=k, numThreads=2).toarray().T)) if spams else None,
            "sklearn": lambda: torch.from_numpy(sparse_encode(Yn, Dn, algorithm="omp", n_nonzero_coefs=k)),
        },
    }
    row: dict = {"case": name, "n": int(Y.shape[0]), "dim": int(Y.shape[1]), "atoms": K, "alpha": alpha, "omp_k": k}
    for method, impls in coders.items():
        times: dict[str, list[float]] = {m: [] for m, f in impls.items() if f is not None}
        codes: dict[str, torch.Tensor] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(repeats):  # alternate, so load changes hit every implementation alike
                for m in times:
                    codes[m] = timed(impls[m], repeats, times[m])
        res = {}
        for m, ts in times.items():
            c = codes[m]
            quality = (
                lasso_objective(Y64, D64, c, alpha)
                if method == "lasso"
                else float(0.5 * (Y64 - c @ D64).pow(2).sum(1).mean())
            )
            res[m] = {
                "seconds": min(ts),
                "signals_per_s": Y.shape[0] / min(ts),
                "objective" if method == "lasso" else "half_sq_residual": quality,
                "support": float((c != 0).double().mean()),
                "max_abs_diff_vs_sgan": float((c - codes["sgan"]).abs().max()),
            }
        row[method] = res
        line = "  ".join(
            f"{m} {r['signals_per_s']:9.0f}/s ({r['seconds']:.3f} s, {'obj' if method == 'lasso' else 'res'} "
            f"{list(r.values())[2]:.5f}, Δ {r['max_abs_diff_vs_sgan']:.1e})"
            for m, r in res.items()
        )
        print(f"[{name}] {method:5s} {line}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="default: results/coding.json (none with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds: one tiny case, once (checks the script)")
    args = parser.parse_args()
    if args.smoke:
        args.repeats = 1
    elif args.out is None:
        args.out = HERE / "results" / "coding.json"
    torch.set_num_threads(args.threads)
    rows = [run_case(*c, repeats=args.repeats) for c in cases(args.mnist_root, args.smoke)]
    load = os.getloadavg()
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, load {load[0]:.1f}"
    )
    print(f"\nsparse coding throughput (signals/s, float64, best of {args.repeats} alternating runs) — {machine}")
    ref = "spams" if spams else "sklearn"
    if native.library() is None:
        print(
            f"note: sgan's compiled kernels are unavailable ({native.reason()}): both sgan columns are its torch engine"
        )
    header = (
        f"{'case':<24} {'coder':<6} {'sgan':>9} {'sgan torch':>10} "
        f"{'SPAMS':>9} {'sklearn':>9} {'sgan/' + ref:>12} {'max |Δcode|':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        for method in ("lasso", "omp"):
            res = r[method]
            sp = f"{res['spams']['signals_per_s']:9.0f}" if "spams" in res else f"{'—':>9}"
            ratio = res["sgan"]["signals_per_s"] / res[ref]["signals_per_s"]
            print(
                f"{r['case']:<24} {method:<6} {res['sgan']['signals_per_s']:9.0f} "
                f"{res['sgan_torch']['signals_per_s']:10.0f} {sp} "
                f"{res['sklearn']['signals_per_s']:9.0f} {ratio:11.2f}× {res[ref]['max_abs_diff_vs_sgan']:12.1e}"
            )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine, "spams": spams is not None, "cases": rows}, indent=2))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
