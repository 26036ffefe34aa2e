"""``sgan train``: train a sparse (or dense baseline) GAN into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import DataRootOpt, DeviceOpt, JsonOpt, LimitOpt, RecipeOpt, SeedOpt, SetOpt, err, handle_errors, out, print_json, progress_bar, resolve_config


@handle_errors
def train(
    gan: Annotated[Optional[str], typer.Option("--gan", help="Objective: gan, wgan, wgan-gp or hinge. (default: wgan-gp)", show_default=False)] = None,
    dict_path: Annotated[Optional[str], typer.Option("--dict", help="Dictionary file: a sparse generator. Omit for the dense baseline.", show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Data set (as for learn-dict). (default: digits)", show_default=False)] = None,
    data_root: DataRootOpt = None,
    limit: LimitOpt = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="mlp or dcgan. (default: dcgan)", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Generator steps. (default: 2000)", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size. (default: 64)", show_default=False)] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
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
    checkpoint.safetensors, config.yaml, metrics.jsonl and grids/step-NNNNNN.png.

    Examples:
      sgan train --gan wgan-gp --dict dictionary.safetensors --data digits --steps 300 --out runs/digits
      sgan train --out runs/digits --resume --steps 600
    """
    import yaml

    from ..training import config_json, run_training

    cfg = resolve_config(
        recipe,
        set_,
        {
            "gan.objective": gan, "train.dict": dict_path, "data.name": data, "data.root": data_root, "data.limit": limit,
            "model.arch": arch, "train.steps": steps, "train.batch_size": batch_size, "train.seed": seed, "train.device": device,
        },
    )
    if dry_run:
        text = yaml.safe_dump(config_json(cfg), sort_keys=False)
        if json_out:
            print_json(config_json(cfg))
        else:
            out.print(text, highlight=False, markup=False)
        return
    with progress_bar("train") as progress:
        result = run_training(cfg, out_dir, resume=resume, force=force, progress=progress)
    summary = {
        "out": str(result.out),
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "seconds": result.seconds,
        "sparse": result.sparse,
        **{f"last_{k}": v for k, v in result.last_log.items()},
    }
    if json_out:
        print_json(summary)
        return
    line = "  ".join(f"{k}={v:.4g}" for k, v in result.last_log.items() if k != "step")
    out.print(f"trained {result.steps} steps ({'sparse' if result.sparse else 'dense'}) in {result.seconds:.1f} s → {result.out}")
    if line:
        err.print(f"last log: {line}", highlight=False)
