"""Sparsity control of the generated codes, measured on digits with the README demo's settings.

Per case: ``sgan learn-dict digits --sparsity 0.1`` (with or without the mean term, once
each) → ``sgan train --gan wgan-gp --recon --dict … --steps 300`` with the case's
``model.*`` settings → ``sgan sample -n 1000`` → ``sgan score -m fid -m modes -m sparsity``
with a digits classifier (trained once). Each finished case appends one JSON line to
``WORK/results.jsonl`` and is skipped when run again (resumable); the table is printed at
the end and written to ``benchmarks/results/bench_sparsity.json`` (``--out``).

    python benchmarks/bench_sparsity.py                         # every case (~3 min each on 2 busy cores)
    python benchmarks/bench_sparsity.py --cases topk-mean controller-mean --seeds 0 1
    python benchmarks/bench_sparsity.py --smoke                 # seconds: the default case, 4 steps, 100 samples

``--smoke`` runs the commands in this process, in a temporary folder (or the ``--work``
given), and writes no table unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # sgan_cli from this checkout
sys.path.insert(0, str(HERE))

import harness  # noqa: E402

# case → (dictionary with a mean term?, extra train options)
CASES: dict[str, tuple[bool, list[str]]] = {
    "fixed-nomean": (False, ["--set", "model.sparsity=fixed"]),  # what main did before this change
    "fixed-mean": (True, ["--set", "model.sparsity=fixed"]),
    "learn-mean": (True, ["--set", "model.sparsity=learn"]),
    "topk-nomean": (False, ["--set", "model.sparsity=topk"]),
    "topk-mean": (True, ["--set", "model.sparsity=topk"]),
    "topk-mean-beta0": (True, ["--set", "model.sparsity=topk", "--set", "model.beta=0"]),
    "controller-nomean": (False, ["--set", "model.sparsity=controller"]),
    "controller-mean": (True, ["--set", "model.sparsity=controller"]),
    "controller-mean-beta0": (True, ["--set", "model.sparsity=controller", "--set", "model.beta=0"]),
    "default": (True, []),  # whatever model.sparsity "auto" resolves to
}


def last_metrics(run: Path) -> dict:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def background_level(samples: Path) -> float:
    """Mean uint8 value of the samples on the pixels that are 0 in > 90 % of real digits:
    the grey haze of whole-image samples (real digits: 0.9)."""
    from safetensors.torch import load_file

    from sgan_cli.config import DataConfig
    from sgan_cli.data import load_data

    real = load_data(DataConfig(name="digits")).images
    mask = (real == 0).float().mean(0)[0] > 0.9
    x = load_file(str(samples / "samples.safetensors"))["images"].float()
    return float(x[:, :, mask].mean())


def run_case(
    sgan: Callable[..., dict],
    work: Path,
    name: str,
    seed: int,
    steps: int,
    clf: Path,
    n_samples: int = 1000,
    target: tuple[str, ...] = ("--sparsity", "0.1"),
) -> dict:
    """learn-dict ``target`` (once per mean term) → train → sample → score one (case, seed)
    with ``sgan`` (:func:`harness.sgan`); returns its result row."""
    mean, extra = CASES[name]
    dictionary = work / ("dict-mean.safetensors" if mean else "dict-nomean.safetensors")
    if not dictionary.exists():
        mean_flag = "--mean" if mean else "--no-mean"
        sgan("learn-dict", "digits", *target, mean_flag, "--out", str(dictionary), "--force")
    run, samples = work / "runs" / f"{name}-s{seed}", work / "samples" / f"{name}-s{seed}"
    t0 = time.perf_counter()
    # --arch dcgan: the nets these cases were measured with (README), whatever the default
    sgan(
        "train",
        "--gan",
        "wgan-gp",
        "--recon",
        "--arch",
        "dcgan",
        "--dict",
        str(dictionary),
        "--data",
        "digits",
        "--steps",
        str(steps),
        "--seed",
        str(seed),
        "--out",
        str(run),
        "--force",
        *extra,
    )
    train_s = time.perf_counter() - t0
    sgan("sample", str(run), "-n", str(n_samples), "--out", str(samples), "--force")
    score = sgan(
        "score",
        str(samples),
        "-m",
        "fid",
        "-m",
        "modes",
        "-m",
        "sparsity",
        "--ref",
        "digits",
        "--features",
        f"classifier:{clf}",
    )
    m, last = score["metrics"], last_metrics(run)
    import sgan_cli

    dict_support = sgan_cli.load_dictionary(dictionary).achieved_sparsity
    return {
        "case": name, "seed": seed, "steps": steps, "fid": m["fid"], "modes": m["modes"], "modes_kl": m["modes_kl"],
        "support_samples": m["sparsity"], "support_train": last.get("support"), "lambda": last.get("lambda"),
        "dict_support": float(dict_support), "background": background_level(samples),
        "fid_ceiling": score["ceiling"]["fid"], "train_s": train_s,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=None, choices=list(CASES), help="default: all (--smoke: default)")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--work", type=Path, default=None, help="default benchmarks/work/sparsity (--smoke: a temp folder)")
    ap.add_argument("--samples", type=int, default=1000, help="samples scored per run")
    ap.add_argument("--out", type=Path, default=None, help="the table as JSON (default results/bench_sparsity.json)")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: the default case over a 16-atom dictionary, 4 steps, 100 samples, a one-epoch classifier, "
        "in this process",
    )
    args = ap.parse_args()
    args.cases = args.cases or (["default"] if args.smoke else list(CASES))
    if args.smoke:
        args.seeds, args.steps, args.samples = args.seeds[:1], 4, 100
    else:
        args.work = args.work or ROOT / "benchmarks" / "work" / "sparsity"
        args.out = args.out or HERE / "results" / "bench_sparsity.json"
    sgan = functools.partial(harness.sgan, in_process=args.smoke)
    with harness.work_folder(args.work, "bench-sparsity") as work:
        run_all(sgan, work, args)


def run_all(sgan: Callable[..., dict], work: Path, args: argparse.Namespace) -> None:
    """Every (case, seed) not yet in WORK/results.jsonl, then the table."""
    clf = work / "digits-classifier.safetensors"
    if not clf.exists():
        quick = ["--epochs", "1", "--limit", "300"] if args.smoke else []
        sgan("classifier", "digits", *quick, "--out", str(clf), "--force")
    results_file = work / "results.jsonl"
    done = (
        {(r["case"], r["seed"], r["steps"]) for r in map(json.loads, results_file.read_text().splitlines())}
        if results_file.exists()
        else set()
    )
    for name in args.cases:
        for seed in args.seeds:
            if (name, seed, args.steps) in done:
                continue
            print(f"=== {name} seed {seed}", file=sys.stderr, flush=True)
            target = ("--atoms", "16", "--alpha", "0.5") if args.smoke else ("--sparsity", "0.1")
            row = run_case(sgan, work, name, seed, args.steps, clf, args.samples, target)
            with open(results_file, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    rows = [
        r
        for r in map(json.loads, results_file.read_text().splitlines())
        if r["steps"] == args.steps and r["case"] in args.cases
    ]
    table = []
    print(
        f"{'case':24} {'n':>2} {'FID':>12} {'support (samples)':>18} "
        f"{'dict':>6} {'λ':>7} {'modes':>5} {'KL':>6} {'bg':>5} {'train s':>8}"
    )
    for name in args.cases:
        rs = [r for r in rows if r["case"] == name]
        if not rs:
            continue
        fids = [r["fid"] for r in rs]
        mean = statistics.fmean
        entry = {"case": name, "n": len(rs), "fid": mean(fids), "fid_std": statistics.pstdev(fids),
                 "support": mean(r["support_samples"] for r in rs), "dict_support": rs[0]["dict_support"],
                 "modes": mean(r["modes"] for r in rs), "modes_kl": mean(r["modes_kl"] for r in rs),
                 "lambda": rs[0]["lambda"], "train_s": mean(r["train_s"] for r in rs),
                 "background": mean(r.get("background", float("nan")) for r in rs)}  # fmt: skip
        table.append(entry)
        lam = f"{entry['lambda']:.3g}" if entry["lambda"] is not None else "—"
        print(
            f"{name:24} {len(rs):>2} {entry['fid']:>7.1f} ±{entry['fid_std']:>4.1f} "
            f"{entry['support']:>18.3f} {entry['dict_support']:>6.3f} {lam:>7} {entry['modes']:>5.1f} "
            f"{entry['modes_kl']:>6.3f} {entry['background']:>5.1f} {entry['train_s']:>8.0f}"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        machine = {"cpu": platform.processor() or platform.machine(), "load": os.getloadavg()}
        args.out.write_text(json.dumps({"machine": machine, "table": table, "runs": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
