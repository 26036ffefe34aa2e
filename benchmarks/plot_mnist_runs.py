"""Curves and a table of MNIST runs: sgan runs (train.eval_every) beside plain-loop references.

Reads each sgan run's ``metrics.jsonl`` (the evaluation lines: ``fid``, ``inception``,
``precision``, ``recall``, ``modes``) and each ``benchmarks/reference_goyal.py`` output folder's
``metrics.jsonl`` (``scores.metrics``), draws FID, IS and recall against generator iterations in
one figure, and prints a Markdown table (last and best FID, IS mean and max over the evaluations,
precision and recall at the end)::

    python benchmarks/plot_mnist_runs.py --sgan runs/dcgan-s0 --reference results/reference/gan-s0 \
        --out docs/results/mnist-curves.png
    python benchmarks/plot_mnist_runs.py --smoke     # seconds: made-up runs, the figure in a temp folder

``--smoke`` writes one made-up run of each kind (the lines sgan train and reference_goyal.py
write, with made-up scores) into a temporary folder, prints their table and draws the figure
there (or at the ``--out`` given). ``reference_goyal.py --smoke`` reads its own output the
same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

KEYS = ("fid", "inception", "precision", "recall", "modes")


def sgan_evals(run: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{"step": r["step"], **{k: r[k] for k in KEYS if k in r}} for r in rows if "fid" in r]


def reference_evals(run: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{"step": r["step"], **{k: r["scores"]["metrics"][k] for k in KEYS}} for r in rows if "scores" in r]


def table(runs: dict[str, list[dict[str, float]]]) -> str:
    out = ["| run | iterations | FID (last) | FID (best) | IS mean / max | precision | recall | classes |"]
    out.append("|---|---|---|---|---|---|---|---|")
    for name, ev in runs.items():
        if not ev:
            continue
        last = ev[-1]
        is_mean = sum(e["inception"] for e in ev) / len(ev)
        out.append(
            f"| {name} | {last['step']:,.0f} | {last['fid']:.2f} | {min(e['fid'] for e in ev):.2f} "
            f"| {is_mean:.2f} / {max(e['inception'] for e in ev):.2f} | {last['precision']:.2f} "
            f"| {last['recall']:.2f} | {last.get('modes', float('nan')):.0f} |"
        )
    return "\n".join(out)


def plot(runs: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, ev in runs.items():
        steps = [e["step"] for e in ev]
        for ax, key in zip(axes, ("fid", "inception", "recall")):
            ax.plot(steps, [e[key] for e in ev], marker=".", label=name)
    for ax, title in zip(axes, ("FID (classifier features, lower is better)", "Inception Score", "recall")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("generator iterations", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def made_up_runs(folder: Path) -> tuple[Path, Path]:
    """An sgan run folder and a reference_goyal.py output folder, each with a metrics.jsonl of
    three evaluations (made-up scores, the real lines' layout). Returns (sgan run, reference)."""
    run, ref = folder / "sgan-run", folder / "reference-run"
    for path in (run, ref):
        path.mkdir(parents=True, exist_ok=True)
    with open(run / "metrics.jsonl", "w") as f:
        for i, step in enumerate((50, 100, 150)):
            f.write(json.dumps({"step": step - 25, "loss_d": -1.0, "loss_g": 2.0}) + "\n")  # a training line
            scores = {"fid": 30.0 / (i + 1), "inception": 5.0 + i, "precision": 0.5, "recall": 0.1 * i, "modes": 10}
            f.write(json.dumps({"step": step, "loss_d": -1.0, **scores, "inception_std": 0.1, "eval_s": 1.0}) + "\n")
    with open(ref / "metrics.jsonl", "w") as f:
        for i, step in enumerate((50, 100, 150)):
            scores = {"fid": 40.0 / (i + 1), "inception": 4.0 + i, "precision": 0.6, "recall": 0.2, "modes": 9}
            f.write(json.dumps({"step": step, "train_s": 1.0, "loss_d": 1.3, "scores": {"metrics": scores}}) + "\n")
    return run, ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sgan", type=Path, nargs="*", default=[], help="sgan run folders (train.eval_every)")
    ap.add_argument("--reference", type=Path, nargs="*", default=[], help="reference_goyal.py output folders")
    ap.add_argument("--out", type=Path, default=None, help="write the curves here (PNG)")
    ap.add_argument("--smoke", action="store_true", help="seconds: made-up runs and figure in a temp folder")
    args = ap.parse_args()
    if args.smoke:
        with harness.work_folder(None, "plot-mnist-runs") as tmp:
            run, ref = made_up_runs(tmp)
            args.sgan, args.reference = [*args.sgan, run], [*args.reference, ref]
            args.out = args.out or tmp / "curves.png"
            report(args)
            if not args.out.is_file():
                raise SystemExit(f"no figure at {args.out}")
        return
    report(args)


def report(args: argparse.Namespace) -> None:
    """The table of ``args.sgan`` and ``args.reference``, and the figure at ``args.out`` (if given)."""
    runs = {f"sgan {p.name}": sgan_evals(p) for p in args.sgan}
    runs |= {f"plain loop {p.name}": reference_evals(p) for p in args.reference}
    print(table(runs))
    if args.out is not None:
        plot(runs, args.out)


if __name__ == "__main__":
    main()
