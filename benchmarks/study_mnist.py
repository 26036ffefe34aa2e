"""The sparse-vs-dense study on real MNIST (mnist-5k), one command, resumable.

Every run goes through the public CLI, as a user's shell script would: ``sgan classifier``
and ``sgan learn-dict`` once, then per (objective, method, seed) ``sgan train`` →
``sgan sample`` → ``sgan score`` with the mnist-5k classifier. Each finished run appends one
JSON line to ``WORK/results.jsonl``; a run already there is skipped, so the study can be
run in pieces (``--seeds 0`` today, ``--seeds 1 2`` tomorrow) without losing anything.
``--summary`` (also printed after every invocation) writes the mean ± std table to
``WORK/summary.md`` and the figures to ``docs/study/``.

    python benchmarks/study_mnist.py                       # everything (about 3 h on 2 quiet cores)
    python benchmarks/study_mnist.py --seeds 0 --methods dense whole-controller
    python benchmarks/study_mnist.py --summary             # table and figures only
    python benchmarks/study_mnist.py --smoke               # seconds: 1 method, 4 steps, stand-in MNIST, temp folder

Methods (equal generator steps, batch, critic and latent size; see docs/results.md):
  dense              dense WGAN-GP, MLP generator (z → 784 pixels, tanh)
  whole-CONTROL      the same MLP emitting 784 codes over a square whole-image dictionary (Ganz & Blau, Sparse GAN),
                     CONTROL = fixed | learn | topk | controller: how the codes are made sparse (model.sparsity)
  patch-CONTROL      DCGAN generator emitting 100 code maps over a 3×3 patch dictionary (Mahdizadehaghdam et al. 2019)
  patch-recon        patch generator (default control) + the reconstructor (Mahdizadehaghdam et al. 2019, Algorithm 1)
  whole-vae          whole-image generator (default control) + the VAE encoder (Ganz & Blau, Sparse GAN)
  whole-k392, whole-k1568   under- and over-complete whole-image dictionaries (Ganz & Blau's comparison;
                     whole-controller… with the default control is the square K = 784)
  stacked-dense, stacked-patch, stacked-patch-recon   stacked MNIST (three digits as RGB channels,
                     1,000 modes): modes covered and KL to uniform, per-channel classifier

Sizes: the defaults (700 generator steps, 2,000 samples, 3 seeds, 16 methods: 48 runs) were
sized from the previous study's timings for about 3 hours on 2 quiet cores. The README's
table was made with less, to fit one working session on 2 shared cores (about 2 h 20 min
with other work beside it): 500 steps, every method for seed 0, then seeds 1 and 2 for the
main comparisons, method by method:

    python benchmarks/study_mnist.py --steps 500 --seeds 0
    for m in dense patch-topk patch-recon stacked-dense stacked-patch stacked-patch-recon whole-topk patch-fixed; do
        python benchmarks/study_mnist.py --steps 500 --seeds 1 2 --methods $m; done

``--smoke`` runs whole-topk (or the ``--methods`` given) end to end at 4
steps with 200 samples and a one-epoch classifier, the commands in this process, on stand-in
MNIST images (digits upscaled to 28×28; or ``--mnist-root``), in a temporary folder (or the
``--work`` given, whose ``docs/`` then gets the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402

# the same critic (MLP), latent size, batch and steps for every method; generator bodies:
# an MLP for pixels or whole-image codes (identical parameter counts), a DCGAN body for
# patch code maps (a convolutional generator is what patch codes need)
COMMON = [
    "--set", "model.z_dim=64", "--set", "model.critic_arch=mlp", "--set", "model.d_width=256",
    "--set", "model.e_width=256", "--set", "train.batch_size=64", "--set", "train.log_every=25",
    "--set", "train.grid_every=500", "--set", "train.save_every=500",
]  # fmt: skip
WHOLE = ["--arch", "mlp", "--set", "model.g_width=256", "--dict", "{whole}"]
PATCH = ["--arch", "dcgan", "--set", "model.g_width=64", "--dict", "{patch}"]
CONTROLS = ("fixed", "learn", "topk", "controller")
METHODS: dict[str, list[str]] = {
    "dense": ["--arch", "mlp", "--set", "model.g_width=256"],
    **{f"whole-{c}": [*WHOLE, "--set", f"model.sparsity={c}"] for c in CONTROLS},
    **{f"patch-{c}": [*PATCH, "--set", f"model.sparsity={c}"] for c in CONTROLS},
    "patch-recon": [*PATCH, "--recon"],
    "whole-vae": [*WHOLE, "--recon", "vae"],
    "whole-k392": ["--arch", "mlp", "--set", "model.g_width=256", "--dict", "{whole392}"],
    "whole-k1568": ["--arch", "mlp", "--set", "model.g_width=256", "--dict", "{whole1568}"],
    "stacked-dense": ["--arch", "mlp", "--set", "model.g_width=256"],
    "stacked-patch": ["--arch", "dcgan", "--set", "model.g_width=64", "--dict", "{stacked}"],
    "stacked-patch-recon": ["--arch", "dcgan", "--set", "model.g_width=64", "--dict", "{stacked}", "--recon"],
}
METRICS = ["fid", "kid", "inception", "modes", "pr"]
STACKED_METRICS = ["modes"]  # the 1-channel classifier reads each channel: modes of 1,000
SMOKE_METHODS = ["whole-topk"]  # a dictionary, the reference statistics, every metric
IN_PROCESS = False  # --smoke: the commands run in this process (one torch import for all of them)


def sgan(*args: str) -> dict:
    """Run one sgan command (:func:`harness.sgan`: the same interpreter, from the checkout), return its JSON."""
    return harness.sgan(*args, in_process=IN_PROCESS, cwd=ROOT)


def setup(
    work: Path,
    root: Path,
    limit: int | None,
    dict_samples: int | None,
    smoke: bool = False,
    methods: list[str] | None = None,
) -> dict[str, Path]:
    """Classifier, the dictionaries ``methods`` use (default: all) and the reference
    statistics, made once and reused."""
    paths = {
        "classifier": work / "classifier.safetensors",
        "whole": work / "dict-whole.safetensors",
        "whole392": work / "dict-whole392.safetensors",
        "whole1568": work / "dict-whole1568.safetensors",
        "patch": work / "dict-patch.safetensors",
        "stacked": work / "dict-stacked.safetensors",
        "stats": work / "ref-stats.safetensors",
    }
    methods = list(METHODS) if methods is None else methods
    used = {a[1:-1] for m in methods for a in METHODS[m] if a.startswith("{")}  # the "{whole}" … placeholders
    data = ["--data-root", str(root), *(["--limit", str(limit)] if limit else [])]
    few = ["--max-samples", str(dict_samples)] if dict_samples else []
    if not paths["classifier"].exists():
        sgan("classifier", "mnist", *data, *(["--epochs", "1"] if smoke else []), "--out", str(paths["classifier"]))
    target = ["--sparsity", "0.1"]
    if smoke:  # a tenth of a pass at a fixed α for whole images (the α search is what takes minutes)
        target = ["--alpha", "1.0", "--set", "dict.solver=online", "--set", "dict.passes=0.1"]
    for name, atoms in (("whole", None), ("whole392", 392), ("whole1568", 1568)):
        if name in used and not paths[name].exists():
            sgan(
                "learn-dict",
                "mnist",
                *data,
                *few,
                *target,
                *(["--atoms", str(atoms)] if atoms else []),
                "--out",
                str(paths[name]),
            )
    if "patch" in used and not paths["patch"].exists():
        sgan("learn-dict", "mnist", *data, *few, "--patch", "3", "--atoms", "100", "--out", str(paths["patch"]))
    if "stacked" in used and not paths["stacked"].exists():
        sgan(
            "learn-dict", "stacked-mnist", *data, *few, "--patch", "3", "--atoms", "100", "--out", str(paths["stacked"])
        )
    if any(not m.startswith("stacked-") for m in methods) and not paths["stats"].exists():
        sgan(
            "score",
            "--ref",
            "mnist",
            *data,
            "--features",
            f"classifier:{paths['classifier']}",
            "--save-stats",
            str(paths["stats"]),
        )
    return paths


def done_keys(results: Path) -> set[str]:
    if not results.exists():
        return set()
    return {json.loads(line)["key"] for line in results.read_text().splitlines() if line.strip()}


def run_one(
    work: Path,
    root: Path,
    paths: dict[str, Path],
    objective: str,
    method: str,
    seed: int,
    steps: int,
    n_samples: int,
    limit: int | None,
) -> dict:
    """train → sample → score one (objective, method, seed); returns the result row."""
    run = work / "runs" / objective / method / f"seed{seed}"
    args = [a.format(**{k: str(v) for k, v in paths.items()}) for a in METHODS[method]]
    stacked = method.startswith("stacked-")
    t0 = time.perf_counter()
    finished = run / "trained.json"  # a run trained before an interruption is not trained again
    if finished.exists():
        trained = json.loads(finished.read_text())
        t_train = float(trained["seconds"])
    else:
        trained = sgan(
            "train", "--gan", objective, "--data", "stacked-mnist" if stacked else "mnist", "--data-root", str(root),
            *(["--limit", str(limit)] if limit else []), "--steps", str(steps),
            "--seed", str(seed), "--out", str(run), "--force", *COMMON, *args,
        )  # fmt: skip
        t_train = time.perf_counter() - t0
        finished.write_text(json.dumps(trained))
    samples = run / "samples"
    sampled = sgan(
        "sample",
        str(run),
        "-n",
        str(n_samples),
        "--seed",
        str(1000 + seed),
        "--no-png",
        "--out",
        str(samples),
        "--force",
    )
    metrics = list(STACKED_METRICS if stacked else METRICS) + (["sparsity"] if "--dict" in args else [])
    ref = [] if stacked else ["--ref", str(paths["stats"])]
    scored = sgan(
        "score",
        str(samples / "samples.safetensors"),
        *sum((["--metric", m] for m in metrics), []),
        *ref,
        "--features",
        f"classifier:{paths['classifier']}",
    )
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {
        "key": f"{objective}/{method}/seed{seed}",
        "objective": objective,
        "method": method,
        "seed": seed,
        "steps": steps,
        "n_samples": n_samples,
        "train_s": t_train,
        "train": trained,
        "sample_support": sampled.get("support_fraction"),
        "score": scored,
        "support_curve": [e.get("support") for e in log],
        "support_target": next((e["support_target"] for e in reversed(log) if "support_target" in e), None),
        "lambda_curve": [e.get("lambda") for e in log],
        "log_steps": [e["step"] for e in log],
        "run": str(run.relative_to(work)),
    }


def _metric(row: dict, name: str) -> float | None:
    """A scalar from a score JSON: plain numbers, or the 'mean'/'value' of a structured entry."""
    v = row["score"]["metrics"].get(name)
    if isinstance(v, dict):
        for key in ("value", "mean", "fraction", "classes_covered"):
            if isinstance(v.get(key), (int, float)):
                return float(v[key])
        return None
    return float(v) if isinstance(v, (int, float)) else None


def summary(work: Path, docs: Path) -> str:
    """Mean ± std per (objective, method) over seeds, beside the real-data ceiling; figures."""
    results = work / "results.jsonl"
    if not results.exists():
        return "no results yet"
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["objective"], r["method"]), []).append(r)
    names = ["fid", "kid", "inception", "modes", "modes_kl", "precision", "recall", "sparsity"]
    lines = ["| objective | method | seeds | " + " | ".join(names) + " | train s |", "|" + "---|" * (len(names) + 4)]

    def fmt(vals: list[float]) -> str:
        if not vals:
            return "—"
        if len(vals) == 1:
            return f"{vals[0]:.4g}"
        return f"{statistics.mean(vals):.4g} ± {statistics.stdev(vals):.2g}"

    for (obj, method), rs in sorted(
        groups.items(),
        key=lambda kv: (kv[0][0], list(METHODS).index(kv[0][1]) if kv[0][1] in METHODS else len(METHODS), kv[0][1]),
    ):
        cells = [fmt([v for v in (_metric(r, n) for r in rs) if v is not None]) for n in names]
        lines.append(
            f"| {obj} | {method} | {len(rs)} | "
            + " | ".join(cells)
            + f" | {statistics.mean(r['train_s'] for r in rs):.0f} |"
        )
    # the real-data scores, from the latest run that has them (stacked runs score modes only)
    ceiling = next((r["score"]["ceiling"] for r in reversed(rows) if r["score"].get("ceiling")), {})
    if ceiling:
        cells = []
        for n in names:
            v = ceiling.get(n)
            if isinstance(v, dict):
                v = next(
                    (
                        v[k]
                        for k in ("value", "mean", "fraction", "classes_covered")
                        if isinstance(v.get(k), (int, float))
                    ),
                    None,
                )
            cells.append(f"{v:.4g}" if isinstance(v, (int, float)) else "—")
        lines.append("| real data | (ceiling) | — | " + " | ".join(cells) + " | — |")
    table = "\n".join(lines)
    (work / "summary.md").write_text(table + "\n")
    docs.mkdir(parents=True, exist_ok=True)
    for (obj, method), rs in groups.items():
        first = min(rs, key=lambda r: r["seed"])
        grid = work / first["run"] / "samples" / "grid.png"
        if grid.exists():
            shutil.copyfile(grid, docs / f"{obj}-{method}.png")
    for name in ("whole", "whole392", "whole1568", "patch", "stacked"):
        atoms = work / f"dict-{name}_atoms.png"
        if atoms.exists():
            shutil.copyfile(atoms, docs / f"atoms-{name}.png")
    plot_support(groups, docs / "support.png", dictionary_levels(work))
    return table


def dictionary_levels(work: Path) -> dict[str, float]:
    """The support fraction of exact lasso codes of held-out real images, per dictionary of
    the mnist generators in the support figure (whole-image and patch)."""
    if str(ROOT) not in sys.path:  # run from a checkout without an install, as the CLI calls are
        sys.path.insert(0, str(ROOT))
    from sgan_cli.contracts import load_dictionary

    levels = {}
    for name in ("whole", "patch"):
        path = work / f"dict-{name}.safetensors"
        if path.exists():
            levels[name] = load_dictionary(path).achieved_sparsity
    return levels


def plot_support(groups: dict[tuple[str, str], list[dict]], path: Path, levels: dict[str, float]) -> None:
    """Support fraction of the generator's codes over training (seed 0 of each sparse method),
    with the dictionaries' own level on real images as dashed lines; drawn with Pillow."""
    from PIL import Image, ImageDraw

    curves = {}
    for (obj, method), rs in groups.items():
        if method.startswith("stacked-") or method.startswith("whole-k"):
            continue  # one figure for the mnist generators at their default dictionaries
        first = min(rs, key=lambda r: r["seed"])
        ys = [y for y in first["support_curve"] if y is not None]
        if ys:
            curves[f"{obj} {method}"] = (ys, first["train"].get("steps", first["steps"]))
    if not curves:
        return
    W, H, m = 720, 420, 50
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([m, 10, W - 10, H - m], outline="black")
    for i in range(6):  # y grid 0 … 1
        y = H - m - i * (H - m - 10) / 5
        d.line([m, y, W - 10, y], fill=(220, 220, 220))
        d.text((5, y - 6), f"{i / 5:.1f}", fill="black")
    steps = max(n for _, n in curves.values())
    for i in range(5):  # x ticks
        x = m + (W - 10 - m) * i / 4
        d.line([x, H - m, x, H - m + 4], fill="black")
        d.text((x - 12, H - m + 8), f"{steps * i // 4}", fill="black")
    d.text((W // 2 - 40, H - 22), "generator step", fill="black")
    for name, level in levels.items():  # dashed: what exact lasso codes of real images use
        y = H - m - level * (H - m - 10)
        for x0 in range(m, W - 10, 12):
            d.line([x0, y, min(x0 + 6, W - 10), y], fill=(120, 120, 120))
        d.text((W - 250, y - 13), f"{name} dictionary on real images: {level:.3f}", fill=(90, 90, 90))
    colours = [
        (31, 119, 180),
        (214, 39, 40),
        (44, 160, 44),
        (148, 103, 189),
        (255, 127, 14),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ]
    for k, (label, (ys, _)) in enumerate(sorted(curves.items())):
        pts = [(m + (W - 10 - m) * (i + 1) / len(ys), H - m - y * (H - m - 10)) for i, y in enumerate(ys)]
        c = colours[k % len(colours)]
        if len(pts) > 1:
            d.line(pts, fill=c, width=2)
        d.text((m + 10, 15 + 14 * k), f"support: {label}", fill=c)
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--mnist-root", type=Path, default=None, help="MNIST root (default ../shared/data/mnist-5k; --smoke: stand-ins)"
    )
    ap.add_argument("--work", type=Path, default=None, help="default benchmarks/results/study (--smoke: a temp folder)")
    ap.add_argument("--docs", type=Path, default=None, help="figures (default docs/study; --smoke: WORK/docs)")
    ap.add_argument("--objectives", nargs="+", default=["wgan-gp"], choices=["gan", "wgan", "wgan-gp", "hinge"])
    ap.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), help="default: all")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=700, help="generator steps per run")
    ap.add_argument("--samples", type=int, default=2000, help="samples scored per run")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N training images (smoke runs)")
    ap.add_argument("--dict-samples", type=int, default=None, help="learn-dict --max-samples (smoke runs)")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: whole-topk (unless --methods) at 4 steps, 200 samples, 300 stand-in "
        "images, seed 0, in this process and a temp folder: shows the study runs end to end",
    )
    ap.add_argument("--summary", action="store_true", help="only rebuild the table and figures")
    args = ap.parse_args()
    if not args.smoke:
        # absolute: the commands run in the checkout (harness.sgan's cwd)
        args.mnist_root = (args.mnist_root or ROOT.parent / "shared" / "data" / "mnist-5k").resolve()
        args.work = (args.work or HERE / "results" / "study").resolve()
        args.methods = args.methods or list(METHODS)
        run_study(args)
        return
    global IN_PROCESS
    IN_PROCESS = True
    args.steps, args.samples, args.limit, args.dict_samples, args.seeds = 4, 200, 300, 2000, [0]
    args.methods = args.methods or SMOKE_METHODS
    COMMON.extend(["--set", "train.log_every=4", "--set", "train.batch_size=8"])  # one log line: one curves.png
    COMMON.extend(["--set", "model.d_width=32", "--set", "model.e_width=32"])
    with harness.work_folder(args.work, "study-mnist") as work:
        args.work = work
        args.docs = args.docs or work / "docs"  # a smoke run never replaces the study's figures
        args.mnist_root = args.mnist_root or harness.stand_in_mnist(work / "mnist", n_train=300, n_test=100)
        run_study(args)


def run_study(args: argparse.Namespace) -> None:
    """Every (objective, seed, method) not yet in WORK/results.jsonl, then the summary."""
    args.docs = args.docs or ROOT / "docs" / "study"
    args.work.mkdir(parents=True, exist_ok=True)
    results = args.work / "results.jsonl"
    if not args.summary:
        machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
        paths = setup(args.work, args.mnist_root, args.limit, args.dict_samples, args.smoke, args.methods)
        for objective in args.objectives:
            for seed in args.seeds:
                for method in args.methods:
                    key = f"{objective}/{method}/seed{seed}"
                    if key in done_keys(results):
                        print(f"skip {key} (in {results})")
                        continue
                    row = run_one(
                        args.work, args.mnist_root, paths, objective, method, seed, args.steps, args.samples, args.limit
                    )
                    row["machine"] = machine
                    with open(results, "a") as fh:  # one line per finished run: nothing lost if stopped
                        fh.write(json.dumps(row) + "\n")
                    print(f"done {key}: train {row['train_s']:.0f} s", flush=True)
    print(summary(args.work, args.docs))


if __name__ == "__main__":
    main()
