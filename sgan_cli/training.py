"""The training loop (``sgan train``): critic steps, generator step, the third player, logging, saves.

One iteration: ``critic_steps`` critic updates on real minibatches against G(z) computed under
no_grad (the generator's graph is not needed there), then one generator update on the
adversarial loss plus β·mean|a| for sparse codes (Ganz & Blau, *Sparse GAN*), then, with a
third player, the reconstructor or VAE phase. Every random draw (minibatch indices, z, the
gradient penalty's ε) comes from one explicit ``torch.Generator`` whose state is checkpointed
with the nets and optimisers, so a resumed run continues bit for bit on CPU.

The third player is :mod:`sgan_cli.reconstructor`; the nets are built in :mod:`sgan_cli.builders`,
the state and its checkpoint tensors live in :mod:`sgan_cli.checkpoint`, and the run folder
(opening, saving) in :mod:`sgan_cli.run_folder`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import distributed
from .auto import resolve_auto
from .builders import (
    Geometry,
    ResolvedGan,
    check_pack,
    check_training_fits,
    critic_arch,
    dictionary_sparsity,
    resolve_gan,
)
from .checkpoint import TrainState, check_checkpoint_fits, check_world_size, checkpoint_dictionary, new_state
from .config import ModelConfig, SganConfig, check_ranges
from .contracts import DictionaryFile, check_dictionary_fits, content_hash, load_dictionary
from .critics import Critic
from .data import ImageData, load_data
from .devices import resolve_device
from .errors import SganError
from .evaluation import make_evaluator
from .losses import (
    clip_weights,
    critic_loss,
    feature_matching_loss,
    generator_loss,
    gradient_penalty,
    l1_code_penalty,
)
from .nets import Generator, SoftThreshold
from .outputs import Staging, locked_folder
from .precision import autocast, preferred_layout, resolve_precision
from .progress import ProgressFn
from .reconstructor import reconstructor_gap, reconstructor_phase
from .run_folder import RunWriter, open_run, run_dir_paths, save_best, save_outputs, trim_log
from .sparsity import head_lambda, record_sparsity


@dataclass
class TrainResult:
    """What ``sgan train`` reports."""

    out: Path
    steps: int
    resumed_from: int
    seconds: float
    last_log: dict[str, float]
    sparse: bool
    precision: str = "fp32"  # what ran: "auto" resolved on this device
    interrupted: bool = False  # stopped early on request (Ctrl-C): the checkpoint is at ``steps``
    target_steps: int = 0  # the train.steps asked for
    arch: str = ""  # what ran: "mlp", or "dcgan, critic mlp"
    arch_auto: str | None = None  # why, when --arch auto chose it
    best: dict[str, float] | None = None  # with train.eval_every: the evaluation of the lowest FID (its step, scores)
    eval_seconds: float = 0.0  # time spent evaluating (included in ``seconds``)


# --- one iteration ------------------------------------------------------------------------------


@dataclass
class _Draws:
    """The minibatches of one :func:`train_steps` call: images, batch and latent sizes, precision.
    Each draw takes this rank's rows of one global draw from the run's RNG."""

    real: Tensor  # [N, C, H, W] in [−1, 1], in the nets' memory layout
    size: int  # the global batch B
    z_dim: int
    amp: torch.dtype | None  # the autocast dtype, None for fp32

    @property
    def device(self) -> torch.device:
        return self.real.device

    def indices(self, rng: torch.Generator) -> Tensor:
        return distributed.shard(torch.randint(0, self.real.shape[0], (self.size,), generator=rng)).to(self.device)

    def latents(self, rng: torch.Generator) -> Tensor:
        return distributed.shard(torch.randn(self.size, self.z_dim, generator=rng)).to(self.device)


def _critic_scores(D: Critic, x: Tensor, fake: Tensor, joint: bool) -> tuple[Tensor, Tensor]:
    """D(x) and D(G(z)). ``joint``: one forward over the concatenated batch [2B, C, H, W] —
    the same numbers when the critic treats samples independently (no BatchNorm, no
    minibatch discrimination), with half the kernel launches. A packed critic's packs never
    straddle the two halves (each holds whole packs)."""
    if joint:
        scores = D(torch.cat([x, fake]))
        half = scores.shape[0] // 2
        return scores[:half], scores[half:]
    return D(x), D(fake)


def _independent_samples(D: Critic) -> bool:
    """Whether the critic scores each sample on its own (no minibatch discrimination, no BatchNorm)."""
    return D.mbd is None and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())


def _critic_update(state: TrainState, gan: ResolvedGan, draws: _Draws, joint: bool) -> tuple[Tensor, Tensor]:
    """One critic update on a real minibatch against G(z); returns (its loss, the gradient penalty)."""
    G, D, device = state.generator, state.critic, draws.device
    idx = draws.indices(state.rng)
    z = draws.latents(state.rng)
    x = draws.real[idx]
    with autocast(device, draws.amp):
        with torch.no_grad():  # the critic step needs G(z) as data, not G's graph
            fake = G(z)
        real_scores, fake_scores = _critic_scores(D, x, fake, joint)
        loss_d = critic_loss(gan.objective, real_scores, fake_scores)
        gp = torch.zeros((), device=device)
        if gan.objective == "wgan-gp":
            eps = torch.rand(draws.size // D.pack, generator=state.rng)  # one ε per pack (per sample unpacked)
            gp = gradient_penalty(D, x, fake, eps=distributed.shard(eps))
            loss_d = loss_d + gan.gp_lambda * gp
    state.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    distributed.step(state.opt_d)
    if gan.objective == "wgan":
        clip_weights(D, gan.clip)
    return loss_d, gp


def _generator_update(
    state: TrainState, cfg: SganConfig, gan: ResolvedGan, draws: _Draws
) -> tuple[dict[str, Tensor], Tensor | None]:
    """One generator update on the adversarial loss + β·mean|a| (+ feature matching); returns
    the losses by log name and the codes (None for a dense generator)."""
    G, D, device = state.generator, state.critic, draws.device
    fm = cfg.gan.feature_matching
    z = draws.latents(state.rng)
    with autocast(device, draws.amp):
        fake, codes = G.forward_codes(z)
        f_fake = D.features(fake)
        loss_adv = generator_loss(gan.objective, D.score(f_fake))
        l1 = l1_code_penalty(codes).to(device)
        loss_g = loss_adv + cfg.model.beta * l1
        losses = {"loss_g": loss_adv, "l1": l1}
        if fm > 0:
            x = draws.real[draws.indices(state.rng)]
            with torch.no_grad():
                f_real = D.features(x)
            loss_fm = feature_matching_loss(f_real, f_fake, mean=distributed.global_mean)
            loss_g = loss_g + fm * loss_fm
            losses["fm"] = loss_fm
    state.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    distributed.step(state.opt_g)
    return losses, codes


def _support_record(state: TrainState, model: ModelConfig, codes: Tensor) -> dict[str, float]:
    """The codes' support fraction, the target it is held to and λ; the controller's update."""
    support = (codes != 0).float().flatten(1).mean(1)  # [B] per code vector's image
    values = {"support": float(support.mean())}
    if state.controller is not None:
        # the global batch's support (the same on every rank under torchrun), so λ stays identical
        global_support = float(distributed.global_mean(support))
        state.controller.update(global_support)
        values["support_target"] = state.controller.target
    elif model.sparsity == "topk" and model.topk is not None:
        values["support_target"] = model.topk / codes.shape[1]  # k of K per code vector
    elif model.support_target is not None:
        values["support_target"] = model.support_target
    lam = head_lambda(state.generator.threshold)
    if lam is not None:
        values["lambda"] = lam
    return values


def _update_ema(ema: Generator, G: Generator, decay: float) -> None:
    """θ_ema ← decay·θ_ema + (1 − decay)·θ; buffers (BatchNorm statistics, dictionary) copied."""
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), G.parameters()):
            pe.lerp_(p, 1.0 - decay)
        for be, b in zip(ema.buffers(), G.buffers()):
            be.copy_(b)
        for me, m in zip(ema.modules(), G.modules()):  # a controlled λ's float mirror follows its buffer
            if isinstance(me, SoftThreshold) and not me.learnable:
                me.lam_value = m.lam_value


def _iteration(state: TrainState, cfg: SganConfig, gan: ResolvedGan, draws: _Draws, joint: bool) -> dict[str, float]:
    """One generator step with its critic steps, then the third player and the EMA; returns
    this rank's logged values. Advances ``state.step``."""
    D = state.critic
    D.requires_grad_(True)
    for _ in range(gan.critic_steps):  # resolve_gan guarantees at least one
        loss_d, gp = _critic_update(state, gan, draws, joint)
    D.requires_grad_(False)  # the generator step needs gradients through D to the images, not to D's weights
    losses, codes = _generator_update(state, cfg, gan, draws)
    D.requires_grad_(True)
    values = {"loss_d": loss_d.item(), "loss_g": losses["loss_g"].item(), "gp": gp.item(), "l1": losses["l1"].item()}
    if "fm" in losses:
        values["fm"] = losses["fm"].item()
    if codes is not None:
        values.update(_support_record(state, cfg.model, codes))
    state.step += 1
    if state.encoder is not None and cfg.recon.steps > 0 and state.step % cfg.recon.every == 0:
        values.update(reconstructor_phase(state, cfg, draws.real, draws.amp))
    if state.ema is not None:
        _update_ema(state.ema, state.generator, cfg.train.ema)
    return values


# --- the loop -----------------------------------------------------------------------------------


class _LogWindow:
    """The means of the values logged since the last metrics line, and the images per second."""

    def __init__(self) -> None:
        self.t0, self.images = time.perf_counter(), 0
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, float], images: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.images += images

    def entry(self, step: int) -> dict[str, float]:
        """The metrics line of ``step``; starts a new window."""
        now = time.perf_counter()
        entry = {
            "step": step,
            **{k: v / self.counts[k] for k, v in self.sums.items()},
            "images_per_s": self.images / max(now - self.t0, 1e-9),
        }
        self.sums, self.counts, self.t0, self.images = {}, {}, now, 0
        return entry


def _check_finite(values: dict[str, float], step: int) -> None:
    if not all(math.isfinite(v) for v in values.values()):
        raise SganError(
            f"training diverged at step {step}: a loss became NaN or inf ({values})",
            where=f"step {step}",
            fix="lower the learning rates (--set gan.lr_g=…, gan.lr_d=…) or resume from the last checkpoint",
        )


def early_log_step(log_every: int) -> int:
    """One early metrics.jsonl line (step 10) when the log interval is longer, so a slow run
    shows its pace, and what it is learning, within its first steps."""
    return 10 if log_every > 10 else log_every


def train_steps(
    state: TrainState,
    cfg: SganConfig,
    real: Tensor,
    until: int,
    on_log: Callable[[dict[str, float]], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Advance ``state`` to generator step ``until`` on the images ``real`` [N, C, H, W] in [−1, 1].

    ``should_stop`` is asked at each iteration boundary (before an iteration starts); when it
    says True the loop returns early with ``state`` exactly as after ``state.step`` iterations
    (sgan_cli.interrupt: Ctrl-C as a stop request). Under torchrun the ranks' requests are
    combined after each iteration (:func:`distributed.any_rank`), so all stop at the same step.
    Raises SganError on a NaN or inf loss (the caller keeps the last good checkpoint).
    """
    gan = resolve_gan(cfg.gan)
    device = real.device
    amp = resolve_precision(cfg.train.precision, device)
    if real.dim() == 4:  # minibatches in the nets' layout (a no-op when the caller converted once)
        real = real.contiguous(memory_format=preferred_layout(device))
    draws = _Draws(real, cfg.train.batch_size, cfg.model.z_dim, amp)
    joint = _independent_samples(state.critic)
    for m in state.modules().values():
        m.train()
    window = _LogWindow()
    agreed_stop = False  # under torchrun: the ranks' stop requests, combined after each iteration
    while state.step < until:
        if agreed_stop if distributed.current().distributed else (should_stop is not None and should_stop()):
            break
        values = _iteration(state, cfg, gan, draws, joint)
        # one collective per step: the global batch's means for the log (a NaN on any rank
        # reaches all, so every rank stops below together), and any rank's stop request
        asked = (should_stop is not None and should_stop()) or distributed.stop_requested()
        agreed_stop, means = distributed.any_rank(asked, list(values.values()))
        values = dict(zip(values, means))
        _check_finite(values, state.step)
        window.add(values, draws.size * (gan.critic_steps + 1))
        if on_step is not None:
            on_step(state.step)
        if on_log is not None and (
            state.step % cfg.train.log_every == 0
            or state.step == until
            or state.step == early_log_step(cfg.train.log_every)
        ):
            entry = window.entry(state.step)
            if state.encoder is not None and cfg.recon.mode == "latent" and cfg.recon.steps > 0:
                entry.update(reconstructor_gap(state, cfg, device, amp))
            on_log(entry)


# --- a run in its folder ------------------------------------------------------------------------


def run_training(
    cfg: SganConfig,
    out: Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: ProgressFn | None = None,
    stop: Callable[[], bool] | None = None,
    hooks: Sequence[Any] = (),
) -> TrainResult:
    """Train per ``cfg`` into the run folder ``out`` (or continue it with ``resume``).

    The folder is locked for the whole run (a second process is refused, sgan_cli.outputs).
    A new run (or ``force``) is built in a staging folder inside ``out`` and swapped in at its
    first checkpoint, replacing every output of an old run at once; nothing of it is left if
    it fails before then. ``stop`` (e.g. a Ctrl-C :class:`sgan_cli.interrupt.StopRequest`) is
    asked at each iteration boundary: the run then saves a checkpoint of that boundary and
    returns with ``interrupted`` set. A NaN/inf loss raises SganError and leaves the last
    checkpoint in place; a KeyboardInterrupt inside an iteration saves nothing.
    ``hooks`` (e.g. :class:`sgan_cli.curves.CurvesHook`) get every metrics line
    (``hook.log(entry, folder)``, ``folder`` the one metrics.jsonl is in: the staging folder
    until the first checkpoint), every sample grid (``hook.grid(step, uint8 [C, H, W], folder)``) and a
    final ``hook.close(folder)``, also after an error.
    """
    # under torchrun rank 0 holds the lock (and writes); the others read the folder once it has recovered it
    with locked_folder(out, "sgan train") if distributed.is_main() else contextlib.nullcontext():
        distributed.barrier()
        return _train_locked(cfg, out, resume=resume, force=force, progress=progress, stop=stop, hooks=hooks)


def _run_inputs(
    cfg: SganConfig, out: Path, ckpt: Any
) -> tuple[ImageData, Geometry, DictionaryFile | None, dict[str, str]]:
    """Stage 2: the data, its geometry, the dictionary and the lineage recorded in every file.
    A resumed run takes its atoms from the checkpoint and refuses data whose content changed."""
    data = load_data(cfg.data)
    geometry = Geometry(data.channels, data.image_size)
    data_hash = content_hash({"images": data.images})
    dictionary = None
    if ckpt is not None:
        recorded = ckpt.lineage.get("data")
        if recorded is not None and recorded != data_hash:
            raise SganError(
                f"the training data {data.source} changed since the run in {out} "
                f"started (content {data_hash[:19]}…, the run's {recorded[:19]}…)",
                where=data.source,
                fix="restore the run's data, or start a new run with --force or another --out",
            )
        dictionary = checkpoint_dictionary(ckpt)
    elif cfg.train.dict is not None:
        dictionary = load_dictionary(cfg.train.dict)
    if dictionary is not None:
        check_dictionary_fits(dictionary, geometry.channels, geometry.size, cfg.train.dict or str(out))
        record_sparsity(
            cfg.model, dictionary_sparsity(cfg.model, dictionary)
        )  # every file records the resolved control
    lineage = {
        "data": data_hash,
        **({"dictionary": dictionary.hash} if dictionary is not None and dictionary.hash else {}),
    }
    return data, geometry, dictionary, lineage


def _arch_text(model: ModelConfig) -> str:
    """What ran: "mlp", or "dcgan, critic mlp"."""
    if critic_arch(model) == model.arch:
        return model.arch
    return f"{model.arch}, critic {critic_arch(model)}"


def _train_locked(
    cfg: SganConfig,
    out: Path,
    *,
    resume: bool,
    force: bool,
    progress: ProgressFn | None,
    stop: Callable[[], bool] | None,
    hooks: Sequence[Any] = (),
) -> TrainResult:
    """Stages 1–2, then the nets (fresh or from the checkpoint) and the loop with its saves."""
    paths = run_dir_paths(out)
    ckpt = open_run(cfg, out, resume, force)
    check_ranges(cfg, ("train",), "the training configuration")
    world = distributed.current()
    distributed.check_divisible(cfg.train.batch_size, "train.batch_size / --batch-size")
    check_pack(cfg.train.batch_size, cfg.model.pack, world.size)
    if ckpt is not None:
        check_world_size(ckpt.meta, world.size, out)
    device = distributed.local_device(resolve_device(cfg.train.device))
    data, geometry, dictionary, lineage = _run_inputs(cfg, out, ckpt)
    arch_auto = resolve_auto(cfg, dictionary=dictionary)  # the dictionary read once, above
    check_training_fits(cfg, geometry, dictionary, len(data))
    # converted here once, so train_steps' layout conversion is a no-op (no second copy of the data)
    real = data.floats().to(device).contiguous(memory_format=preferred_layout(device))
    state = new_state(cfg, geometry, dictionary, device)
    start = 0
    precision = "bf16" if resolve_precision(cfg.train.precision, device) is not None else "fp32"
    if ckpt is not None:
        check_checkpoint_fits(state, ckpt.tensors, ckpt.meta, paths["checkpoint"])
        start = state.step
        if start >= cfg.train.steps:  # already there: nothing to do, nothing rewritten
            return TrainResult(
                out, start, start, 0.0, {}, dictionary is not None, precision, target_steps=cfg.train.steps
            )
    # every rank starts from rank 0's nets (identical already: same seed, same checkpoint)
    distributed.broadcast_state(state.modules().values())
    if ckpt is not None and world.main:
        trim_log(paths, start)
    # a resumed run writes in place (each save is atomic); a new one in a staging folder until its first checkpoint
    staging = None if resume or not world.main else Staging(out)
    evaluator = None
    if cfg.train.eval_every and world.main:  # the reference (the training images) extracted once
        evaluator = make_evaluator(cfg.train.eval_features, data.images, cfg.train.eval_samples, device)
    with staging if staging is not None else contextlib.nullcontext():
        writer = RunWriter(
            cfg,
            out,
            state,
            staging,
            lambda work: save_outputs(state, cfg, work, dictionary, geometry, lineage),
            progress,
            hooks,
            evaluator,
            lambda path, scores: save_best(path, state, cfg, dictionary, geometry, lineage, scores),
        )
        try:
            train_steps(state, cfg, real, cfg.train.steps, on_log=writer.log, on_step=writer.step, should_stop=stop)
            interrupted = state.step < cfg.train.steps
            if state.step > start:
                writer.save()
        finally:
            writer.close()
    seconds = time.perf_counter() - writer.t0
    return TrainResult(
        out,
        state.step,
        start,
        seconds,
        writer.last,
        dictionary is not None,
        precision,
        interrupted,
        cfg.train.steps,
        _arch_text(cfg.model),
        arch_auto,
        writer.best or None,
        writer.eval_s,
    )
