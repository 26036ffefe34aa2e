"""Sample quality per CPU-minute of each architecture: what ``--arch auto`` chooses on a CPU.

For each kind of generator — dense, sparse over a whole-image dictionary, sparse over a 3×3
patch dictionary, and dense under the BCE objective — and each candidate architecture, with
``sgan train``'s defaults otherwise (WGAN-GP, batch 64, z ∈ R⁶⁴, fp32), on MNIST (mnist-5k here): a calibration run of
``--calibrate`` iterations gives the CPU seconds an iteration takes on one thread, then the run
trains to the iterations that fit each ``--budgets`` (CPU-minutes, resumed between them: resume
is bit-exact) and is scored there — FID, IS, precision and recall of ``--samples`` samples
against the training images with an MNIST classifier (``sgan classifier``), as
``train.eval_features`` scores. The x-axis is the CPU time the run really took
(``time.process_time``, scoring excluded), which another job on another core changes little,
unlike wall-clock time.

Each finished (kind, candidate) appends one JSON line to ``WORK/results.jsonl`` and is skipped
when run again; each scored point is also kept in the run's ``budget-curve.jsonl``, so a run
stopped between points continues from its checkpoint. The table (FID at each budget, the best
candidate per kind) is printed at the end and written with every point to
``benchmarks/results/arch_quality.json`` (``--out``; none with ``--smoke`` unless given);
``sgan_cli/auto.py`` records its verdict.

    python benchmarks/bench_arch_quality.py --data-root DATA --classifier mnist-classifier.safetensors \\
        --work bench-arch-quality --budgets 1 2.5 5
    python benchmarks/bench_arch_quality.py --summary --work bench-arch-quality
    python benchmarks/bench_arch_quality.py --smoke   # seconds: stand-in MNIST, tiny budgets, temp folder
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

# kind → candidate → config keys (the dictionary is added by kind)
CANDIDATES: dict[str, dict[str, list[str]]] = {
    "dense": {
        "mlp": ["model.arch=mlp"],
        "goyal": ["model.arch=goyal"],
    },
    "whole": {
        "mlp": ["model.arch=mlp"],
        "mlp + goyal critic": ["model.arch=mlp", "model.critic_arch=goyal"],
        "ganz-blau": ["model.arch=ganz-blau"],
    },
    "patch": {
        "dcgan + mlp critic": ["model.arch=dcgan", "model.critic_arch=mlp"],
        "goyal": ["model.arch=goyal"],
        "goyal + mlp critic": ["model.arch=goyal", "model.critic_arch=mlp"],
    },
    # the BCE objective (one critic step per iteration, as the MNIST recipes train Goyal's nets)
    "dense-gan": {
        "mlp": ["model.arch=mlp", "gan.objective=gan"],
        "goyal": ["model.arch=goyal", "gan.objective=gan"],
    },
}
SMOKE = {"dense": ["mlp"], "patch": ["dcgan + mlp critic"]}


def dictionaries(work: Path, root: str, smoke: bool) -> dict[str, Path | None]:
    """The whole-image (256 atoms) and 3×3 patch dictionaries at 10 % support, learned once."""
    from sgan_cli.config import DataConfig, DictConfig
    from sgan_cli.contracts import save_dictionary
    from sgan_cli.data import load_data
    from sgan_cli.dictionary_job import learn_from_config

    out: dict[str, Path | None] = {"dense": None}
    for kind, cfg in (("whole", DictConfig(atoms=256, sparsity=0.1)), ("patch", DictConfig(patch=3, sparsity=0.1))):
        path = out[kind] = work / f"dict-{kind}.safetensors"
        if not path.exists():
            data = load_data(DataConfig(name="mnist", root=root, download=False, limit=300 if smoke else None))
            if smoke:
                cfg.atoms, cfg.max_samples, cfg.passes = 16, 2000, 1.0
            save_dictionary(path, learn_from_config(data, cfg), {})
    return out


def run_one(args: argparse.Namespace, kind: str, name: str, dictionary: Path | None, evaluator) -> dict:
    from sgan_cli.config import load_config
    from sgan_cli.run_files import load_generator

    out = args.work / "runs" / f"{kind}-{name.replace(' ', '').replace('+', '-')}"
    sets = [*CANDIDATES[kind][name], f"data.root={args.data_root}", "data.download=false", "data.name=mnist"]
    sets += [f"train.seed={args.seed}", "train.log_every=100", "train.grid_every=1000", "train.save_every=1000"]
    if dictionary is not None:
        sets.append(f"train.dict={dictionary}")
    if args.smoke:
        sets += ["data.limit=300", "train.batch_size=8"]
    done = out / "budget-curve.jsonl"
    curve = harness.jsonl_rows(done)
    if curve:
        per_step, cpu, step = curve[-1]["cpu_per_step"], curve[-1]["cpu_s"], curve[-1]["step"]
    else:  # calibration: a first estimate of the CPU seconds of one iteration (start-up included)
        cpu = _segment(load_config(None, [*sets, f"train.steps={args.calibrate}"]), out, resume=False)
        per_step, step = cpu / args.calibrate, args.calibrate
    for budget in args.budgets:
        if any(p["budget_min"] == budget for p in curve):
            continue
        # train until the run has used the budget's CPU time (the estimate per step refined on the way)
        for _ in range(4):
            if cpu >= 0.97 * budget * 60:
                break
            stop = step + max(1, int((budget * 60 - cpu) / per_step))
            seconds = _segment(load_config(None, [*sets, f"train.steps={stop}"]), out, resume=True)
            cpu, per_step, step = cpu + seconds, seconds / (stop - step), stop
        g = load_generator(out)
        scores = evaluator(g.module, g.z_dim)
        point = {"budget_min": budget, "step": step, "cpu_s": round(cpu, 1), "cpu_per_step": round(per_step, 5)}
        point |= {k: round(v, 4) for k, v in scores.items() if k in ("fid", "inception", "precision", "recall")}
        curve.append(point)
        with done.open("a") as f:
            f.write(json.dumps(point) + "\n")
        print(json.dumps({"kind": kind, "candidate": name, **point}), flush=True)
    return {"kind": kind, "candidate": name, "curve": curve, "seed": args.seed, "smoke": args.smoke,
            "cpu": harness.cpu_name(), "threads": torch.get_num_threads(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip


def _segment(cfg, out: Path, resume: bool) -> float:
    """Train ``out`` to ``cfg.train.steps`` (a new run, or resumed); the CPU seconds it took."""
    from sgan_cli.training import run_training

    t0 = time.process_time()
    run_training(cfg, out, resume=resume, force=not resume)
    return time.process_time() - t0


TIE = 0.05  # best FIDs within 5 % of the lowest are a tie, which the one that got there sooner wins


def best_by_kind(rows: list[dict]) -> dict[str, dict]:
    """Per kind, the candidate with the lowest FID reached within the largest budget every
    candidate reached (at any of its points: a run with ``train.eval_every`` keeps its best
    generator in ``best.safetensors``); candidates within :data:`TIE` of it are tied, and the
    tie goes to the one that reached its best in less CPU time (quality per minute)."""
    best: dict[str, dict] = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        runs = [r for r in rows if r["kind"] == kind]
        budget = min(max(p["budget_min"] for p in r["curve"]) for r in runs)
        points = {r["candidate"]: min((p for p in r["curve"] if p["budget_min"] <= budget), key=lambda p: p["fid"])
                  for r in runs}  # fmt: skip
        lowest = min(p["fid"] for p in points.values())
        tied = [name for name, p in points.items() if p["fid"] <= lowest * (1 + TIE)]
        name = min(tied, key=lambda n: points[n]["cpu_s"])
        best[kind] = {"candidate": name, "budget_min": budget, "fid": {n: p["fid"] for n, p in points.items()},
                      "cpu_s": {n: p["cpu_s"] for n, p in points.items()}}  # fmt: skip
    return best


def summary(results: Path) -> str:
    rows = harness.jsonl_rows(results)
    budgets = sorted({p["budget_min"] for r in rows for p in r["curve"]})
    head = " | ".join(f"FID at {b:g} min" for b in budgets)
    out = [f"| kind | candidate | s / iteration | {head} |", "|---|---|---|" + "---|" * len(budgets)]
    for r in rows:
        at = {p["budget_min"]: p for p in r["curve"]}
        cells = " | ".join(f"{at[b]['fid']:.1f} ({at[b]['step']} it)" if b in at else "" for b in budgets)
        out.append(f"| {r['kind']} | {r['candidate']} | {r['curve'][-1]['cpu_per_step']:.3f} | {cells} |")
    best = best_by_kind(rows)
    out += ["", "lowest FID within the budget all reached (ties within 5 % to the sooner): "]
    out[-1] += ", ".join(f"{k}: {b['candidate']} ({b['budget_min']:g} min)" for k, b in best.items())
    return "\n".join(out)


def run(args: argparse.Namespace) -> None:
    from sgan_cli.config import DataConfig
    from sgan_cli.data import load_data
    from sgan_cli.evaluation import make_evaluator

    args.work.mkdir(parents=True, exist_ok=True)
    results = args.work / "results.jsonl"
    if args.summary:
        print(summary(results))
        return
    done = {(r["kind"], r["candidate"]) for r in harness.jsonl_rows(results)}
    dicts = dictionaries(args.work, args.data_root, args.smoke)
    real = load_data(DataConfig(name="mnist", root=args.data_root, download=False, limit=300 if args.smoke else None))
    evaluator = make_evaluator(f"classifier:{args.classifier}", real.images, args.samples, torch.device("cpu"))
    for kind, names in (SMOKE if args.smoke else CANDIDATES).items():
        for name in names:
            if args.kinds and kind not in args.kinds or (kind, name) in done:
                continue
            record = run_one(args, kind, name, dicts[kind.split("-")[0]], evaluator)
            with results.open("a") as f:
                f.write(json.dumps(record) + "\n")
    print(summary(results))
    if args.out is not None:
        rows = harness.jsonl_rows(results)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"best": best_by_kind(rows), "runs": rows}, indent=1))
        print(f"wrote {args.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="default ./bench-arch-quality (--smoke: a temp folder)")
    ap.add_argument("--data-root", default=None, help="folder holding MNIST/raw (e.g. mnist-5k)")
    ap.add_argument("--classifier", default=None, help="an MNIST classifier (sgan classifier)")
    ap.add_argument("--kinds", nargs="*", default=None, choices=list(CANDIDATES), help="default: all")
    ap.add_argument("--budgets", nargs="+", type=float, default=[1.0, 2.5, 5.0], help="CPU-minutes per point")
    ap.add_argument("--calibrate", type=int, default=20, help="iterations of the calibration run")
    ap.add_argument("--samples", type=int, default=2000, help="samples scored per point")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--summary", action="store_true", help="print the table of results.jsonl and exit")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default results/arch_quality.json)")
    ap.add_argument("--smoke", action="store_true", help="seconds: stand-in MNIST, 2 candidates, tiny budgets")
    args = ap.parse_args()
    if not args.smoke:
        args.work = args.work or Path("bench-arch-quality")
        args.out = args.out or Path(__file__).resolve().parent / "results" / "arch_quality.json"
        if not args.summary and (args.data_root is None or args.classifier is None):
            ap.error("--data-root and --classifier are needed to run")
        run(args)
        return
    args.budgets, args.calibrate, args.samples = [0.002, 0.004], 2, 50
    with harness.work_folder(args.work, "bench-arch-quality") as work:
        args.work = work
        root, classifier = harness.smoke_mnist(work, args.data_root, args.classifier)
        args.data_root, args.classifier = str(root), str(classifier)
        run(args)


if __name__ == "__main__":
    main()
