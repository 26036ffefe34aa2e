"""Why the whole-image sparse GAN collapsed: short runs of ``recipes/sparse-mnist.yaml`` with one
change each (docs/results.md, "Why the whole-image sparse GAN collapsed: unbounded images").

Each variant is ``sgan train`` over the recipe for ``--steps`` iterations, scored every
``--steps/2`` iterations on ``--samples`` samples with ``--classifier`` features
(``train.eval_every``), and summarised from its ``metrics.jsonl``: FID, recall and classes at
each evaluation, the critic's loss at the end. The variants that reproduce the collapse train
unclipped images (``model.clip_images=false``, sgan before the option); the ``clip-`` ones clip
with ``model.straight_through=false``; the ``ste-`` ones pass the gradient straight through
unclipped images; the ``st-`` ones run sgan's defaults. Three variants change the generator
inside ``sgan_cli.nets`` for the run (they are diagnoses, not options of sgan): ``tanh``
squashes the synthesised images, ``identity`` replaces the atoms by the pixel basis (codes are
pixels), ``bn`` puts a BatchNorm before the sparse
head. Each variant runs in a process of its own, so a change never leaks into the next; a
finished variant (``generator.safetensors`` in its folder) is skipped, so the study resumes.

    python benchmarks/study_sparse_collapse.py --data-root DATA --dict dicts/mnist-784.safetensors \\
        --patch-dict dicts/mnist-patch3.safetensors --classifier CLF --out results/collapse
    python benchmarks/study_sparse_collapse.py --smoke     # seconds: one changed variant on stand-in data
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from harness import ROOT, sgan, stand_in_mnist, work_folder

RECIPES = ROOT / "recipes"
GOYAL = ["--set", "model.critic_arch=goyal"]
NO_ST = ["--set", "model.straight_through=false"]  # gradients through the kept codes only
UNCLIPPED = ["--set", "model.clip_images=false", *NO_ST]  # sgan before model.clip_images (the collapse)
FIXED_GOYAL, TOPK = [*UNCLIPPED, *GOYAL], ["--set", "model.sparsity=topk"]
SEED1 = ["--set", "train.seed=1"]
ST = ["--set", "model.straight_through=true"]
UNCLIPPED_ST = ["--set", "model.clip_images=false", *ST, *GOYAL]  # the straight-through gradient alone
# name → (recipe, dictionary: "whole", "patch" or "none", change to the sparse head, extra sgan train arguments)
VARIANTS: dict[str, tuple[str, str, str, list[str]]] = {
    "sparse-fixed": ("sparse-mnist", "whole", "", UNCLIPPED),
    "sparse-fixed-no-vae": ("sparse-mnist", "whole", "", [*UNCLIPPED, "--set", "recon.mode=none"]),
    "no-l1-fixed": ("sparse-mnist", "whole", "", [*UNCLIPPED, "--set", "model.beta=0"]),
    "sparse-topk": ("sparse-mnist", "whole", "", [*UNCLIPPED, *TOPK]),
    "dense-fc": ("sparse-mnist", "none", "", []),
    "sparse-fixed-goyal-critic": ("sparse-mnist", "whole", "", FIXED_GOYAL),
    "sparse-fixed-goyal-critic-s1": ("sparse-mnist", "whole", "", [*FIXED_GOYAL, *SEED1]),
    "no-l1-fixed-goyal-critic": ("sparse-mnist", "whole", "", [*FIXED_GOYAL, "--set", "model.beta=0"]),
    "bn-fixed-goyal-critic": ("sparse-mnist", "whole", "bn", FIXED_GOYAL),
    "lambda0-goyal-critic": ("sparse-mnist", "whole", "", [*FIXED_GOYAL, "--set", "model.threshold=0"]),
    "identity-lambda0-goyal-critic": (
        "sparse-mnist",
        "whole",
        "identity",
        [*FIXED_GOYAL, "--set", "model.threshold=0"],
    ),
    "tanh-goyal-critic": ("sparse-mnist", "whole", "tanh", FIXED_GOYAL),
    "identity-atoms-goyal-critic": ("sparse-mnist", "whole", "identity", FIXED_GOYAL),
    "ste-fixed-goyal-critic": ("sparse-mnist", "whole", "", UNCLIPPED_ST),
    "ste-fixed-goyal-critic-s1": ("sparse-mnist", "whole", "", [*UNCLIPPED_ST, *SEED1]),
    "ste-topk-goyal-critic": ("sparse-mnist", "whole", "", [*UNCLIPPED_ST, *TOPK]),
    "dense-fc-goyal-critic": ("sparse-mnist", "none", "", GOYAL),
    "dense-fc-goyal-critic-s1": ("sparse-mnist", "none", "", [*GOYAL, *SEED1]),
    "patch-goyal": ("dcgan-mnist", "patch", "", UNCLIPPED),
    "dense-dcgan-goyal": ("dcgan-mnist", "none", "", []),
    # images clipped to [−1, 1] (model.clip_images), gradients through the kept codes only
    "clip-fixed": ("sparse-mnist", "whole", "", NO_ST),
    "clip-fixed-goyal-critic": ("sparse-mnist", "whole", "", [*GOYAL, *NO_ST]),
    "clip-fixed-goyal-critic-s1": ("sparse-mnist", "whole", "", [*GOYAL, *SEED1, *NO_ST]),
    "clip-topk-goyal-critic": ("sparse-mnist", "whole", "", [*GOYAL, *TOPK, *NO_ST]),
    "clip-controller-goyal-critic": (
        "sparse-mnist",
        "whole",
        "",
        [*GOYAL, "--set", "model.sparsity=controller", *NO_ST],
    ),
    "clip-controller": ("sparse-mnist", "whole", "", ["--set", "model.sparsity=controller", *NO_ST]),
    "clip-patch-goyal": ("dcgan-mnist", "patch", "", NO_ST),
    # clipped, with the straight-through gradient of the sparse head (model.straight_through): sgan's defaults
    "st-fixed": ("sparse-mnist", "whole", "", ST),
    "st-topk": ("sparse-mnist", "whole", "", [*ST, *TOPK]),
    "st-topk-goyal-critic": ("sparse-mnist", "whole", "", [*ST, *GOYAL, *TOPK]),
    "st-patch-goyal": ("dcgan-mnist", "patch", "", ST),
}


def change_head(kind: str) -> None:
    """Change sgan's sparse head in this process for a diagnosis (see the module docstring)."""
    import torch

    from sgan_cli import nets

    if kind == "tanh":
        synthesis = nets.WholeImageSynthesis.forward
        nets.WholeImageSynthesis.forward = lambda self, codes: torch.tanh(synthesis(self, codes))
    elif kind == "identity":
        init = nets.WholeImageSynthesis.__init__

        def identity_init(self, atoms, channels, size, mean=None, clip=False):  # type: ignore[no-untyped-def]
            init(self, torch.eye(atoms.shape[1])[: atoms.shape[0]], channels, size, mean, clip)

        nets.WholeImageSynthesis.__init__ = identity_init
    elif kind == "bn":  # BatchNorm over the batch on the FC body's output, before the sparse head
        body_init = nets.MLPBody.__init__

        def bn_init(self, z_dim, out_dim, hidden=512):  # type: ignore[no-untyped-def]
            body_init(self, z_dim, out_dim, hidden)
            self.net.append(torch.nn.BatchNorm1d(out_dim))

        nets.MLPBody.__init__ = bn_init
    elif kind:
        raise SystemExit(f"unknown change {kind!r}")


def run_one(kind: str, argv: list[str]) -> None:
    """``--run KIND -- ARGS``: this process changes the head, then runs ``sgan ARGS``."""
    change_head(kind)
    from sgan_cli.cli import app

    app(argv, prog_name="sgan")


def summary(name: str, run: Path) -> dict:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [e for e in lines if "fid" in e]
    last = [e for e in lines if "loss_d" in e][-1]
    return {
        "variant": name,
        "evaluations": [{k: e[k] for k in ("step", "fid", "recall", "modes")} for e in evals],
        "loss_d": last["loss_d"],
        "support": last.get("support"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="seconds: one changed variant, 2 steps, stand-in MNIST")
    ap.add_argument("--data-root", type=Path, help="folder holding MNIST/raw")
    ap.add_argument("--dict", type=Path, help="whole-image dictionary (recipes/sparse-mnist.yaml)")
    ap.add_argument("--patch-dict", type=Path, help="patch dictionary (recipes/sparse-patch-mnist.yaml)")
    ap.add_argument("--classifier", type=Path, help="classifier weights for the evaluations (sgan classifier)")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--out", type=Path, help="results folder (default: a temporary one)")
    args, rest = ap.parse_known_args()
    if rest[:1] == ["--run"]:
        sep = rest.index("--")
        run_one(rest[1] if rest[1] != "--" else "", rest[sep + 1 :])
        return
    with work_folder(args.out, "collapse") as out:
        if args.smoke:
            args.steps, args.samples, args.variants = 2, 20, ["identity-atoms-goyal-critic"]
            args.data_root = stand_in_mnist(out / "data")
            args.dict = out / "dict.safetensors"
            learn = ["learn-dict", "mnist", "--data-root", str(args.data_root), "--atoms", "32", "--limit", "200"]
            sgan(*learn, "--out", str(args.dict), in_process=True)
            args.classifier = None
        if args.data_root is None:
            raise SystemExit("give --data-root (a folder holding MNIST/raw), or --smoke")
        features = [] if args.classifier is None else ["--set", f"train.eval_features=classifier:{args.classifier}"]
        results = []
        for name in args.variants:
            recipe, dictionary, change, extra = VARIANTS[name]
            run = out / name
            if not (run / "generator.safetensors").is_file():
                dict_args = {"whole": ["--dict", str(args.dict)], "patch": ["--dict", str(args.patch_dict)]}.get(
                    dictionary, ["--dict", "none"]
                )
                train = ["train", "--recipe", str(RECIPES / f"{recipe}.yaml"), "--data-root", str(args.data_root)]
                train += [*dict_args, "--precision", "bf16", "--out", str(run), "--force", *extra, *features]
                every = max(1, args.steps // 2) if features else 0  # no features (the smoke): no evaluations
                train += ["--set", f"train.steps={args.steps}", "--set", f"train.eval_every={every}"]
                train += [
                    "--set",
                    f"train.eval_samples={args.samples}",
                    "--set",
                    f"train.log_every={min(50, args.steps)}",
                ]
                cmd = [sys.executable, __file__, "--run", change or "--", *(["--"] if change else []), *train]
                print(f"$ sgan {' '.join(train)}" + (f"  (head changed: {change})" if change else ""), flush=True)
                subprocess.run(cmd, check=True, cwd=out)
            results.append(summary(name, run))
            print(json.dumps(results[-1]), flush=True)
        (out / "summary.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
