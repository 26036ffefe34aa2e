"""``sgan encode INPUT``: images → latents (reconstructor) or sparse codes (dictionary), with reconstructions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import DataRootOpt, DeviceOpt, JsonOpt, LimitOpt, handle_errors, print_fields, print_json, progress_bar
from ..errors import SganError


def grid_png_path(out_path: Path) -> Path:
    """``reconstructions.png`` beside ``latents.safetensors``; ``NAME_reconstructions.png`` beside others."""
    return out_path.with_name("reconstructions.png" if out_path.stem == "latents" else f"{out_path.stem}_reconstructions.png")


@handle_errors
def encode(
    data: Annotated[str, typer.Argument(metavar="INPUT", help="Images: digits, mnist, fashion-mnist, cifar10, celeba, a folder of images, or a samples.safetensors.", show_default=False)],
    reconstructor: Annotated[Optional[str], typer.Option("--reconstructor", help="A run folder (with reconstructor.safetensors) or a reconstructor file: z = E(x), reconstruction G(E(x)).", show_default=False)] = None,
    generator: Annotated[Optional[str], typer.Option("--generator", help="With --reconstructor: the generator for G(E(x)). Default: generator.safetensors beside the reconstructor.", show_default=False)] = None,
    ema: Annotated[bool, typer.Option("--ema", help="With --reconstructor: use the generator's EMA weights.")] = False,
    dict_path: Annotated[Optional[str], typer.Option("--dict", help="A dictionary file: sparse codes of the images (every patch position for patch atoms).", show_default=False)] = None,
    method: Annotated[str, typer.Option("--method", help="With --dict: omp (fixed non-zeros) or lasso (the dictionary's α). (default: omp)", show_default=False)] = "omp",
    nonzeros: Annotated[Optional[int], typer.Option("--nonzeros", help="OMP non-zeros per signal. (default: round(achieved sparsity × atoms), at least 1)", show_default=False)] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="Lasso penalty α. (default: the dictionary's)", show_default=False)] = None,
    stride: Annotated[Optional[int], typer.Option("--stride", help="Patch dictionaries: stride of the coded patch positions. (default: 1, or P for a tiled dictionary)", show_default=False)] = None,
    data_root: DataRootOpt = None,
    split: Annotated[str, typer.Option("--split", help="train or test. (default: train)", show_default=False)] = "train",
    limit: LimitOpt = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Resize images to N×N.", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per batch. (default: 256; patch dictionaries: about 32,768 patches)", show_default=False)] = None,
    device: DeviceOpt = None,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Output latents file; the comparison grid goes beside it. (default: latents.safetensors)", show_default=False)] = Path("latents.safetensors"),
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
    from ..config import DataConfig, to_dict
    from ..contracts import check_dictionary_fits, check_writable, load_dictionary
    from ..data import load_data
    from ..dictionary import resolve_device
    from ..encoding import check_coder_flags, comparison_grid, encode_dictionary, encode_reconstructor, resolve_coder, save_latents
    from ..images import save_png
    from ..run_files import load_reconstructor

    if (reconstructor is None) == (dict_path is None):
        raise SganError(
            "encode needs exactly one of --reconstructor and --dict",
            where="--reconstructor / --dict",
            fix="give --reconstructor RUN (latents z) or --dict dictionary.safetensors (sparse codes)",
        )
    if dict_path is None and (nonzeros is not None or alpha is not None or stride is not None or method != "omp"):
        raise SganError("--method, --nonzeros, --alpha and --stride apply to --dict only", where="--reconstructor", fix="leave them out, or encode with --dict")
    if dict_path is not None and (generator is not None or ema):
        raise SganError("--generator and --ema apply to --reconstructor only", where="--dict", fix="leave them out, or encode with --reconstructor")
    if dict_path is not None:
        check_coder_flags(method, nonzeros, alpha)
    png_path = grid_png_path(out_path)
    check_writable(out_path, force)
    check_writable(png_path, force)
    dev = resolve_device(device or "auto")
    data_cfg = DataConfig(name=data, root=data_root, split=split, limit=limit, image_size=image_size)
    settings: dict[str, object] = {"input": data, "split": split, "limit": limit, "image_size": image_size}
    if dict_path is not None:
        d = load_dictionary(dict_path)
        images = load_data(data_cfg)
        check_dictionary_fits(d, images.channels, images.image_size, dict_path)
        coder = resolve_coder(d, images.image_size, method, nonzeros, alpha, stride)
        with progress_bar("encode") as progress:
            enc = encode_dictionary(images, d, coder, batch_size=batch_size, device=dev, progress=progress)
        meta = {
            "mode": "dictionary", "method": coder.method, "dictionary": str(dict_path),
            "nonzeros": str(coder.nonzeros) if coder.nonzeros is not None else "null",
            "alpha": repr(coder.alpha) if coder.alpha is not None else "null",
            "patch": str(d.patch) if d.patch is not None else "null", "stride": str(coder.stride) if coder.stride is not None else "null",
        }  # fmt: skip
        lineage = {"dictionary": d.hash}
        source = f"{dict_path} ({d.n_atoms} " + ("whole-image atoms)" if d.patch is None else f"{d.patch}×{d.patch} patch atoms, stride {coder.stride})")
        how = f"OMP, {coder.nonzeros} non-zeros per signal" if coder.method == "omp" else f"lasso (LARS), α = {coder.alpha:.4g}"
        settings.update(dictionary=str(dict_path), method=coder.method, nonzeros=coder.nonzeros, alpha=coder.alpha, stride=coder.stride)
    else:
        assert reconstructor is not None
        r = load_reconstructor(reconstructor, generator=generator, ema=ema, device=dev)
        images = load_data(data_cfg)
        with progress_bar("encode") as progress:
            enc = encode_reconstructor(images, r, batch_size=batch_size, progress=progress)
        meta = {"mode": "reconstructor", "method": "reconstructor", "recon_mode": r.mode, "reconstructor": str(r.path), "generator": str(r.generator.path), "ema": "true" if ema else "false"}
        lineage = {"reconstructor": r.hash, "generator": r.generator.hash}
        if r.generator.dictionary is not None and r.generator.dictionary.hash:
            lineage["dictionary"] = r.generator.dictionary.hash
        source = f"{r.path} ({r.mode}) with {r.generator.path}"
        how = "z = E(x) (μ of the VAE encoder)" if r.mode == "vae" else "z = E(x)"
        settings.update(reconstructor=str(r.path), generator=str(r.generator.path), ema=ema)
    meta.update(input=data, source=images.source)
    digest = save_latents(out_path, enc, meta=meta, lineage=lineage, config={"data": to_dict(data_cfg), "encode": settings}, force=force)
    save_png(comparison_grid(enc), png_path)
    n = int(enc.originals.shape[0])
    support = None if enc.support_fraction != enc.support_fraction else enc.support_fraction  # NaN → None (dense generator)
    summary = {
        "input": data,
        "n": n,
        "mode": meta["mode"],
        "method": meta["method"],
        "mean_psnr": enc.mean_psnr,
        "min_psnr": float(enc.psnr.min()) if n else None,
        "support_fraction": support,
        "seconds": enc.seconds,
        "images_per_s": n / max(enc.seconds, 1e-9),
        "out": str(out_path),
        "grid": str(png_path),
        "hash": digest,
        "lineage": lineage,
        "device": str(dev),
    }
    if dict_path is not None:
        summary.update(nonzeros=coder.nonzeros, alpha=coder.alpha, stride=coder.stride)
    if json_out:
        print_json(summary)
        return
    rows = [
        ("images", f"{n} from {images.source} ({images.channels}×{images.image_size}×{images.image_size})"),
        ("by", source),
        ("method", how),
        ("PSNR", f"{enc.mean_psnr:.2f} dB mean, {summary['min_psnr']:.2f} dB worst (pixels in [−1, 1])"),
        ("support", "— (dense generator)" if support is None else f"{support:.4f} of the codes non-zero"),
        ("time", f"{enc.seconds:.2f} s ({summary['images_per_s']:.0f} images/s on {dev})"),
        ("files", f"{out_path}  {png_path}"),
        ("hash", digest),
    ]
    print_fields(f"Encoded {data} → {out_path}", rows)
