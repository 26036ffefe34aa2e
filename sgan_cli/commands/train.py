"""``sgan train``: train a sparse (or dense baseline) GAN into a run folder."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from ._common import DataRootOpt, DeviceOpt, JsonOpt, LimitOpt, RecipeOpt, SeedOpt, SetOpt, err, flag_name, handle_errors, out, print_json, progress_bar, resolve_config


RECON_VALUES = ("latent", "vae", "none")


class TrainCommand(TyperCommand):
    """Lets ``--recon`` stand alone (meaning ``--recon latent``) or take a mode (``--recon vae``):
    a bare ``--recon`` gets its value inserted before click parses the arguments."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        fixed: list[str] = []
        for i, arg in enumerate(args):
            fixed.append(arg)
            if arg == "--recon" and (i + 1 == len(args) or args[i + 1] not in RECON_VALUES):
                fixed.append("latent")
        return super().parse_args(ctx, fixed)


@handle_errors
def train(
    gan: Annotated[Optional[str], typer.Option("--gan", help="Objective: gan, wgan, wgan-gp or hinge. (default: wgan-gp)", show_default=False)] = None,
    dict_path: Annotated[Optional[str], typer.Option("--dict", help="Dictionary file: a sparse generator. Omit for the dense baseline.", show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Data set (as for learn-dict). (default: digits)", show_default=False)] = None,
    data_root: DataRootOpt = None,
    limit: LimitOpt = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="mlp, dcgan or resnet. (default: dcgan)", show_default=False)] = None,
    recon: Annotated[
        Optional[str],
        typer.Option("--recon", metavar="[latent|vae]", help="Third player: --recon (reconstructor E(G(z)) ≈ z, seed 002) or --recon vae (VAE encoder, seed 000). (default: none)", show_default=False),
    ] = None,
    minibatch_disc: Annotated[Optional[int], typer.Option("--minibatch-disc", help="Minibatch discrimination with this many kernels in the critic. (default: 0, off)", show_default=False)] = None,
    feature_matching: Annotated[Optional[float], typer.Option("--feature-matching", help="Add feature matching on the critic's features, with this weight. (default: 0, off)", show_default=False)] = None,
    ema: Annotated[Optional[float], typer.Option("--ema", help="Keep an EMA of the generator weights with this decay, e.g. 0.999. (default: 0, off)", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Generator steps. (default: 2000)", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Global batch size: under torchrun it is split evenly over the ranks (each takes batch/N). (default: 64)", show_default=False)] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    precision: Annotated[
        Optional[str],
        typer.Option("--precision", help="fp32; bf16 (mixed precision: bf16 matmuls and convolutions, fp32 weights and losses); auto (bf16 where the CPU/GPU has it). (default: fp32)", show_default=False),
    ] = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/default"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint (up to --steps).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Start over in a run folder that holds a run.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved configuration and exit.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a GAN whose generator emits sparse codes over --dict (or pixels, without it).

    Writes into --out: generator.safetensors (enough to sample), critic.safetensors,
    checkpoint.safetensors, config.yaml, metrics.jsonl, grids/step-NNNNNN.png and, with
    --recon, reconstructor.safetensors.

    Examples:
      sgan train --gan wgan-gp --dict dictionary.safetensors --data digits --steps 300 --out runs/digits
      sgan train --out runs/digits --resume --steps 600
      torchrun --standalone --nproc-per-node 2 -m sgan_cli train --data digits --out runs/ddp

    Under torchrun (several processes or GPUs) --batch-size is the global batch; rank 0
    writes the run folder, and --resume needs the same number of processes.
    """
    import yaml

    from ..training import config_json, refuse_ignored_on_resume, run_training

    flags = {
        "gan.objective": gan, "train.dict": dict_path, "data.name": data, "data.root": data_root, "data.limit": limit,
        "model.arch": arch, "recon.mode": recon, "model.minibatch_disc": minibatch_disc, "gan.feature_matching": feature_matching,
        "train.ema": ema, "train.steps": steps, "train.batch_size": batch_size, "train.seed": seed, "train.device": device,
        "train.precision": precision,
    }  # fmt: skip
    cfg = resolve_config(recipe, set_, flags)
    # with --resume the run's own configuration holds; only its length and device may change
    ignored = [flag_name(k) for k, v in flags.items() if v is not None and k not in ("train.steps", "train.device")]
    ignored += (["--recipe"] if recipe else []) + [f"--set {s}" for s in set_ or []]
    if resume:
        refuse_ignored_on_resume(out_dir, ignored)
    if dry_run:
        text = yaml.safe_dump(config_json(cfg), sort_keys=False)
        if json_out:
            print_json(config_json(cfg))
        else:
            out.print(text, highlight=False, markup=False)
        return
    from ..distributed import session
    from ..interrupt import StopRequest

    # under torchrun: one process group; the ranks' stop requests are combined at step boundaries
    with session("train") as world, progress_bar("train", enabled=world.main) as progress, StopRequest() as stop:
        result = run_training(cfg, out_dir, resume=resume, force=force, progress=progress, stop=stop)
    if not world.main:  # rank 0 reports for the run
        if result.interrupted:
            raise typer.Exit(130)
        return
    if result.interrupted:
        # Ctrl-C: the loop stopped at an iteration boundary and saved it (or had nothing to save)
        launcher = "sgan"
        if world.distributed:  # the same ranks again (one node: --standalone; several: the same torchrun options)
            one_node = os.environ.get("LOCAL_WORLD_SIZE") == str(world.size)
            launcher = f"torchrun --standalone --nproc-per-node {world.size} -m sgan_cli" if one_node else f"torchrun (the same {world.size} ranks) -m sgan_cli"
        again = f"{launcher} train --out {shlex.quote(str(result.out))} --resume --steps {result.target_steps}"
        if result.steps > result.resumed_from:
            err.print(f"[yellow]Interrupted:[/] stopped after step {result.steps} of {result.target_steps}; the checkpoint is saved. Resume with:", highlight=False)
        elif result.resumed_from > 0:
            err.print(f"[yellow]Interrupted[/] before a step was done; the run is still at step {result.steps}. Resume with:", highlight=False)
        else:
            err.print("[yellow]Interrupted[/] before the first step; nothing was written.", highlight=False)
            raise typer.Exit(130)
        err.print(f"  {again}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130)
    if result.resumed_from > 0 and result.steps == result.resumed_from:
        err.print(f"the run in {result.out} is already at step {result.steps}: nothing to do", highlight=False)
    summary = {
        "out": str(result.out),
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "seconds": result.seconds,
        "sparse": result.sparse,
        "precision": result.precision,
        **{f"last_{k}": v for k, v in result.last_log.items()},
    }
    if json_out:
        print_json(summary)
        return
    line = "  ".join(f"{k}={v:.4g}" for k, v in result.last_log.items() if k != "step")
    out.print(f"trained {result.steps} steps ({'sparse' if result.sparse else 'dense'}, {result.precision}) in {result.seconds:.1f} s → {result.out}")
    if line:
        err.print(f"last log: {line}", highlight=False)
