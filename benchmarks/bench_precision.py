"""Does bf16 mixed precision keep the losses in distribution? fp32 and bf16 runs side by side.

``sgan train --precision bf16`` runs the forward passes in bfloat16 (fp32 weights, optimiser
states and losses). Its runs cannot equal fp32's step for step — a GAN amplifies any rounding
difference — so the check is statistical: the README demo's training (digits, WGAN-GP +
reconstructor, 300 steps) for several seeds in each precision, through the public CLI, then
per run the mean of every logged loss over the last third of training and the sample
scores (FID, IS, modes against the digits classifier). A quantity is "in distribution" when
the two precisions' means differ by less than two standard errors of their difference.

    python benchmarks/bench_precision.py                 # 3 seeds × {fp32, bf16}, about 5 min on 2 cores
    python benchmarks/bench_precision.py --seeds 0 1 2 3 4 --steps 300

Writes benchmarks/results/precision.json and prints the table the README quotes.
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

from study_mnist import sgan  # noqa: E402 - the CLI runner shared with the study

LOSSES = ("loss_d", "loss_g", "gp", "l1", "recon_e", "recon_g", "support")
SCORES = ("fid", "inception", "modes_kl")


def setup(work: Path) -> dict[str, Path]:
    paths = {"dict": work / "dictionary.safetensors", "classifier": work / "digits-classifier.safetensors"}
    if not paths["dict"].exists():
        sgan("learn-dict", "digits", "--sparsity", "0.1", "--out", str(paths["dict"]))
    if not paths["classifier"].exists():
        sgan("classifier", "digits", "--out", str(paths["classifier"]))
    return paths


def run_one(work: Path, paths: dict[str, Path], precision: str, seed: int, steps: int) -> dict:
    run = work / "runs" / precision / f"seed{seed}"
    trained = sgan(
        "train", "--gan", "wgan-gp", "--recon", "--dict", str(paths["dict"]), "--data", "digits", "--steps", str(steps),
        "--seed", str(seed), "--precision", precision, "--set", "train.log_every=10", "--out", str(run), "--force",
    )  # fmt: skip
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    tail = [e for e in log if e["step"] > steps * 2 // 3]
    row: dict = {"precision": trained["precision"], "seed": seed, "train_s": trained["seconds"]}
    for k in LOSSES:
        row[k] = statistics.fmean(e[k] for e in tail)
    samples = run / "samples"
    sgan("sample", str(run), "-n", "1000", "--seed", str(1000 + seed), "--no-png", "--out", str(samples), "--force")
    scored = sgan(
        "score",
        str(samples / "samples.safetensors"),
        "-m",
        "fid",
        "-m",
        "inception",
        "-m",
        "modes",
        "--ref",
        "digits",
        "--features",
        f"classifier:{paths['classifier']}",
    )
    for k in SCORES:
        row[k] = float(scored["metrics"][k])
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
    ap.add_argument("--work", type=Path, default=HERE / "results" / "precision")
    args = ap.parse_args()
    if len(args.seeds) < 2:
        raise SystemExit("need at least two seeds to estimate the spread")
    args.work.mkdir(parents=True, exist_ok=True)
    paths = setup(args.work)
    rows = [run_one(args.work, paths, p, s, args.steps) for s in args.seeds for p in ("fp32", "bf16")]
    if any(r["precision"] != "bf16" for r in rows[1::2]):
        raise SystemExit("bf16 did not run (precision fell back to fp32)")
    table = compare(rows)
    print(f"\n{'quantity':<10} {'fp32 mean ± std':>20} {'bf16 mean ± std':>20} {'|Δ|/se':>7}")
    for t in table:
        print(
            f"{t['quantity']:<10} {t['fp32'][0]:>11.4g} ± {t['fp32'][1]:<7.2g} "
            f"{t['bf16'][0]:>11.4g} ± {t['bf16'][1]:<7.2g} {t['z']:>7.2f}"
        )
    out = HERE / "results" / "precision.json"
    out.write_text(json.dumps({"seeds": args.seeds, "steps": args.steps, "rows": rows, "comparison": table}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
