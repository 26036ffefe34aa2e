"""The run folder of ``sgan train``: what it holds, how a run opens it (new, forced or resumed)
and how a save writes it.

A run folder holds ``checkpoint.safetensors`` (everything to continue), ``generator.safetensors``
(enough alone to sample), ``critic.safetensors``, ``reconstructor.safetensors`` (with a third
player), ``config.yaml``, ``metrics.jsonl`` and ``grids/``. Each save writes every file to a temp
file first and renames them in with the checkpoint first, so no file is ever ahead of the
checkpoint. Reading a generator or reconstructor back is :mod:`sgan_cli.run_files`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import distributed
from .builders import Geometry, check_train_config, resolve_gan
from .checkpoint import TrainState, state_tensors
from .config import SganConfig, section_from_file, to_dict
from .contracts import CHECKPOINT, DictionaryFile, meta_int, read_file, write_file, written_by
from .data import DATASET_NAMES
from .errors import SganError
from .evaluation import Evaluator
from .images import grid_scale, make_grid, save_png, to_uint8
from .outputs import AtomicGroup, Staging, atomic_write
from .progress import ProgressFn
from .run_files import GENERATOR
from .schemas import legacy_model_keys
from .sparsity import legacy_sparsity

# the logged values a progress bar shows
PROGRESS_KEYS = ("loss_d", "loss_g", "recon_g", "vae", "support", "images_per_s")

RUN_SECTIONS = ("data", "model", "gan", "recon", "train")  # the config sections a training run uses


# what a run folder holds (all of it is replaced by a --force run, none of it by another command)
RUN_OUTPUTS = (
    "checkpoint.safetensors", "generator.safetensors", "critic.safetensors", "reconstructor.safetensors",
    "config.yaml", "metrics.jsonl", "grids", "curves.png", "tensorboard", "best.safetensors",
)  # fmt: skip


def run_dir_paths(out: Path) -> dict[str, Path]:
    return {
        "generator": out / "generator.safetensors",
        "critic": out / "critic.safetensors",
        "reconstructor": out / "reconstructor.safetensors",
        "checkpoint": out / "checkpoint.safetensors",
        "config": out / "config.yaml",
        "metrics": out / "metrics.jsonl",
        "grids": out / "grids",
        "best": out / "best.safetensors",
    }


def config_json(cfg: SganConfig) -> dict[str, Any]:
    """The sections a run uses, with the objective's defaults filled in (what really ran)."""
    check_train_config(cfg)
    out = {k: to_dict(getattr(cfg, k)) for k in RUN_SECTIONS}
    gan = resolve_gan(cfg.gan)
    out["gan"].update(
        critic_steps=gan.critic_steps, lr_g=gan.lr_g, lr_d=gan.lr_d, beta1=gan.betas[0], beta2=gan.betas[1]
    )
    return out


def refuse_ignored_on_resume(out: Path, options: Sequence[str]) -> None:
    """A resumed run keeps its saved configuration: options that would silently lose to it
    (anything but the number of steps and the device) are an error instead."""
    if options:
        raise SganError(
            f"--resume continues the run in {out} with its own configuration, so {', '.join(options)} would be ignored",
            where=str(out),
            fix="resume with only --steps (and --device), or start a new run with --force or another --out",
        )


def _resume_config(cfg: SganConfig, saved: dict[str, Any], path: Path) -> None:
    """The run's own configuration wins, except how long to train and on which device; each
    saved value is type- and range-checked like a recipe's (SganError naming ``path``)."""
    steps, device_name = cfg.train.steps, cfg.train.device
    for section in RUN_SECTIONS:
        setattr(cfg, section, section_from_file(saved, section, type(getattr(cfg, section)), path))
    cfg.train.steps = steps
    legacy_sparsity(cfg.model, saved.get("model", {}))
    legacy_model_keys(cfg.model, saved.get("model", {}))
    if device_name != "auto":  # an explicit --device moves the run (CPU ↔ CUDA)
        cfg.train.device = device_name


def _absolute_inputs(cfg: SganConfig) -> None:
    """Record input paths as absolute paths, so a run resumed from another working folder (or a
    copied run) finds the same data."""
    if cfg.data.root:
        cfg.data.root = str(Path(cfg.data.root).expanduser().resolve())
    if cfg.data.name not in DATASET_NAMES and Path(cfg.data.name).exists():
        cfg.data.name = str(Path(cfg.data.name).resolve())


def _log_entries(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl, skipping a line torn by a kill."""
    entries = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def trim_log(paths: dict[str, Path], step: int) -> None:
    """After an interruption, forget what the run logged past its checkpoint (it is redone):
    metrics.jsonl keeps its entries up to ``step`` (and drops a line torn by a kill), grids of
    later steps are removed."""
    if paths["metrics"].exists():
        kept = []
        for line in paths["metrics"].read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("step"), int) and entry["step"] <= step:
                kept.append(line + "\n")
        atomic_write(paths["metrics"], lambda tmp: tmp.write_text("".join(kept)))
    if paths["grids"].is_dir():
        for png in paths["grids"].glob("step-*.png"):
            digits = png.stem[len("step-") :]
            if digits.isdigit() and int(digits) > step:
                png.unlink()


def open_run(cfg: SganConfig, out: Path, resume: bool, force: bool) -> Any:
    """Stage 1: what is in the (locked) folder decides. With ``resume``: its checkpoint (an
    SganFile), whose configuration then holds in ``cfg``; ``--steps`` below its step is refused
    before anything is written. Without: None, refusing a folder that holds a run unless ``force``."""
    paths = run_dir_paths(out)
    if resume and force:
        raise SganError(
            "--resume continues the run and --force starts it over: they cannot go together",
            where=str(out),
            fix="drop --force to continue the run, or drop --resume to start over",
        )
    if not resume:
        if paths["checkpoint"].exists() and not force:
            raise SganError(
                f"the run folder {out} already holds a run",
                where=str(out),
                fix="pass --resume to continue it, --force to start over, or choose another --out",
            )
        _absolute_inputs(cfg)
        return None
    if not paths["checkpoint"].exists():
        raise SganError(
            f"there is no run to resume in {out} (no checkpoint.safetensors)",
            where=str(out),
            fix="start the run without --resume",
        )
    ckpt = read_file(paths["checkpoint"], CHECKPOINT, what="checkpoint")
    meta_int(ckpt.meta, "channels", ckpt.path)
    meta_int(ckpt.meta, "image_size", ckpt.path)
    _resume_config(cfg, ckpt.config, ckpt.path)
    done = meta_int(ckpt.meta, "step", ckpt.path)
    if cfg.train.steps < done:
        raise SganError(
            f"the run in {out} is already at step {done}, so --steps {cfg.train.steps} would go back",
            where=str(out),
            fix=f"give --steps above {done} to train further, or start over with --force",
        )
    return ckpt


def _geometry_meta(state: TrainState, geometry: Geometry, dictionary: DictionaryFile | None) -> dict[str, str]:
    geo = {
        "channels": str(geometry.channels),
        "image_size": str(geometry.size),
        "step": str(state.step),
        "sparse": json.dumps(dictionary is not None),
    }
    if dictionary is not None:
        geo["dictionary_patch"] = json.dumps(dictionary.patch)
        geo["dictionary_stride"] = str(dictionary.stride)
    return geo


def _generator_contents(state: TrainState, geo: dict[str, str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and metadata of a generator file: the live weights (with the dictionary as
    synthesis buffers) and, when the run keeps one, the EMA weights under ``ema.``."""
    g_tensors = dict(state.generator.state_dict())
    if state.ema is not None:  # the averaged weights beside the raw ones: `sgan sample --ema`
        g_tensors.update({f"ema.{k}": v for k, v in state.ema.state_dict().items()})
    return g_tensors, {**geo, "ema": json.dumps(state.ema is not None)}


def save_best(
    path: Path,
    state: TrainState,
    cfg: SganConfig,
    dictionary: DictionaryFile | None,
    geometry: Geometry,
    lineage: dict[str, str],
    scores: dict[str, float],
) -> None:
    """``best.safetensors``: a generator file (enough alone to sample) of the step whose
    evaluation gave the lowest FID so far; its metadata holds that evaluation's scores
    (``eval_*``). Written atomically by the process that writes the run (rank 0)."""
    tensors, meta = _generator_contents(state, _geometry_meta(state, geometry, dictionary))
    meta |= {f"eval_{k}": repr(float(v)) for k, v in scores.items()}
    write_file(path, GENERATOR, tensors, config=config_json(cfg), lineage=lineage, meta=meta, force=True)


def save_outputs(
    state: TrainState,
    cfg: SganConfig,
    paths: dict[str, Path],
    dictionary: DictionaryFile | None,
    geometry: Geometry,
    lineage: dict[str, str],
) -> None:
    """Checkpoint, config.yaml, generator (enough alone to sample), critic and reconstructor:
    all written to temp files first, then renamed in with the checkpoint first, so no file
    is ever ahead of the checkpoint. Under torchrun every rank calls it (the checkpoint
    gathers every rank's RNG state) and rank 0 alone writes."""
    import yaml

    tensors, meta = state_tensors(state)
    if not distributed.is_main():
        return
    conf = config_json(cfg)
    geo = _geometry_meta(state, geometry, dictionary)
    g_tensors, g_meta = _generator_contents(state, geo)
    text = f"# {written_by(CHECKPOINT.name)}\n" + yaml.safe_dump(conf, sort_keys=False)
    with AtomicGroup() as group:
        write_file(
            paths["checkpoint"],
            CHECKPOINT,
            tensors,
            config=conf,
            lineage=lineage,
            meta={**geo, **meta, "role": "checkpoint"},
            force=True,
            group=group,
        )
        group.add(paths["config"], lambda tmp: tmp.write_text(text))
        write_file(
            paths["generator"],
            GENERATOR,
            g_tensors,
            config=conf,
            lineage=lineage,
            meta=g_meta,
            force=True,
            group=group,
        )
        c_tensors = {f"critic.{k}": v for k, v in state.critic.state_dict().items()}
        write_file(
            paths["critic"],
            CHECKPOINT,
            c_tensors,
            config=conf,
            lineage=lineage,
            meta={**geo, "role": "critic"},
            force=True,
            group=group,
        )
        if state.encoder is not None:
            e_tensors = {f"encoder.{k}": v for k, v in state.encoder.state_dict().items()}
            e_meta = {**geo, "role": "reconstructor", "recon_mode": state.encoder.mode}
            write_file(
                paths["reconstructor"],
                CHECKPOINT,
                e_tensors,
                config=conf,
                lineage=lineage,
                meta=e_meta,
                force=True,
                group=group,
            )


def write_grid(state: TrainState, path: Path) -> Tensor:
    """Samples from the fixed z (the same 64 latents all run long), as one PNG; from the
    EMA generator when there is one (what `sgan sample --ema` draws from)."""
    G = state.ema if state.ema is not None else state.generator
    was_training = G.training
    G.eval()
    with torch.no_grad():
        imgs = to_uint8(G(state.fixed_z).cpu())
    G.train(was_training)
    grid = make_grid(imgs, nrow=8, scale=grid_scale(imgs.shape[-1]))
    save_png(grid, path)
    return grid


class RunWriter:
    """What a run writes while it trains: metrics lines, sample grids and saves, into the
    staging folder of a new run until its first checkpoint swaps it in, then into the run
    folder. Under torchrun rank 0 alone writes (every rank joins the saves)."""

    def __init__(
        self,
        cfg: SganConfig,
        out: Path,
        state: TrainState,
        staging: Staging | None,
        save: Callable[[dict[str, Path]], None],
        progress: ProgressFn | None,
        hooks: Sequence[Any],
        evaluator: Evaluator | None = None,
        save_best: Callable[[Path, dict[str, float]], None] | None = None,
    ) -> None:
        self.cfg, self.out, self.state, self.staging, self._save = cfg, out, state, staging, save
        self.progress, self.hooks, self.main = progress, hooks, distributed.is_main()
        self.paths = run_dir_paths(out)
        self.work = self.paths if staging is None else run_dir_paths(staging.dir)
        if self.main:
            self.work["grids"].mkdir(parents=True, exist_ok=True)
        self.last: dict[str, float] = {}
        self.t0 = time.perf_counter()
        self.evaluator, self._save_best = evaluator if self.main else None, save_best
        # a resumed run's best so far: its evaluations up to the checkpoint (trim_log kept those)
        self.best: dict[str, float] = {}
        if self.evaluator is not None and self.work["metrics"].is_file():
            evals = [e for e in _log_entries(self.work["metrics"]) if isinstance(e.get("fid"), (int, float))]
            if evals:
                self.best = min(evals, key=lambda e: e["fid"])
        self.eval_s = 0.0

    def save(self) -> None:
        self._save(self.work)
        if self.staging is not None and not self.staging.published:  # the new run's first checkpoint: swap it in
            self.staging.publish(
                remove=[name for name in RUN_OUTPUTS if (self.out / name).exists()],
                commit=self.paths["checkpoint"].name,
            )
            self.work = self.paths

    def log(self, entry: dict[str, float]) -> None:
        entry["wall_s"] = time.perf_counter() - self.t0
        self.last = entry
        if not self.main:
            return
        with open(self.work["metrics"], "a") as fh:
            fh.write(json.dumps(entry) + "\n")
        for hook in self.hooks:
            hook.log(entry, self.work["metrics"].parent)

    def step(self, step: int) -> None:
        train = self.cfg.train
        if self.progress is not None and self.main:
            self.progress(step, train.steps, {k: v for k, v in self.last.items() if k in PROGRESS_KEYS})
        if self.main and (step % train.grid_every == 0 or step == train.steps):
            grid = write_grid(self.state, self.work["grids"] / f"step-{step:06d}.png")
            for hook in self.hooks:
                hook.grid(step, grid, self.work["metrics"].parent)
        if self.evaluator is not None and train.eval_every and (step % train.eval_every == 0 or step == train.steps):
            self.evaluate(step)
        if step % train.save_every == 0 and step != train.steps:
            self.save()

    def evaluate(self, step: int) -> dict[str, float]:
        """Score the generator (the EMA one when the run keeps it) and log the scores as a
        metrics.jsonl line of their own; a new lowest FID rewrites best.safetensors."""
        assert self.evaluator is not None
        G = self.state.ema if self.state.ema is not None else self.state.generator
        scores = self.evaluator(G, self.cfg.model.z_dim)
        entry: dict[str, float] = {"step": step, **scores}
        if self.eval_s == 0.0:
            entry["eval_setup_s"] = self.evaluator.setup_s
            self.eval_s += self.evaluator.setup_s
        self.eval_s += scores["eval_s"]
        with open(self.work["metrics"], "a") as fh:
            fh.write(json.dumps(entry) + "\n")
        for hook in self.hooks:
            hook.log(entry, self.work["metrics"].parent)
        if self._save_best is not None and (not self.best or scores["fid"] < self.best["fid"]):
            self._save_best(self.work["best"], scores)
            self.best = entry
        return entry

    def close(self) -> None:
        for hook in self.hooks:
            hook.close(self.work["metrics"].parent)
