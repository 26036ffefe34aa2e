"""Does bf16 mixed precision keep the losses in distribution? fp32 and bf16 runs side by side.

``sgan train --precision bf16`` runs the forward passes in bfloat16 (fp32 weights, optimiser
states and losses). Its runs cannot equal fp32's step for step — a GAN amplifies any rounding
difference — so the check is statistical: the README demo's training (digits, WGAN-GP +
reconstructor, 300 steps) for several seeds in each precision, through the public library
(``sgan_cli.train``, ``sample``, ``score``: what ``sgan train``, ``sample`` and ``score`` run),
then per run the mean of every logged loss over the last third of training and the sample
scores (FID, IS, modes against the digits classifier, made once by ``sgan classifier``). A
quantity is "in distribution" when the two precisions' means differ by less than two standard
errors of their difference.

    python benchmarks/bench_precision.py                 # 3 seeds × {fp32, bf16}, about 5 min on 2 cores
    python benchmarks/bench_precision.py --seeds 0 1 2 3 4 --steps 300
    python benchmarks/bench_precision.py --smoke         # seconds: 2 seeds × 4 steps, 100 samples, in a temp folder

Prints the table docs/benchmarks.md quotes and writes benchmarks/results/precision.json (``--out``)
with the runs under ``--work`` (default benchmarks/results/precision/); ``--smoke`` works in a
temporary folder (or the ``--work`` given) and writes no results unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402

import sgan_cli  # noqa: E402

LOSSES = ("loss_d", "loss_g", "gp", "l1", "recon_e", "recon_g", "support")
SCORES = ("fid", "inception", "modes_kl")


def setup(work: Path, smoke: bool = False) -> dict[str, Path]:
    """The demo's dictionary (``sgan learn-dict digits --sparsity 0.1``) and digits classifier
    (``sgan classifier digits``) in ``work``, made once and reused."""
    paths = {"dict": work / "dictionary.safetensors", "classifier": work / "digits-classifier.safetensors"}
    if not paths["dict"].exists():
        learned = sgan_cli.learn_dictionary("digits", atoms=16, alpha=0.5) if smoke else None
        (learned or sgan_cli.learn_dictionary("digits", sparsity=0.1)).save(paths["dict"])
    if not paths["classifier"].exists():
        epochs = ["--epochs", "1", "--limit", "300"] if smoke else []
        harness.sgan("classifier", "digits", *epochs, "--out", str(paths["classifier"]), in_process=smoke)
    return paths


def run_one(
    work: Path,
    paths: dict[str, Path],
    precision: str,
    seed: int,
    steps: int,
    n_samples: int = 1000,
    log_every: int = 10,
) -> dict:
    """Train, sample and score one (precision, seed), as ``sgan train --gan wgan-gp --recon
    --dict DICT --data digits``, ``sgan sample -n N --seed 1000+seed`` and ``sgan score -m fid
    -m inception -m modes --ref digits`` would: the mean of each logged loss over the last
    third of training, the sample scores and the training seconds."""
    run = work / "runs" / precision / f"seed{seed}"
    cfg = sgan_cli.SganConfig()
    cfg.data.name, cfg.gan.objective, cfg.recon.mode = "digits", "wgan-gp", "latent"
    cfg.train.steps, cfg.train.seed, cfg.train.precision, cfg.train.log_every = steps, seed, precision, log_every
    trained = sgan_cli.train(cfg, run, dictionary=paths["dict"], force=True)
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    tail = [e for e in log if e["step"] > steps * 2 // 3]
    row: dict = {"precision": trained.precision, "seed": seed, "train_s": trained.seconds}
    for k in LOSSES:
        row[k] = statistics.fmean(e[k] for e in tail)
    images = sgan_cli.sample(run, n_samples, seed=1000 + seed)
    scored = sgan_cli.score(
        images, "digits", metrics=["fid", "inception", "modes"], features=f"classifier:{paths['classifier']}"
    )
    for k in SCORES:
        row[k] = float(scored[k])
    print(json.dumps(row), flush=True)
    return row


def compare(rows: list[dict]) -> list[dict]:
    """Per quantity: mean ± std in each precision and |Δ| / (standard error of Δ)."""
    out = []
    for k in (*LOSSES, *SCORES, "train_s"):
        a = [r[k] for r in rows if r["precision"] == "fp32"]
        b = [r[k] for r in rows if r["precision"] == "bf16"]
        sa, sb = statistics.stdev(a), statistics.stdev(b)
        se = math.sqrt(sa**2 / len(a) + sb**2 / len(b))
        z = abs(statistics.fmean(b) - statistics.fmean(a)) / se if se > 0 else float("inf")
        out.append({"quantity": k, "fp32": (statistics.fmean(a), sa), "bf16": (statistics.fmean(b), sb), "z": z})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--samples", type=int, default=1000, help="samples scored per run")
    ap.add_argument("--work", type=Path, default=None, help="runs, dictionary, classifier (default results/precision)")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default results/precision.json)")
    ap.add_argument("--smoke", action="store_true", help="seconds: seeds 0 1, 4 steps, 100 samples (checks the script)")
    args = ap.parse_args()
    if len(args.seeds) < 2:
        raise SystemExit("need at least two seeds to estimate the spread")
    log_every = 10
    if args.smoke:
        args.seeds, args.steps, args.samples, log_every = args.seeds[:2], 4, 100, 1
    else:
        args.work = args.work or HERE / "results" / "precision"
        args.out = args.out or HERE / "results" / "precision.json"
    with harness.work_folder(args.work, "bench-precision") as work:
        paths = setup(work, args.smoke)
        rows = [
            run_one(work, paths, p, s, args.steps, args.samples, log_every)
            for s in args.seeds
            for p in ("fp32", "bf16")
        ]
    if any(r["precision"] != "bf16" for r in rows[1::2]):
        raise SystemExit("bf16 did not run (precision fell back to fp32)")
    table = compare(rows)
    print(f"\n{'quantity':<10} {'fp32 mean ± std':>20} {'bf16 mean ± std':>20} {'|Δ|/se':>7}")
    for t in table:
        print(
            f"{t['quantity']:<10} {t['fp32'][0]:>11.4g} ± {t['fp32'][1]:<7.2g} "
            f"{t['bf16'][0]:>11.4g} ± {t['bf16'][1]:<7.2g} {t['z']:>7.2f}"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"seeds": args.seeds, "steps": args.steps, "rows": rows, "comparison": table}, indent=2)
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
