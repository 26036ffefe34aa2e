"""``sgan encode INPUT``: images → latents (reconstructor) or sparse codes (dictionary), with reconstructions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    DataRootOpt,
    DeviceOpt,
    JsonOpt,
    LimitOpt,
    coders_text,
    handle_errors,
    print_fields,
    print_json,
    refuse_torchrun,
)
from ._progress import progress_bar


@handle_errors
def encode(
    data: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="Images: digits, mnist, fashion-mnist, cifar10, celeba, a folder of images, or a samples.safetensors.",
            show_default=False,
        ),
    ],
    reconstructor: Annotated[
        str | None,
        typer.Option(
            "--reconstructor",
            metavar="PATH",
            help=(
                "A run folder (with reconstructor.safetensors) or a "
                "reconstructor file: z = E(x), reconstruction G(E(x))."
            ),
            show_default=False,
        ),
    ] = None,
    generator: Annotated[
        str | None,
        typer.Option(
            "--generator",
            metavar="FILE",
            help=(
                "With --reconstructor: the generator for G(E(x)). "
                "Default: generator.safetensors beside the reconstructor."
            ),
            show_default=False,
        ),
    ] = None,
    ema: Annotated[bool, typer.Option("--ema", help="With --reconstructor: use the generator's EMA weights.")] = False,
    dict_path: Annotated[
        str | None,
        typer.Option(
            "--dict",
            metavar="FILE",
            help="A dictionary file: sparse codes of the images (every patch position for patch atoms).",
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="With --dict: omp (fixed non-zeros) or lasso (the dictionary's α). (default: omp)",
            show_default=False,
        ),
    ] = "omp",
    nonzeros: Annotated[
        int | None,
        typer.Option(
            "--nonzeros",
            help="OMP non-zeros per signal. (default: round(achieved sparsity × atoms), at least 1)",
            show_default=False,
        ),
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option("--alpha", help="Lasso penalty α. (default: the dictionary's)", show_default=False),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            "--stride",
            help="Patch dictionaries: stride of the coded patch positions. (default: 1, or P for a tiled dictionary)",
            show_default=False,
        ),
    ] = None,
    data_root: DataRootOpt = None,
    split: Annotated[
        str, typer.Option("--split", help="train or test. (default: train)", show_default=False)
    ] = "train",
    limit: LimitOpt = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Resize images to N×N.", show_default=False)
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="Images per batch. (default: 256; patch dictionaries: about 32,768 patches)",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = None,
    out_path: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Output latents file; the comparison grid goes beside it. (default: latents.safetensors)",
            show_default=False,
        ),
    ] = Path("latents.safetensors"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Encode images through a trained reconstructor (--reconstructor) or over a dictionary (--dict).

    Writes latents.safetensors (z or codes, originals, reconstructions, per-image PSNR) and
    reconstructions.png (originals beside reconstructions); prints mean PSNR and support.

    Examples:
      sgan encode digits --dict dictionary.safetensors --split test
      sgan encode mnist --data-root ../shared/data/mnist-5k --dict dictionary.safetensors --method lasso
      sgan encode digits --reconstructor runs/digits --out runs/digits/latents.safetensors
    """
    refuse_torchrun("encode")
    from ..encode_run import EncodeRequest, encode_summary, run_encode

    req = EncodeRequest(
        data=data, reconstructor=reconstructor, generator=generator, ema=ema, dictionary=dict_path, method=method,
        nonzeros=nonzeros, alpha=alpha, stride=stride, data_root=data_root, split=split, limit=limit,
        image_size=image_size, batch_size=batch_size, device=device or "auto", out=out_path, force=force,
    )  # fmt: skip
    with progress_bar("encode") as progress:
        run = run_encode(req, progress)
    summary = encode_summary(run)
    if json_out:
        print_json(summary)
        return
    images, support = run.images, summary["support_fraction"]
    rows = [
        ("images", f"{summary['n']} from {images.source} ({images.channels}×{images.image_size}×{images.image_size})"),
        ("by", run.source),
        ("method", run.how),
        *([("coders", coders_text(summary))] if "engine" in summary else []),
        ("PSNR", f"{summary['mean_psnr']:.2f} dB mean, {summary['min_psnr']:.2f} dB worst (pixels in [−1, 1])"),
        ("support", "— (dense generator)" if support is None else f"{support:.4f} of the codes non-zero"),
        ("time", f"{summary['seconds']:.2f} s ({summary['images_per_s']:.0f} images/s on {run.device})"),
        ("files", f"{req.out}  {req.grid_path}"),
        ("hash", run.hash),
    ]
    print_fields(f"Encoded {data} → {req.out}", rows)
