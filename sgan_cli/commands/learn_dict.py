"""``sgan learn-dict DATA``: learn a sparse-coding dictionary from images or patches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ._common import (
    DataRootOpt,
    DeviceOpt,
    DictSetOpt,
    ImageSizeOpt,
    JsonOpt,
    LimitOpt,
    RecipeOpt,
    SeedOpt,
    SplitOpt,
    coders_text,
    err,
    handle_errors,
    print_fields,
    print_json,
    refuse_torchrun,
    resolve_config,
)
from ._progress import progress_bar


@handle_errors
def learn_dict(
    data: Annotated[
        str | None,
        typer.Argument(
            metavar="DATA",
            help=(
                "Data set: digits, mnist, fashion-mnist, cifar10, celeba, a folder of "
                "images, or a samples.safetensors. Default: digits (or the recipe's)."
            ),
            show_default=False,
        ),
    ] = None,
    atoms: Annotated[
        int | None,
        typer.Option(
            "--atoms", "-k", help="Number of atoms K. Default: square (K = signal dimension).", show_default=False
        ),
    ] = None,
    patch: Annotated[
        int | None,
        typer.Option(
            "--patch",
            help="Learn P×P×C patch atoms (Mahdizadehaghdam et al. 2019); omit for whole-image atoms (Ganz & Blau).",
            show_default=False,
        ),
    ] = None,
    stride: Annotated[
        int | None, typer.Option("--stride", help="Patch extraction stride. (default: 1)", show_default=False)
    ] = None,
    sparsity: Annotated[
        float | None,
        typer.Option(
            "--sparsity",
            "-s",
            help=(
                "Target fraction of non-zero coefficients, in (0, 1). "
                "(default: 0.1, or dim/(3K) where lasso codes cannot reach 0.1)"
            ),
            show_default=False,
        ),
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option("--alpha", help="Fix the lasso penalty α instead of targeting --sparsity.", show_default=False),
    ] = None,
    mean: Annotated[
        bool | None,
        typer.Option(
            "--mean/--no-mean",
            help=(
                "Learn atoms on centred signals and store the mean (mean image, "
                "or mean patch), added back at synthesis. (default: --mean)"
            ),
            show_default=False,
        ),
    ] = None,
    max_samples: Annotated[
        int | None,
        typer.Option(
            "--max-samples",
            help="Use at most this many signals (images or patches). (default: 100000)",
            show_default=False,
        ),
    ] = None,
    seed: SeedOpt = None,
    data_root: DataRootOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = None,
    recipe: RecipeOpt = None,
    set_: DictSetOpt = None,
    out_path: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Output dictionary file. (default: dictionary.safetensors)",
            show_default=False,
        ),
    ] = Path("dictionary.safetensors"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Learn a dictionary: min ½‖Y − AD‖² + α‖A‖₁ with unit-norm atoms, α tuned to hit --sparsity.

    Writes the atoms (float32 [K, dim]) and their metadata to --out, and a picture of the
    atoms beside it (atoms.png). The file records the data it was learned on: sgan train over
    it trains on the same data.

    Examples:
      sgan learn-dict digits --sparsity 0.1
      sgan learn-dict mnist --data-root ../shared/data/mnist-5k --patch 3 --atoms 100

    Runs in one process (one GPU with --device cuda); under torchrun it refuses to start.
    """
    refuse_torchrun("learn-dict")
    from ..learn_dict_run import learn_dict_summary, run_learn_dict

    cfg = resolve_config(
        recipe,
        set_,
        {
            "data.name": data, "data.root": data_root, "data.split": split, "data.limit": limit,
            "data.image_size": image_size, "dict.atoms": atoms, "dict.patch": patch, "dict.stride": stride,
            "dict.sparsity": sparsity, "dict.alpha": alpha, "dict.mean": mean, "dict.max_samples": max_samples,
            "dict.seed": seed, "dict.device": device,
        },
    )  # fmt: skip
    with progress_bar("learn-dict") as progress:
        run = run_learn_dict(
            cfg, out_path, force, progress, note=lambda line: err.print(line, highlight=False, soft_wrap=True)
        )
    summary = learn_dict_summary(run)
    for text in run.job.warnings:  # on stderr, also with --json (where the summary lists them too)
        err.print(f"[yellow]Warning:[/] {escape(text)}", highlight=False, soft_wrap=True)
    if json_out:
        print_json(summary)
        return
    job, r = run.job, run.job.learned
    on = "held out" if r.n_heldout else "training signals: none held out"
    geometry = "whole images" if job.patch is None else f"{job.patch}×{job.patch} patches, stride {job.stride}"
    rows = [
        ("data", f"{job.dataset}: {job.channels}×{job.image_size}×{job.image_size}, {geometry}"),
        ("atoms", f"{summary['n_atoms']} × {summary['dim']}"),
        ("signals", f"{job.n_signals} ({r.n_heldout} held out)" if r.n_heldout else f"{job.n_signals} (none held out)"),
        (
            "sparsity",
            f"{r.achieved_sparsity:.4f} achieved"
            + (f" (target {r.target_sparsity:g})" if r.target_sparsity else "")
            + ("" if r.n_heldout else " on the training signals"),
        ),
        ("alpha", f"{r.alpha:.5g}"),
        ("objective", f"{r.objective:.5g}  (½‖y − aD‖² + α‖a‖₁ per signal; {on})"),
        ("PSNR", f"{r.psnr:.2f} dB ({on})"),
        ("mean", "learned on centred signals, mean stored" if run.job.mean is not None else "none (atoms alone)"),
        ("solver", f"{r.solver}, {r.steps} steps on {job.device}, {run.seconds:.1f} s"),
        ("coders", coders_text(summary)),
        ("files", f"{run.out}  {run.atoms_png}"),
        ("hash", run.hash),
    ]
    print_fields(f"Dictionary {run.out}", rows)
