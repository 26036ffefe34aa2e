"""``sgan sample RUN_OR_GENERATOR``: images from a trained generator, or latent interpolations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import DeviceOpt, JsonOpt, SeedOpt, handle_errors, print_fields, print_json
from ._progress import progress_bar


@handle_errors
def sample(
    generator: Annotated[
        str,
        typer.Argument(
            metavar="RUN_OR_GENERATOR",
            help="A run folder (with generator.safetensors) or a generator file.",
            show_default=False,
        ),
    ],
    n: Annotated[
        int | None,
        typer.Option(
            "-n",
            "--count",
            help="Number of samples; with --interpolate, number of pairs (rows). (default: 64; 8 pairs)",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder. (default: samples)", show_default=False)
    ] = Path("samples"),
    seed: SeedOpt = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            help=(
                "Samples per step (PNG writes, progress, each rank's share under torchrun); the generator "
                "runs on fixed blocks of latents, so the images do not depend on it. (default: 256)"
            ),
            show_default=False,
        ),
    ] = 256,
    ema: Annotated[
        bool, typer.Option("--ema", help="Use the generator's EMA weights (runs trained with train.ema > 0).")
    ] = False,
    dict_path: Annotated[
        str | None,
        typer.Option(
            "--dict",
            metavar="FILE",
            help="Swap in another dictionary of the same shape (sparse generators).",
            show_default=False,
        ),
    ] = None,
    interpolate: Annotated[
        int | None,
        typer.Option(
            "--interpolate",
            help="Write interpolation.png: N points (ends included) between the latents of samples 2r and 2r+1.",
            show_default=False,
        ),
    ] = None,
    interp: Annotated[
        str, typer.Option("--interp", help="Interpolation path: linear or slerp. (default: linear)", show_default=False)
    ] = "linear",
    codes: Annotated[
        bool | None,
        typer.Option(
            "--codes/--no-codes",
            help="Keep the sparse codes in samples.safetensors. (default: when they take at most 512 MiB)",
            show_default=False,
        ),
    ] = None,
    png: Annotated[
        bool,
        typer.Option(
            "--png/--no-png",
            help="Write every sample as a numbered PNG (000000.png …). (default: --png)",
            show_default=False,
        ),
    ] = True,
    device: DeviceOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite existing outputs (and remove old numbered PNGs in --out).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Sample a generator: N images as PNGs, samples.safetensors (images, z, codes) and grid.png.

    The same --seed gives the same images whatever --batch-size: sample i's latent depends
    only on (seed, i), and the generator runs on fixed, aligned blocks of latents (bit-identical
    on one machine; another device or BLAS may round differently).

    Examples:
      sgan sample runs/quickstart -n 1000 --out samples/
      sgan sample runs/quickstart --interpolate 10 --interp slerp --out interp/
      sgan sample runs/quickstart --dict other.safetensors -n 64 --out swapped/
      torchrun --standalone --nproc-per-node 2 -m sgan_cli sample runs/quickstart -n 50000 --out samples/
    """
    from ..devices import resolve_device
    from ..distributed import local_device, session
    from ..run_files import describe, load_generator
    from ..sampling import run_sample

    count = n if n is not None else (8 if interpolate is not None else 64)
    with session("sample") as world:  # under torchrun: each rank makes its share of the batches, rank 0 writes
        dev = local_device(resolve_device(device or "auto"))
        g = load_generator(generator, ema=ema, dictionary=dict_path, device=dev)
        with progress_bar("sample", enabled=world.main) as progress:
            run = run_sample(
                g, out_dir, n=count, seed=seed if seed is not None else 0, batch_size=batch_size,
                codes="auto" if codes is None else ("always" if codes else "never"), pngs=png,
                interpolate=interpolate, interp=interp, force=force, progress=progress,
            )  # fmt: skip
    if not world.main:
        return
    gen = run.generated
    n_images = int(gen.images.shape[0])
    summary = {
        "generator": str(g.path),
        "generator_hash": g.hash,
        "dictionary": g.dictionary.source if g.dictionary is not None else None,
        "dictionary_hash": g.dictionary.hash if g.dictionary is not None else None,
        "ema": g.ema,
        "seed": seed if seed is not None else 0,
        "n": n_images,
        "out": str(out_dir),
        "samples": str(run.outputs.samples),
        "grid": str(run.outputs.grid),
        "pngs": n_images if run.outputs.pngs else 0,
        "codes": gen.codes_note,
        "support_fraction": None if gen.codes_note == "dense" else gen.support_fraction,
        "seconds": gen.seconds,
        "images_per_s": n_images / max(gen.seconds, 1e-9),
        "device": str(dev),
        "hash": run.hash,
    }
    if interpolate is not None:
        summary.update(interpolate=interpolate, interp=interp, pairs=count)
    if json_out:
        print_json(summary)
        return
    what = f"{count} pairs × {interpolate} points ({interp})" if interpolate is not None else f"{n_images} images"
    rows = [
        ("generator", describe(g)),
        ("dictionary", "—" if g.dictionary is None else f"{g.dictionary.source}"),
        (
            "made",
            f"{what}, seed {summary['seed']}, {gen.seconds:.2f} s ({summary['images_per_s']:.0f} images/s on {dev})",
        ),
        (
            "support",
            "— (dense)" if summary["support_fraction"] is None else f"{gen.support_fraction:.4f} of the codes non-zero",
        ),
        ("codes", gen.codes_note),
        (
            "files",
            f"{run.outputs.samples}  {run.outputs.grid}"
            + (f"  {n_images} PNGs in {out_dir}" if run.outputs.pngs else ""),
        ),
        ("hash", run.hash),
    ]
    print_fields(f"Samples {run.outputs.samples}", rows)
