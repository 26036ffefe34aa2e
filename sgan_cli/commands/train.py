"""``sgan train``: train a sparse (or dense baseline) GAN into a run folder."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..errors import SganError
from ._common import (
    DataRootOpt,
    DeviceOpt,
    ImageSizeOpt,
    JsonOpt,
    LimitOpt,
    RecipeOpt,
    SeedOpt,
    SganCommand,
    SplitOpt,
    TrainSetOpt,
    err,
    flag_name,
    handle_errors,
    out,
    print_json,
    rank0,
    resolve_config,
)  # fmt: skip
from ._progress import duration, progress_bar

RECON_VALUES = ("latent", "vae", "none")
DEFAULT_OUT = Path("runs/default")
RESUME_OUT = ""  # the value a bare --resume gets: continue the run in --out


class TrainCommand(SganCommand):
    """Lets ``--recon`` stand alone (meaning ``--recon latent``) or take a mode (``--recon vae``),
    and ``--resume`` stand alone (the run in ``--out``) or name the run (``--resume runs/NAME``):
    a bare one gets its value inserted before click parses the arguments."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        fixed: list[str] = []
        for i, arg in enumerate(args):
            fixed.append(arg)
            nxt = args[i + 1] if i + 1 < len(args) else None
            if arg == "--recon" and (nxt is None or nxt not in RECON_VALUES):
                fixed.append("latent")
            if arg == "--resume" and (nxt is None or nxt.startswith("-")):
                fixed.append(RESUME_OUT)
        return super().parse_args(ctx, fixed)


def resume_folder(resume: str | None, out_dir: Path | None) -> Path | None:
    """The run folder ``--resume`` continues: ``--resume RUN``, or ``--out`` with a bare
    ``--resume``; None without ``--resume``. Two different folders are an error."""
    from ..errors import SganError

    if resume is None:
        return None
    if resume == RESUME_OUT:
        return out_dir if out_dir is not None else DEFAULT_OUT
    if out_dir is not None and Path(resume) != out_dir:
        raise SganError(
            f"--resume {resume} and --out {out_dir} name two different run folders",
            where="--resume / --out",
            fix=f"give the run once: --resume {resume} (or --out {out_dir} --resume)",
        )
    return Path(resume)


@handle_errors
def train(
    gan: Annotated[
        str | None,
        typer.Option("--gan", help="Objective: gan, wgan, wgan-gp or hinge. (default: wgan-gp)", show_default=False),
    ] = None,
    dict_path: Annotated[
        str | None,
        typer.Option(
            "--dict",
            metavar="FILE",
            help=(
                "Dictionary file: a sparse generator over its atoms, on the data it was learned from "
                "(unless --data and the other data options say otherwise); none: the dense baseline. "
                "(default: ./dictionary.safetensors when it exists and no --recipe is given, else none)"
            ),
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", metavar="DATA", help="Data set (as for learn-dict). (default: digits)", show_default=False
        ),
    ] = None,
    data_root: DataRootOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    image_size: ImageSizeOpt = None,
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch",
            help=(
                "auto, mlp, dcgan, resnet, goyal, ganz-blau or pacgan-tiny. goyal: the DCGAN nets of Goyal's "
                "GAN training report (EE5239, Appendix I); ganz-blau: the four-layer FC generator and "
                "three-conv critic of Ganz & Blau's Sparse GAN; pacgan-tiny: the stacked-MNIST nets of "
                "PacGAN (Lin et al. 2018). auto: mlp for a whole-image dictionary; "
                "for a patch dictionary a dcgan generator with an mlp critic on CPU "
                "(dcgan on GPU); dense: mlp on CPU, dcgan on GPU. (default: auto)"
            ),
            show_default=False,
        ),
    ] = None,
    recon: Annotated[
        str | None,
        typer.Option(
            "--recon",
            metavar="[latent|vae]",
            help=(
                "Third player: --recon (reconstructor E(G(z)) ≈ z, Mahdizadehaghdam et al. 2019) "
                "or --recon vae (VAE encoder, Ganz & Blau). (default: none)"
            ),
            show_default=False,
        ),
    ] = None,
    minibatch_disc: Annotated[
        int | None,
        typer.Option(
            "--minibatch-disc",
            metavar="N",
            help="Minibatch discrimination with this many kernels in the critic. (default: 0, off)",
            show_default=False,
        ),
    ] = None,
    pack: Annotated[
        int | None,
        typer.Option(
            "--pack",
            metavar="N",
            help=(
                "Packing (PacGAN, Lin et al. 2018): the critic scores N samples at once, concatenated "
                "along channels; the batch must be a multiple of N (× ranks). (default: 1, off)"
            ),
            show_default=False,
        ),
    ] = None,
    feature_matching: Annotated[
        float | None,
        typer.Option(
            "--feature-matching",
            metavar="FLOAT",
            help="Add feature matching on the critic's features, with this weight. (default: 0, off)",
            show_default=False,
        ),
    ] = None,
    ema: Annotated[
        float | None,
        typer.Option(
            "--ema",
            metavar="FLOAT",
            help="Keep an EMA of the generator weights with this decay, e.g. 0.999. (default: 0, off)",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", metavar="N", help="Generator steps. (default: 2000)", show_default=False)
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            metavar="N",
            help=(
                "Global batch size: under torchrun it is split evenly "
                "over the ranks (each takes batch/N). (default: 64)"
            ),
            show_default=False,
        ),
    ] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help=(
                "fp32; bf16 (mixed precision: bf16 matmuls and convolutions, fp32 weights "
                "and losses); auto (bf16 where the CPU/GPU has it). (default: fp32)"
            ),
            show_default=False,
        ),
    ] = None,
    recipe: RecipeOpt = None,
    set_: TrainSetOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="RUN", help="Run folder. (default: runs/default)", show_default=False),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="[RUN]",
            help=(
                "Continue a run from its checkpoint (up to --steps): "
                "--resume runs/NAME, or --resume alone for the run in --out."
            ),
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Start over in a run folder that holds a run.")] = False,
    tensorboard: Annotated[
        bool,
        typer.Option(
            "--tensorboard",
            help=(
                "Also log scalars and sample grids for TensorBoard "
                "into RUN/tensorboard (needs: pip install tensorboard)."
            ),
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help=(
                "Print the resolved configuration, the input files still missing and an estimate "
                "of the run's time on this device (from a few timed steps), and exit."
            ),
        ),
    ] = False,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate/--no-estimate",
            help="With --dry-run: time a few steps for the estimate (a GPU recipe's step can take a minute on a CPU).",
        ),
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Train a GAN whose generator emits sparse codes over --dict (or pixels, without it).

    Writes into the run folder: generator.safetensors (enough to sample), critic.safetensors,
    checkpoint.safetensors, config.yaml, metrics.jsonl, curves.png (with matplotlib),
    grids/step-NNNNNN.png and, with --recon, reconstructor.safetensors.

    Without --dict, a dictionary.safetensors in this folder (what sgan learn-dict writes) is
    used, with the data it was learned from; the first line says what was chosen.

    Examples:
      sgan train --gan wgan-gp --dict dictionary.safetensors --data digits --steps 300 --out runs/digits
      sgan train --dict none --data mnist --out runs/dense
      sgan train --resume runs/digits --steps 600
      torchrun --standalone --nproc-per-node 2 -m sgan_cli train --data digits --out runs/ddp

    Under torchrun (several processes or GPUs) --batch-size is the global batch; rank 0
    writes the run folder, and --resume needs the same number of processes.
    """
    import yaml

    from ..auto import resolve_auto
    from ..config import given_keys
    from ..curves import CurvesHook, TensorBoardHook
    from ..run_folder import config_json, refuse_ignored_on_resume
    from ..train_inputs import choose_inputs
    from ..training import run_training

    flags = {
        "gan.objective": gan, "train.dict": dict_path, "data.name": data, "data.root": data_root, "data.split": split,
        "data.limit": limit, "data.image_size": image_size, "model.arch": arch, "recon.mode": recon,
        "model.minibatch_disc": minibatch_disc, "model.pack": pack, "gan.feature_matching": feature_matching,
        "train.ema": ema,
        "train.steps": steps, "train.batch_size": batch_size, "train.seed": seed, "train.device": device,
        "train.precision": precision,
    }  # fmt: skip
    cfg = resolve_config(recipe, set_, flags)
    run_dir = resume_folder(resume, out_dir)
    if run_dir is None:
        run_dir = out_dir if out_dir is not None else DEFAULT_OUT
        # the dictionary (./dictionary.safetensors by default) and the data it was learned on
        given = {k for k, v in flags.items() if v is not None} | given_keys(recipe, set_)
        chosen_inputs = choose_inputs(cfg, given, recipe is not None).line
        if rank0():  # under torchrun every rank decides the same; rank 0 says it
            err.print(chosen_inputs, highlight=False, markup=False, soft_wrap=True)
    else:
        # with --resume the run's own configuration holds; only its length and device may change
        ignored = [flag_name(k) for k, v in flags.items() if v is not None and k not in ("train.steps", "train.device")]
        ignored += (["--recipe"] if recipe else []) + [f"--set {s}" for s in set_ or []]
        refuse_ignored_on_resume(run_dir, ignored)
    if dry_run:
        chosen = resolve_auto(cfg, dry_run=True)
        if json_out:
            print_json(config_json(cfg))
        else:
            out.print(yaml.safe_dump(config_json(cfg), sort_keys=False), highlight=False, markup=False)
            if chosen:
                arrow = "" if cfg.model.arch == "auto" else f" → {cfg.model.arch}"
                err.print(f"arch auto{arrow}: {chosen}", highlight=False, soft_wrap=True)
        if resume is None:
            _report_dry_run(cfg, estimate)
        return
    from ..distributed import session
    from ..interrupt import StopRequest

    # curves and TensorBoard logs are drawn by rank 0, which writes the run folder
    hooks: list[object] = [CurvesHook(note=lambda text: err.print(text, highlight=False, markup=False, soft_wrap=True))]
    if tensorboard:
        hooks.append(TensorBoardHook())  # refuses at once when tensorboard is missing
    # under torchrun: one process group; the ranks' stop requests are combined at step boundaries
    with session("train") as world, progress_bar("train", enabled=world.main) as progress, StopRequest() as stop:
        result = run_training(
            cfg,
            run_dir,
            resume=resume is not None,
            force=force,
            progress=progress,
            stop=stop,
            hooks=hooks if world.main else [],
        )
    if not world.main:  # rank 0 reports for the run
        if result.interrupted:
            raise typer.Exit(130)
        return
    if result.interrupted:
        # Ctrl-C: the loop stopped at an iteration boundary and saved it (or had nothing to save)
        launcher = "sgan"
        if world.distributed:  # the same ranks again (one node: --standalone; several: the same torchrun options)
            one_node = os.environ.get("LOCAL_WORLD_SIZE") == str(world.size)
            launcher = (
                f"torchrun --standalone --nproc-per-node {world.size} -m sgan_cli"
                if one_node
                else f"torchrun (the same {world.size} ranks) -m sgan_cli"
            )
        again = f"{launcher} train --resume {shlex.quote(str(result.out))} --steps {result.target_steps}"
        if result.steps > result.resumed_from:
            err.print(
                f"[yellow]Interrupted:[/] stopped after step {result.steps} of "
                f"{result.target_steps}; the checkpoint is saved. Resume with:",
                highlight=False,
            )
        elif result.resumed_from > 0:
            err.print(
                f"[yellow]Interrupted[/] before a step was done; the run is still at step {result.steps}. Resume with:",
                highlight=False,
            )
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
        "steps_run": result.steps - result.resumed_from,
        "resumed_from": result.resumed_from,
        "seconds": result.seconds,
        "sparse": result.sparse,
        "precision": result.precision,
        "arch": result.arch,
        "arch_auto": result.arch_auto,
        "curves": str(result.out / "curves.png") if (result.out / "curves.png").is_file() else None,
        **{f"last_{k}": v for k, v in result.last_log.items()},
        "best": result.best,
        "eval_seconds": result.eval_seconds,
    }
    if json_out:
        print_json(summary)
        return
    line = "  ".join(f"{k}={v:.4g}" for k, v in result.last_log.items() if k != "step")
    run = result.steps - result.resumed_from
    span = f"trained {run} steps" + (
        f" (steps {result.resumed_from + 1}–{result.steps}, resumed from step {result.resumed_from})"
        if result.resumed_from
        else ""
    )
    kind = "sparse" if result.sparse else "dense"
    out.print(
        f"{span}: {kind}, {result.arch}, {result.precision}, {result.seconds:.1f} s → {result.out}", highlight=False
    )
    if result.arch_auto:
        err.print(f"arch auto → {result.arch}: {result.arch_auto}", highlight=False, soft_wrap=True)
    if line:
        err.print(f"last log: {line}", highlight=False, soft_wrap=True)
    if result.best:
        b = result.best
        scores = "  ".join(f"{k}={b[k]:.4g}" for k in ("fid", "inception", "precision", "recall", "modes") if k in b)
        err.print(
            f"best evaluation: step {b['step']:.0f}  {scores} → {result.out / 'best.safetensors'}"
            f" (evaluation took {result.eval_seconds:.1f} s of {result.seconds:.1f} s)",
            highlight=False,
            soft_wrap=True,
        )


def _report_dry_run(cfg: object, estimate: bool) -> None:
    """What a new run of ``cfg`` still lacks on disk, and (``estimate``) how long it would take here (stderr)."""
    from ..train_estimate import estimate_run
    from ..train_inputs import missing_inputs

    for line in missing_inputs(cfg):
        err.print(f"[yellow]missing:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if not estimate:
        return
    try:
        est = estimate_run(cfg)
    except SganError as exc:
        err.print(f"no time estimate: {exc.message}", highlight=False, markup=False, soft_wrap=True)
        return
    timed = f"{est.steps_timed} step{'s' if est.steps_timed > 1 else ''}"
    stand_in = ", random atoms standing in for the missing dictionary" if est.stand_in_dictionary else ""
    err.print(
        f"estimate: about {duration(est.total_seconds)} for {est.steps:,} steps on {est.device} "
        f"({est.seconds_per_step:.3g} s a step, timed over {timed} on random {est.channels}×{est.size}×{est.size} "
        f"images{stand_in}; data loading, checkpoints, grids and other work on this machine are not counted)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
