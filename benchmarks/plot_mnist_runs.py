"""Curves and a table of MNIST runs: sgan runs (train.eval_every) beside plain-loop references.

Reads each sgan run's ``metrics.jsonl`` (the evaluation lines: ``fid``, ``inception``,
``precision``, ``recall``, ``modes``) and each ``benchmarks/reference_goyal.py`` output folder's
``metrics.jsonl`` (``scores.metrics``), draws FID, IS and recall against generator iterations in
one figure, and prints a Markdown table (last and best FID, IS mean and max over the evaluations,
precision and recall at the end)::

    python benchmarks/plot_mnist_runs.py --sgan runs/dcgan-s0 --reference results/reference/gan-s0 \
        --out docs/results/mnist-curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sgan", type=Path, nargs="*", default=[], help="sgan run folders (train.eval_every)")
    ap.add_argument("--reference", type=Path, nargs="*", default=[], help="reference_goyal.py output folders")
    ap.add_argument("--out", type=Path, default=None, help="write the curves here (PNG)")
    args = ap.parse_args()
    runs = {f"sgan {p.name}": sgan_evals(p) for p in args.sgan}
    runs |= {f"plain loop {p.name}": reference_evals(p) for p in args.reference}
    print(table(runs))
    if args.out is not None:
        plot(runs, args.out)


if __name__ == "__main__":
    main()
