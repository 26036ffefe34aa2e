"""learn-dict against SPAMS' trainDL (or scikit-learn's MiniBatchDictionaryLearning), side by side.

SPAMS (Mairal's C++ online dictionary learning, the ``spams-bin`` wheel, GPL-3.0) is the speed
anchor when it is importable — a benchmark-only install, never a dependency of sgan or its
tests; otherwise (or with ``--reference sklearn``) scikit-learn is the reference.

For each case the reference runs with growing budgets (SPAMS: ``trainDL(mode=2,
batchsize=256, iter=…)``; scikit-learn: its defaults, batch 256, early stopping) and sgan's
solver runs from scratch with growing pass budgets; the runs alternate (reference, sgan,
reference, …) so load changes on a shared machine hit both alike; each budget runs
``--repeats`` times (default 2) and the fastest run is kept, on both sides. Every dictionary's
objective ½‖Y − AD‖²/n + α‖A‖₁/n is measured the same way, with exact lasso codes of every
signal (sgan's ``lasso_lars``); that evaluation is not timed. For each reference point the
table gives the fastest sgan run at an equal or better objective, and the time ratio.
Both sides run with ``--threads`` threads in one process, one after the other, under
OpenMP's default wait policy — what ``sgan learn-dict`` runs under (the CLI sets PASSIVE
only for several torchrun ranks on one host; PASSIVE made sgan's small-problem steps up
to 4× slower here and SPAMS no faster).

    python benchmarks/bench_learn_dict.py                    # all cases
    python benchmarks/bench_learn_dict.py --cases a b        # some
    python benchmarks/bench_learn_dict.py --mnist-root PATH  # case c data (mnist-5k)
    python benchmarks/bench_learn_dict.py --smoke            # seconds: 500 digits, 2 budgets, once; writes no file

Cases: (a) digits 1797×64, K = 64, α = 0.36 (a-full: the same with the torch engine's
full-batch FISTA epochs, ``SGAN_NATIVE=0``); (b) 100,000 3×3×3 patches of scikit-learn's sample images,
K = 100, α = 0.3; (c) mnist-5k training images 4000×784, K = 784, α = 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

try:  # optional, GPL-3.0: only ever imported by benchmarks
    import spams  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the machine
    spams = None

from sgan_cli import native
from sgan_cli.dictionary import learn_dictionary
from sgan_cli.dictionary_job import extract_signals
from sgan_cli.lars import lasso_lars
from sgan_cli.sparse_coding import lasso_objective, support_fraction

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


# budgets per case: sgan (solver, minibatch size — None: the solver's default —, passes per
# run) and SPAMS (minibatch iterations per run). With sgan's compiled kernels the default
# `passes` schedule takes 256-signal steps; case a-full is case a in full-batch FISTA epochs,
# the torch engine's default there (SGAN_NATIVE=0), timed with the compiled kernels off.
SCHEDULES: dict[str, tuple[str, int | None, list[float]]] = {
    "a": ("passes", None, [5, 7, 9, 12, 15, 20, 30, 40, 60, 80, 120]),
    "a-full": ("passes", None, [15, 20, 25, 30, 40, 50, 70, 100, 150, 250]),
    "b": ("online", None, [0.05, 0.1, 0.2, 0.3, 0.5, 1.0]),
    "c": ("passes", None, [2, 3, 4, 6, 9, 12]),
}
SPAMS_ITERS: dict[str, list[int]] = {
    "a": [50, 100, 200, 500],
    "a-full": [50, 100, 200, 500],
    "b": [20, 50, 200],
    "c": [50, 100, 200],
}


def objective(Y: torch.Tensor, atoms: torch.Tensor, alpha: float) -> tuple[float, float]:
    codes = torch.cat([lasso_lars(y, atoms, alpha) for y in Y.split(8192)])
    return lasso_objective(Y, atoms, codes, alpha), support_fraction(codes)


def run_sgan(
    Y: torch.Tensor,
    K: int,
    alpha: float,
    solver: str,
    batch_size: int | None,
    passes: float,
    torch_engine: bool = False,
) -> dict:
    t = time.perf_counter()
    with native.disabled() if torch_engine else contextlib.nullcontext():
        r = learn_dictionary(
            Y,
            K,
            alpha=alpha,
            target_sparsity=None,
            solver=solver,
            passes=passes,
            batch_size=batch_size,
            heldout_fraction=0.0,
            evaluate=False,
        )
    seconds = time.perf_counter() - t
    f, sup = objective(Y, r.atoms, alpha)
    return {"passes": passes, "seconds": seconds, "objective": f, "support": sup}


def run_spams(Y: torch.Tensor, K: int, alpha: float, iters: int, threads: int) -> dict:
    X = np.asfortranarray(Y.double().numpy().T)  # SPAMS: signals as columns
    t = time.perf_counter()
    D = spams.trainDL(X, K=K, lambda1=alpha, mode=2, iter=iters, batchsize=256, numThreads=threads, verbose=False)
    seconds = time.perf_counter() - t
    f, sup = objective(Y, torch.tensor(D.T, dtype=torch.float32), alpha)
    return {"iter": iters, "passes": iters * 256 / Y.shape[0], "seconds": seconds, "objective": f, "support": sup}


def run_sklearn(Y: torch.Tensor, K: int, alpha: float, max_iter: int = 1000) -> dict:
    from sklearn.decomposition import MiniBatchDictionaryLearning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        sk = MiniBatchDictionaryLearning(
            n_components=K, alpha=alpha, batch_size=256, max_iter=max_iter, random_state=0
        ).fit(Y.numpy())
        seconds = time.perf_counter() - t
    f, sup = objective(Y, torch.tensor(sk.components_, dtype=torch.float32), alpha)
    return {"passes": float(sk.n_iter_), "seconds": seconds, "objective": f, "support": sup}


def best_of(repeats: int, run):
    """run() ``repeats`` times; the result with the shortest time (runs are deterministic:
    only the time varies, by milliseconds on the smallest budgets)."""
    return min((run() for _ in range(repeats)), key=lambda r: r["seconds"])


def run_case(case: str, mnist_root: Path, reference: str, threads: int, repeats: int = 1, smoke: bool = False) -> dict:
    Y, K, alpha, desc = case_signals(case[0], mnist_root)
    solver, batch_size, budgets = SCHEDULES[case]
    torch_engine = case == "a-full"
    if torch_engine:
        desc += ", torch engine (full-batch)"
    ref_budgets: list = SPAMS_ITERS[case] if reference == "spams" else [None]
    sklearn_iters = 1000  # scikit-learn's default (it stops early)
    if smoke:  # that the script runs, not a measurement: 500 signals, K = 32, two budgets each
        Y, K, desc = Y[:500], 32, desc.split(",")[0] + " (smoke), K=32"
        budgets, ref_budgets, sklearn_iters = budgets[:2], ref_budgets[:2], 1
    ref_runs: list[dict] = []
    ours: list[dict] = []
    # alternate: reference budget i, sgan budget i, … (the longer list finishes alone)
    for i in range(max(len(ref_budgets), len(budgets))):
        if i < len(ref_budgets):
            r = best_of(
                repeats,
                lambda i=i: (
                    run_spams(Y, K, alpha, ref_budgets[i], threads)
                    if reference == "spams"
                    else run_sklearn(Y, K, alpha, sklearn_iters)
                ),
            )
            ref_runs.append(r)
            print(
                f"[{case}] {reference} {r['passes']:.3g} passes: {r['seconds']:.2f} s, "
                f"objective {r['objective']:.5f}, support {r['support']:.4f}",
                flush=True,
            )
        if i < len(budgets):
            o = best_of(repeats, lambda i=i: run_sgan(Y, K, alpha, solver, batch_size, budgets[i], torch_engine))
            ours.append(o)
            print(
                f"[{case}] sgan {solver} {o['passes']:g} passes: {o['seconds']:.2f} s, "
                f"objective {o['objective']:.5f}, support {o['support']:.4f}",
                flush=True,
            )
    matches = []
    for r in ref_runs:
        ok = [o for o in ours if o["objective"] <= r["objective"]]
        best = min(ok, key=lambda o: o["seconds"]) if ok else None
        matches.append({"reference": r, "sgan": best, "time_ratio": best["seconds"] / r["seconds"] if best else None})
    return {
        "case": case,
        "description": desc,
        "n": int(Y.shape[0]),
        "dim": int(Y.shape[1]),
        "atoms": K,
        "alpha": alpha,
        "reference": reference,
        "sgan_solver": solver,
        "sgan_batch_size": batch_size,
        "reference_runs": ref_runs,
        "sgan_runs": ours,
        "matches": matches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["a", "b", "c"], choices=list(SCHEDULES))
    parser.add_argument("--mnist-root", type=Path, default=HERE.parent.parent / "shared" / "data" / "mnist-5k")
    parser.add_argument("--reference", choices=["spams", "sklearn"], default="spams" if spams else "sklearn")
    parser.add_argument("--out", type=Path, default=None, help="default: results/learn_dict.json (none with --smoke)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs per budget, the fastest kept (each side)")
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds: case a on 500 signals, 2 budgets, once (checks the script)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.cases, args.repeats = ["a"], 1
    elif args.out is None:
        args.out = HERE / "results" / "learn_dict.json"
    if args.reference == "spams" and spams is None:
        raise SystemExit(
            "SPAMS is not importable (pip install spams-bin, GPL-3.0, benchmark-only); use --reference sklearn"
        )
    torch.set_num_threads(args.threads)
    rows = [run_case(c, args.mnist_root, args.reference, args.threads, args.repeats, args.smoke) for c in args.cases]
    load = os.getloadavg()
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, load {load[0]:.1f}"
    )
    print(f"\nlearn-dict vs {args.reference} — {machine}")
    header = (
        f"{'case':<44} {'α':>5} {'ref s':>8} {'ref obj':>10} {'sgan s':>8} "
        f"{'sgan obj':>10} {'passes':>7} {'sgan/ref time':>14}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        for m in r["matches"]:
            ref, sg = m["reference"], m["sgan"]
            sgs = (
                f"{sg['seconds']:8.2f} {sg['objective']:10.5f} {sg['passes']:7g} {m['time_ratio']:13.2f}×"
                if sg
                else f"{'not reached':>41}"
            )
            print(f"{r['description']:<44} {r['alpha']:>5g} {ref['seconds']:8.2f} {ref['objective']:10.5f} {sgs}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine, "cases": rows}, indent=2))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
