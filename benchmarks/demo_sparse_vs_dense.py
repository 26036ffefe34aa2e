"""The README demo's training, sparse against dense, scored with the demo's digits classifier.

The quick start's ``sgan train --gan wgan-gp --recon`` (digits, 300 steps, today's defaults) for
seeds 0–2, over the demo's dictionary (sparse) and without one (``--dict none``: dense), then
``sgan sample -n 1000`` and ``sgan score -m fid -m inception -m modes`` (``-m sparsity`` for the
sparse runs) against digits with the demo's classifier: the same commands as the quick start,
each in a fresh process. Run it after the README quick start, in the folder holding its
``dictionary.safetensors`` and ``digits-classifier.safetensors`` (``--dict``, ``--classifier``).
Prints one line per run: generator, seed, FID, IS, KL to uniform, support, train seconds; keeps
the runs, samples and each command's JSON in ``--out``.

    python benchmarks/demo_sparse_vs_dense.py      # after the quick start (about 4 min on 2 cores)
    python benchmarks/demo_sparse_vs_dense.py --smoke   # seconds: seed 0, 4 steps, 100 samples

``--smoke`` makes its own 16-atom dictionary and one-epoch classifier (unless ``--dict`` /
``--classifier`` are given) and runs the commands in this process, in a temporary folder (or
the ``--out`` given).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402


def run(gen: str, seed: int, args: argparse.Namespace) -> str:
    """train → sample → score one (generator, seed) into ``args.out``; returns its line."""
    out, in_process = args.out, args.smoke
    dictionary = ["--dict", str(args.dict)] if gen == "sparse" else ["--dict", "none"]
    metrics = ["-m", "fid", "-m", "inception", "-m", "modes"] + (["-m", "sparsity"] if gen == "sparse" else [])
    run_dir, samples = out / f"{gen}-{seed}", out / f"samples-{gen}-{seed}"
    extra = ["--set", f"train.log_every={args.steps}"] if args.smoke else []
    trained = harness.sgan(
        "train", "--gan", "wgan-gp", "--recon", *dictionary, "--data", "digits", "--steps", str(args.steps),
        "--seed", str(seed), "--out", str(run_dir), "--force", *extra, in_process=in_process,
    )  # fmt: skip
    (out / f"{gen}-{seed}-train.json").write_text(json.dumps(trained, indent=2))
    harness.sgan(
        "sample", str(run_dir), "-n", str(args.samples), "--out", str(samples), "--force", in_process=in_process
    )
    scored = harness.sgan(
        "score", str(samples), *metrics, "--ref", "digits", "--features", f"classifier:{args.classifier}",
        in_process=in_process,
    )  # fmt: skip
    (out / f"{gen}-{seed}-score.json").write_text(json.dumps(scored, indent=2))
    m = scored["metrics"]
    return (
        f"{gen} {seed} fid={m['fid']:.2f} is={m['inception']:.3f} kl={m['modes_kl']:.3f} "
        f"support={m.get('sparsity', float('nan')):.4f} train_s={trained['seconds']:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dict", type=Path, default=None, help="the demo's dictionary (default ./dictionary.safetensors)")
    ap.add_argument(
        "--classifier", type=Path, default=None, help="the demo's classifier (default ./digits-classifier.safetensors)"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--samples", type=int, default=1000, help="samples scored per run")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results/demo_sparse_vs_dense")
    ap.add_argument("--smoke", action="store_true", help="seconds: seed 0, 4 steps, 100 samples, a temp folder")
    args = ap.parse_args()
    if not args.smoke:
        args.dict = args.dict or Path("dictionary.safetensors")
        args.classifier = args.classifier or Path("digits-classifier.safetensors")
        missing = [str(p) for p in (args.dict, args.classifier) if not p.is_file()]
        if missing:
            raise SystemExit(
                f"no {' or '.join(missing)}: run the README quick start first, or give --dict/--classifier"
            )
        args.out = args.out or HERE / "results" / "demo_sparse_vs_dense"
        args.out.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            for gen in ("sparse", "dense"):
                print(run(gen, seed, args), flush=True)
        return
    args.seeds, args.steps, args.samples = args.seeds[:1], 4, 100
    with harness.work_folder(args.out, "demo-sparse-vs-dense") as out:
        args.out = out
        if args.dict is None:
            args.dict = out / "dictionary.safetensors"
            harness.sgan(
                "learn-dict", "digits", "--atoms", "16", "--alpha", "0.5", "--out", str(args.dict), in_process=True
            )
        if args.classifier is None:
            args.classifier = out / "digits-classifier.safetensors"
            quick = ["--epochs", "1", "--limit", "300"]
            harness.sgan("classifier", "digits", *quick, "--out", str(args.classifier), in_process=True)
        for seed in args.seeds:
            for gen in ("sparse", "dense"):
                print(run(gen, seed, args), flush=True)


if __name__ == "__main__":
    main()
