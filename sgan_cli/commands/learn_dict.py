"""``sgan learn-dict DATA``: learn a sparse-coding dictionary from images or patches."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import DataRootOpt, DeviceOpt, DictSetOpt, ImageSizeOpt, JsonOpt, LimitOpt, RecipeOpt, SeedOpt, SplitOpt, handle_errors, print_fields, print_json, progress_bar, resolve_config


def atoms_png_path(out_path: Path) -> Path:
    """``atoms.png`` beside ``dictionary.safetensors``; ``NAME_atoms.png`` beside other names."""
    return out_path.with_name("atoms.png" if out_path.stem == "dictionary" else f"{out_path.stem}_atoms.png")


@handle_errors
def learn_dict(
    data: Annotated[Optional[str], typer.Argument(metavar="DATA", help="Data set: digits, mnist, fashion-mnist, cifar10, celeba, a folder of images, or a samples.safetensors. Default: digits (or the recipe's).", show_default=False)] = None,
    atoms: Annotated[Optional[int], typer.Option("--atoms", "-k", help="Number of atoms K. Default: square (K = signal dimension).", show_default=False)] = None,
    patch: Annotated[Optional[int], typer.Option("--patch", help="Learn P×P×C patch atoms (seed 002); omit for whole-image atoms (seed 000).", show_default=False)] = None,
    stride: Annotated[Optional[int], typer.Option("--stride", help="Patch extraction stride. (default: 1)", show_default=False)] = None,
    sparsity: Annotated[Optional[float], typer.Option("--sparsity", "-s", help="Target fraction of non-zero coefficients, in (0, 1). (default: 0.1, or dim/(3K) where lasso codes cannot reach 0.1)", show_default=False)] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="Fix the lasso penalty α instead of targeting --sparsity.", show_default=False)] = None,
    max_samples: Annotated[Optional[int], typer.Option("--max-samples", help="Use at most this many signals (images or patches). (default: 100000)", show_default=False)] = None,
    seed: SeedOpt = None,
    data_root: DataRootOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = None,
    recipe: RecipeOpt = None,
    set_: DictSetOpt = None,
    out_path: Annotated[Path, typer.Option("--out", "-o", metavar="FILE", help="Output dictionary file. (default: dictionary.safetensors)", show_default=False)] = Path("dictionary.safetensors"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Learn a dictionary: min ½‖Y − AD‖² + α‖A‖₁ with unit-norm atoms, α tuned to hit --sparsity.

    Writes the atoms (float32 [K, dim]) and their metadata to --out, and a picture of the
    atoms beside it (atoms.png).

    Examples:
      sgan learn-dict digits --sparsity 0.1
      sgan learn-dict mnist --data-root ../shared/data/mnist-5k --patch 3 --atoms 100
    """
    from ..config import to_dict
    from ..contracts import check_writable, save_dictionary
    from ..data import load_data
    from ..dictionary import learn_from_config
    from ..images import save_atoms_png

    cfg = resolve_config(
        recipe,
        set_,
        {
            "data.name": data, "data.root": data_root, "data.split": split, "data.limit": limit,
            "data.image_size": image_size, "dict.atoms": atoms, "dict.patch": patch, "dict.stride": stride,
            "dict.sparsity": sparsity, "dict.alpha": alpha, "dict.max_samples": max_samples, "dict.seed": seed,
            "dict.device": device,
        },
    )
    png_path = atoms_png_path(out_path)
    check_writable(out_path, force)
    check_writable(png_path, force)
    images = load_data(cfg.data)
    start = time.perf_counter()
    with progress_bar("learn-dict") as progress:
        job = learn_from_config(images, cfg.dict, progress)
    seconds = time.perf_counter() - start
    digest = save_dictionary(out_path, job, {"data": to_dict(cfg.data), "dict": to_dict(cfg.dict)}, force=force)
    side = job.image_size if job.patch is None else job.patch
    save_atoms_png(job.learned.atoms, job.channels, side, png_path)

    r = job.learned
    summary = {
        "out": str(out_path),
        "atoms_png": str(png_path),
        "hash": digest,
        "dataset": job.dataset,
        "channels": job.channels,
        "image_size": job.image_size,
        "patch": job.patch,
        "stride": job.stride,
        "n_atoms": int(r.atoms.shape[0]),
        "dim": int(r.atoms.shape[1]),
        "n_signals": job.n_signals,
        "n_heldout": r.n_heldout,
        "target_sparsity": r.target_sparsity,
        "achieved_sparsity": r.achieved_sparsity,
        "alpha": r.alpha,
        "objective": r.objective,
        "psnr_db": r.psnr,
        "solver": r.solver,
        "steps": r.steps,
        "device": job.device,
        "seconds": seconds,
    }
    if json_out:
        print_json(summary)
        return
    geometry = "whole images" if job.patch is None else f"{job.patch}×{job.patch} patches, stride {job.stride}"
    rows = [
        ("data", f"{job.dataset}: {job.channels}×{job.image_size}×{job.image_size}, {geometry}"),
        ("atoms", f"{summary['n_atoms']} × {summary['dim']}"),
        ("signals", f"{job.n_signals} ({r.n_heldout} held out)"),
        ("sparsity", f"{r.achieved_sparsity:.4f} achieved" + (f" (target {r.target_sparsity:g})" if r.target_sparsity else "")),
        ("alpha", f"{r.alpha:.5g}"),
        ("objective", f"{r.objective:.5g}  (½‖y − aD‖² + α‖a‖₁ per held-out signal)"),
        ("PSNR", f"{r.psnr:.2f} dB (held out)"),
        ("solver", f"{r.solver}, {r.steps} steps on {job.device}, {seconds:.1f} s"),
        ("files", f"{out_path}  {png_path}"),
        ("hash", digest),
    ]
    print_fields(f"Dictionary {out_path}", rows)
