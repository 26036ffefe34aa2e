"""The stacked-MNIST mode-collapse study (Unrolled GAN / PacGAN setting), resumable.

PacGAN's (Lin et al. 2018) Table 3 setting with its ¼ critic (recipes/stacked-mnist-quarter.yaml:
tiny nets, BCE, batch 128, z ∈ R²⁵⁶): modes covered out of 1,000 and KL to uniform over
``--samples`` generated images, each channel read by an MNIST classifier (``--classifier``),
as ``sgan score -m modes --features classifier:FILE`` scores stacked images. Every method
runs the same generator steps; modes are also measured at each ``--eval-at`` step on the way
(the run is resumed between them: resume is bit-exact, so the staging does not change it).
Each finished (method, seed) appends one JSON line to ``WORK/results.jsonl``; a pair already
there is skipped, so the study runs in pieces and continues in later sessions.

    python benchmarks/study_stacked.py --data-root DATA --classifier mnist-classifier.safetensors --seeds 0
    python benchmarks/study_stacked.py ... --seeds 1 2 3 4 --methods dense dense-pac2
    python benchmarks/study_stacked.py --summary --work WORK
    python benchmarks/study_stacked.py --smoke             # seconds: 1 method, 2 steps, stand-in MNIST, temp folder

Methods (¼ critic: 2-4-8 channels):
  dense            PacGAN's DCGAN baseline (recipes/stacked-mnist-quarter.yaml)
  dense-recon      + the reconstructor (Mahdizadehaghdam, Panahi, Krim, Sparse Generative
                   Adversarial Network, ICCV Workshops 2019: Algorithm 1); E is the critic's tiny
                   convs at width 8 (8-16-32): the default e_width 64 costs more than the rest
  dense-pac2       + packing, m = 2 (PacDCGAN2)
  patch            the tiny generator emitting 100 code maps over a 3×3×3 patch dictionary
                   learned on stacked MNIST (sparse, top-k), same critic
  patch-recon      patch + the reconstructor
  patch-recon-pac2 patch + reconstructor + packing (the combination)

PacGAN's published Table 3 (¼ critic): DCGAN 30.6 ± 20.7 modes (KL 5.99), PacDCGAN2 484.5
(KL 2.61), PacDCGAN4 667.4 (KL 1.81).

``--smoke`` runs patch-recon-pac2 (or the ``--methods`` given) for 2 steps on 300
images, scored at step 1 and 2 on 50 samples, in a temporary folder (or the ``--work``
given); without ``--data-root`` on stand-in MNIST images (digits upscaled to 28×28), without
``--classifier`` with a one-epoch classifier of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "stacked-mnist-quarter.yaml"
PATCH = ["train.dict={patch}"]
METHODS: dict[str, list[str]] = {
    "dense": [],
    "dense-recon": ["recon.mode=latent", "model.e_width=8"],
    "dense-pac2": ["model.pack=2"],
    "patch": PATCH,
    "patch-recon": [*PATCH, "recon.mode=latent", "model.e_width=8"],
    "patch-recon-pac2": [*PATCH, "recon.mode=latent", "model.e_width=8", "model.pack=2"],
}
SMOKE_METHODS = ["patch-recon-pac2"]  # the dictionary, the reconstructor and packing at once


def patch_dictionary(work: Path, root: str, smoke: bool) -> Path:
    """A 100-atom 3×3×3 patch dictionary learned on stacked MNIST (once per study)."""
    from sgan_cli.config import DataConfig, DictConfig
    from sgan_cli.contracts import save_dictionary
    from sgan_cli.data import load_data
    from sgan_cli.dictionary_job import learn_from_config

    path = work / "dict-stacked-patch.safetensors"
    if not path.exists():
        data = load_data(DataConfig(name="stacked-mnist", root=root, download=False, limit=200 if smoke else None))
        extra = {"max_samples": 2000, "passes": 1.0} if smoke else {}
        job = learn_from_config(data, DictConfig(patch=3, atoms=100, **extra))
        save_dictionary(path, job, {})
    return path


def mode_scores(run: Path, classifier: str, n: int, seed: int) -> tuple[int, float]:
    """(modes covered of 1,000, KL to uniform) of n samples of the run's generator, drawn as
    PacGAN's evaluation draws them: the generator in training mode (BatchNorm on each batch's
    own statistics) over batches of 128 latents. ``sgan sample`` uses the running statistics
    instead (eval mode); the two agree once training has settled, not early on."""
    from sgan_cli.features import class_predictions, load_extractor
    from sgan_cli.images import to_uint8
    from sgan_cli.metrics import mode_coverage
    from sgan_cli.run_files import load_generator
    from sgan_cli.sampling import draw_latents

    g = load_generator(run)
    z = draw_latents(seed, 0, n, g.z_dim)
    g.module.train()
    with torch.no_grad():
        images = torch.cat([to_uint8(g.module(z[i : i + 128]).float()) for i in range(0, n, 128)])
    modes, total = class_predictions(load_extractor(f"classifier:{classifier}"), images, 1000, torch.device("cpu"))
    mc = mode_coverage(modes, total)
    return mc.covered, mc.kl


def run_one(args: argparse.Namespace, method: str, seed: int, patch: Path | None) -> dict:
    from sgan_cli.config import load_config
    from sgan_cli.training import run_training

    out = args.work / "runs" / f"{method}-s{seed}"
    sets = [s.format(patch=patch) for s in METHODS[method]]
    sets += [f"data.root={args.data_root}", "data.download=false", f"train.seed={seed}", "train.log_every=100"]
    if args.smoke:
        sets += ["data.limit=300", "train.batch_size=8", "train.log_every=1"]
    # the points measured so far: a run stopped between them (a session's end) goes on from its
    # last checkpoint; scored points are not measured again
    done = out / "study-curve.jsonl"
    curve = harness.jsonl_rows(done)
    seconds = curve[-1]["train_s"] if curve else 0.0
    stops = sorted({s for s in args.eval_at if s < args.steps} | {args.steps})
    for stop in stops:
        if any(point["step"] == stop for point in curve):
            continue
        cfg = load_config(
            RECIPE, [*sets, f"train.steps={stop}", f"train.save_every={min(stop, 1000)}", f"train.grid_every={stop}"]
        )
        resume = bool(curve) and (out / "checkpoint.safetensors").exists()
        res = run_training(cfg, out, resume=resume, force=not resume)
        seconds += res.seconds
        modes, kl = mode_scores(out, args.classifier, args.samples, 1000 + seed)
        curve.append({"step": stop, "modes": modes, "kl": round(kl, 4), "train_s": round(seconds, 1)})
        with done.open("a") as f:
            f.write(json.dumps(curve[-1]) + "\n")
        print(json.dumps({"method": method, "seed": seed, **curve[-1]}), flush=True)
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {
        "method": method,
        "seed": seed,
        "steps": args.steps,
        "samples": args.samples,
        "modes": curve[-1]["modes"],
        "kl": curve[-1]["kl"],
        "curve": curve,
        "train_s": round(seconds, 1),
        "s_per_step": round(seconds / args.steps, 4),
        "last_log": {
            k: v for k, v in last.items() if k in ("loss_d", "loss_g", "recon_e", "recon_heldout", "recon_gap")
        },
        "sets": sets,
        "smoke": args.smoke,
        "cpu": harness.cpu_name(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def summary(results: Path) -> str:
    rows: dict[str, list[dict]] = {}
    for r in harness.jsonl_rows(results):
        rows.setdefault(r["method"], []).append(r)
    out = ["| method | seeds | steps | modes (of 1,000) | KL | s/step |", "|---|---|---|---|---|---|"]
    for method, rs in rows.items():
        modes = [r["modes"] for r in rs]
        kls = [r["kl"] for r in rs]
        sd = statistics.pstdev(modes) if len(modes) > 1 else 0.0
        out.append(
            f"| {method} | {len(rs)} | {rs[0]['steps']} | {statistics.mean(modes):.1f} ± {sd:.1f} | "
            f"{statistics.mean(kls):.2f} | {statistics.mean(r['s_per_step'] for r in rs):.3f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="default ./study-stacked (--smoke: a temp folder)")
    ap.add_argument("--data-root", default=None, help="folder holding MNIST/raw (e.g. mnist-5k)")
    ap.add_argument("--classifier", default=None, help="a 1-channel MNIST classifier (sgan classifier)")
    ap.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), help="default: all")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--steps", type=int, default=2000, help="generator steps, the same for every method")
    ap.add_argument("--eval-at", nargs="*", type=int, default=[500, 1000], help="also score modes at these steps")
    ap.add_argument("--samples", type=int, default=10000, help="samples scored (PacGAN: ≥ 10,000)")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="seconds: patch-recon-pac2 (unless --methods), 2 steps, 300 images, 50 samples, a temp "
        "folder; stand-in MNIST and a one-epoch classifier unless --data-root and --classifier are given",
    )
    ap.add_argument("--summary", action="store_true", help="print the table of results.jsonl and exit")
    args = ap.parse_args()
    if not args.smoke:
        args.work = args.work or Path("study-stacked")
        args.methods = args.methods or list(METHODS)
        if not args.summary and (args.data_root is None or args.classifier is None):
            ap.error("--data-root and --classifier are needed to run")
        run_study(args)
        return
    args.steps, args.eval_at, args.samples, args.seeds = 2, [1], 50, args.seeds[:1]
    args.methods = args.methods or SMOKE_METHODS
    with harness.work_folder(args.work, "study-stacked") as work:
        args.work = work
        root, classifier = harness.smoke_mnist(work, args.data_root, args.classifier)
        args.data_root, args.classifier = str(root), str(classifier)
        run_study(args)


def run_study(args: argparse.Namespace) -> None:
    """Every (method, seed) not yet in WORK/results.jsonl, then the table (``--summary``: only the table)."""
    args.work.mkdir(parents=True, exist_ok=True)
    results = args.work / "results.jsonl"
    if args.summary:
        print(summary(results))
        return
    done = {(r["method"], r["seed"]) for r in harness.jsonl_rows(results)}
    patch = None
    if any(m.startswith("patch") for m in args.methods):
        patch = patch_dictionary(args.work, args.data_root, args.smoke)
    for seed in args.seeds:
        for method in args.methods:
            if (method, seed) in done:
                continue
            record = run_one(args, method, seed, patch)
            with results.open("a") as f:
                f.write(json.dumps(record) + "\n")
    print(summary(results))


if __name__ == "__main__":
    main()
