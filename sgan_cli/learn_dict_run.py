"""``sgan learn-dict`` as named stages: check the outputs and the device, load the images, learn
(:func:`sgan_cli.dictionary_job.learn_from_config`), write the dictionary file and its
``atoms.png`` as one group, and the record ``--json`` prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import native
from .config import SganConfig, to_dict
from .contracts import check_writable, save_dictionary
from .data import absolute_paths, load_data
from .devices import resolve_device
from .dictionary_job import DictionaryJob, learn_from_config
from .images import save_atoms_png
from .outputs import AtomicGroup
from .progress import ProgressFn


@dataclass
class LearnDictRun:
    """What :func:`run_learn_dict` did, for the command to print."""

    job: DictionaryJob
    out: Path
    atoms_png: Path
    hash: str
    seconds: float


def atoms_png_path(out_path: Path) -> Path:
    """``atoms.png`` beside ``dictionary.safetensors``; ``NAME_atoms.png`` beside other names."""
    return out_path.with_name("atoms.png" if out_path.stem == "dictionary" else f"{out_path.stem}_atoms.png")


def run_learn_dict(
    cfg: SganConfig,
    out_path: Path,
    force: bool = False,
    progress: ProgressFn | None = None,
    note: Callable[[str], None] | None = None,
) -> LearnDictRun:
    """``sgan learn-dict``: check outputs and device → load images → learn → dictionary file → atoms.png.

    The file records the data it was learned on (the ``data`` section, its paths made absolute),
    which ``sgan train`` reads to train on the same data. ``note``: see :func:`learn_from_config`."""
    import time

    png_path = atoms_png_path(out_path)
    check_writable(out_path, force)
    check_writable(png_path, force)
    resolve_device(cfg.dict.device)  # an absent or unknown device fails before the images load
    images = load_data(cfg.data)
    native.library()  # loading the compiled kernels is not learning time
    start = time.perf_counter()
    job = learn_from_config(images, cfg.dict, progress, note)
    seconds = time.perf_counter() - start
    side = job.image_size if job.patch is None else job.patch
    # both written first, then renamed in as one group: the old picture removed, the dictionary
    # renamed in, then the new picture (AtomicGroup): a kill leaves no picture of other atoms
    with AtomicGroup() as group:
        save_atoms_png(job.learned.atoms, job.channels, side, png_path, group)
        record = {"data": to_dict(absolute_paths(cfg.data)), "dict": to_dict(cfg.dict)}  # train reads "data"
        digest = save_dictionary(out_path, job, record, force=force, group=group)
    return LearnDictRun(job, out_path, png_path, digest, seconds)


def learn_dict_summary(run: LearnDictRun) -> dict[str, Any]:
    """The record ``sgan learn-dict --json`` prints."""
    job, r = run.job, run.job.learned
    engine, why = native.engine(job.device)
    return {
        "out": str(run.out), "atoms_png": str(run.atoms_png), "hash": run.hash, "dataset": job.dataset,
        "channels": job.channels, "image_size": job.image_size, "patch": job.patch, "stride": job.stride,
        "n_atoms": int(r.atoms.shape[0]), "dim": int(r.atoms.shape[1]), "n_signals": job.n_signals,
        "n_heldout": r.n_heldout, "target_sparsity": r.target_sparsity, "achieved_sparsity": r.achieved_sparsity,
        "alpha": r.alpha, "objective": r.objective, "psnr_db": r.psnr, "mean": job.mean is not None,
        "measured_on": "held-out" if r.n_heldout else "training", "warnings": job.warnings,
        "solver": r.solver, "steps": r.steps, "device": job.device,
        "engine": engine, "engine_note": why, "seconds": run.seconds,
    }  # fmt: skip
