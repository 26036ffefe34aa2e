"""The training loop (``sgan train``): critic steps, generator step, logging, checkpoints.

One iteration (DESIGN §2.3): ``critic_steps`` critic updates on real minibatches against
G(z) computed under no_grad (the generator's graph is not needed there), then one
generator update on the adversarial loss plus β·mean|a| for sparse codes. Every random
draw (minibatch indices, z, the gradient penalty's ε) comes from one explicit
``torch.Generator`` whose state is checkpointed with the nets and optimisers, so a resumed
run continues bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import distributed
from .config import GanConfig, ModelConfig, SganConfig, check_ranges, section_from_file, to_dict
from .contracts import DictionaryFile, check_dictionary_fits
from .errors import SganError
from .losses import (
    OBJECTIVES,
    clip_weights,
    critic_loss,
    feature_matching_loss,
    generator_loss,
    gradient_penalty,
    image_recon_loss,
    l1_code_penalty,
    latent_recon_loss,
    vae_loss,
)
from .nets import (
    FEATURES,
    Critic,
    DCGANBody,
    Encoder,
    Generator,
    MLPBody,
    PatchSynthesis,
    ResNetBody,
    SoftThreshold,
    SupportController,
    WholeImageSynthesis,
)
from .paper_nets import CONV_BODIES, PAPER_ARCHS, PAPER_FEATURES, VECTOR_BODIES, no_dropout
from .sparsity import (
    ResolvedSparsity,
    check_sparsity_config,
    head_lambda,
    legacy_sparsity,
    make_controller,
    record_sparsity,
    resolve_sparsity,
    sparse_head,
)

ARCHS = ("mlp", "dcgan", "resnet", *PAPER_ARCHS)  # paper_nets: the papers' own nets
RECON_MODES = ("none", "latent", "vae")
PRECISIONS = ("fp32", "bf16", "auto")

# objective → (critic steps, optimiser, lr, β₁, β₂), DESIGN §2.3 (seed 004's table)
OBJECTIVE_DEFAULTS: dict[str, tuple[int, str, float, float, float]] = {
    "gan": (1, "adam", 2e-4, 0.5, 0.999),
    "wgan": (5, "rmsprop", 5e-5, 0.0, 0.0),
    "wgan-gp": (5, "adam", 1e-4, 0.5, 0.9),
    "hinge": (1, "adam", 2e-4, 0.0, 0.9),
}

ProgressFn = Callable[[int, int, dict[str, float]], None]


@dataclass
class Geometry:
    """What the generator must produce: channels × size × size images."""

    channels: int
    size: int


@dataclass
class ResolvedGan:
    """The objective with every default filled in."""

    objective: str
    critic_steps: int
    optimizer: str
    lr_g: float
    lr_d: float
    betas: tuple[float, float]
    clip: float
    gp_lambda: float


def resolve_gan(cfg: GanConfig) -> ResolvedGan:
    """Fill the objective's defaults into the unset (None) fields; unknown objective → error."""
    if cfg.objective not in OBJECTIVES:
        raise SganError(
            f"unknown objective {cfg.objective!r}",
            where="gan.objective / --gan",
            fix=f"use one of {', '.join(OBJECTIVES)}",
        )
    steps, opt, lr, b1, b2 = OBJECTIVE_DEFAULTS[cfg.objective]
    critic_steps = cfg.critic_steps if cfg.critic_steps is not None else steps
    if critic_steps < 1:
        raise SganError(
            f"gan.critic_steps must be at least 1, got {critic_steps}",
            where="gan.critic_steps",
            fix="give a positive number",
        )
    return ResolvedGan(
        objective=cfg.objective,
        critic_steps=critic_steps,
        optimizer=opt,
        lr_g=cfg.lr_g if cfg.lr_g is not None else lr,
        lr_d=cfg.lr_d if cfg.lr_d is not None else lr,
        betas=(cfg.beta1 if cfg.beta1 is not None else b1, cfg.beta2 if cfg.beta2 is not None else b2),
        clip=cfg.clip,
        gp_lambda=cfg.gp_lambda,
    )


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise SganError(
            f"unknown architecture {arch!r}", where="model.arch / --arch", fix=f"use one of auto, {', '.join(ARCHS)}"
        )


def _conv_body(model: ModelConfig, out_channels: int, size: int) -> nn.Module:
    """The convolutional generator body: DCGAN's fractionally strided convs or residual blocks."""
    cls = {"resnet": ResNetBody, **CONV_BODIES}.get(model.arch, DCGANBody)
    return cls(model.z_dim, out_channels, size, model.g_width)


def _vector_body(model: ModelConfig, out_dim: int) -> nn.Module:
    """The fully connected generator body (z → out_dim): Ganz & Blau's for its arch, else sgan's MLP."""
    return VECTOR_BODIES.get(model.arch, MLPBody)(model.z_dim, out_dim, model.g_width)


def build_generator(model: ModelConfig, geometry: Geometry, dictionary: DictionaryFile | None) -> Generator:
    """Body by ``model.arch``; a sparse head when a dictionary is given, else dense tanh."""
    _check_arch(model.arch)
    C, S = geometry.channels, geometry.size
    if dictionary is None:
        body: nn.Module = (
            _vector_body(model, C * S * S) if model.arch in ("mlp", *VECTOR_BODIES) else _conv_body(model, C, S)
        )
        return Generator(body, image_shape=(C, S, S))
    K = dictionary.n_atoms
    threshold = sparse_head(model, dictionary_sparsity(model, dictionary))
    mean = getattr(dictionary, "mean", None)
    if dictionary.patch is None:
        # whole-image codes are one vector per image: a fully connected body whatever model.arch
        # (Ganz & Blau's for ganz-blau, sgan's MLP otherwise)
        return Generator(_vector_body(model, K), threshold, WholeImageSynthesis(dictionary.atoms, C, S, mean))
    if model.arch in ("mlp", *VECTOR_BODIES):
        raise SganError(
            "a patch dictionary needs a convolutional generator",
            where="model.arch / --arch",
            fix="use --arch dcgan (or goyal, resnet) with patch dictionaries",
        )
    stride = dictionary.stride if dictionary.stride == dictionary.patch else 1
    synth = PatchSynthesis(dictionary.atoms, C, dictionary.patch, S, stride=stride, mean=mean)
    return Generator(_conv_body(model, K, synth.code_size), threshold, synth)


def dictionary_sparsity(model: ModelConfig, dictionary: Any) -> ResolvedSparsity:
    """The sparsity control for this dictionary (its achieved support fills the defaults)."""
    return resolve_sparsity(model, dictionary.n_atoms, float(getattr(dictionary, "achieved_sparsity", math.nan)))


def critic_arch(model: ModelConfig) -> str:
    """The critic's (and encoder's) architecture: ``model.critic_arch``, else ``model.arch``."""
    return model.critic_arch if model.critic_arch is not None else model.arch


def _features(arch: str, geometry: Geometry, width: int, norm: str) -> nn.Module:
    """Critic / encoder feature extractor for ``arch`` on C×S×S images."""
    _check_arch(arch)
    C, S = geometry.channels, geometry.size
    if arch == "mlp":
        return FEATURES["mlp"](C * S * S, width, norm)
    return {**FEATURES, **PAPER_FEATURES}[arch](C, S, width, norm)


def build_encoder(model: ModelConfig, geometry: Geometry, mode: str) -> Encoder:
    """The reconstructor E (mode "latent") or VAE encoder (mode "vae"): critic-like features
    of the critic's architecture (no normalisation) with a linear head to z (or to μ, log σ²).

    Seed 002 used a ResNet-50 for E; ours is the critic's architecture at ``model.e_width``.
    """
    if mode not in ("latent", "vae"):
        raise SganError(f"unknown reconstructor mode {mode!r}", where="recon.mode / --recon", fix="use latent or vae")
    return Encoder(no_dropout(_features(critic_arch(model), geometry, model.e_width, "none")), model.z_dim, mode)


def build_critic(model: ModelConfig, objective: str, geometry: Geometry) -> Critic:
    """Critic by ``model.arch``; no BatchNorm for the Wasserstein objectives unless asked."""
    norm = model.critic_norm
    if norm == "auto":  # the papers' critics have no normalisation layer
        norm = "none" if objective in ("wgan", "wgan-gp") or critic_arch(model) in PAPER_ARCHS else "batch"
    if norm not in ("none", "batch", "layer"):
        raise SganError(
            f"unknown critic norm {norm!r}", where="model.critic_norm", fix="use auto, none, batch or layer"
        )
    if objective == "wgan-gp" and norm == "batch":
        raise SganError(
            "BatchNorm in a WGAN-GP critic couples the samples the gradient penalty treats one by one",
            where="model.critic_norm",
            fix="use none or layer",
        )
    if model.minibatch_disc < 0 or model.mbd_dim < 1:
        raise SganError(
            "model.minibatch_disc must be ≥ 0 and model.mbd_dim ≥ 1",
            where="model.minibatch_disc / model.mbd_dim",
            fix="e.g. --set model.minibatch_disc=32",
        )
    return Critic(_features(critic_arch(model), geometry, model.d_width, norm), model.minibatch_disc, model.mbd_dim)


def make_optimizer(params: Any, gan: ResolvedGan, lr: float) -> torch.optim.Optimizer:
    """The objective's optimiser. Adam runs fused (one kernel for all parameters, CPU or CUDA)
    and RMSprop multi-tensor (foreach): the same update rule, far fewer small kernels than the
    per-parameter default, which dominates small nets on CPU."""
    if gan.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=True)
    return adam(params, lr, gan.betas)


def adam(params: Any, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)


def native_bf16(device: torch.device) -> bool:
    """Whether the device multiplies bfloat16 in hardware: CUDA GPUs from Ampere on, CPUs
    with AMX or AVX512-BF16 (elsewhere bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, hence getattr
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """``train.precision`` → the autocast dtype of the forward passes, None for fp32 throughout.

    bf16 is mixed precision: matmuls and convolutions run in bfloat16 with fp32 accumulation,
    weights, optimiser states and losses stay fp32 (the loss functions cast their inputs).
    "auto" picks bf16 only where :func:`native_bf16` says it is fast.
    """
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}")  # check_train_config reports it to users
    if name == "bf16" or (name == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """The forward passes' precision context (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def preferred_layout(device: torch.device) -> torch.memory_format:
    """channels-last (NHWC) on CPU: oneDNN's convolutions skip their NCHW↔NHWC reorders
    (measured 1.1–1.3× per training step, benchmarks/bench_train.py); CUDA keeps NCHW (not
    measured there)."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


@dataclass
class TrainState:
    """Everything a checkpoint holds (DESIGN §3): nets, optimisers, step, RNG."""

    generator: Generator
    critic: Critic
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rng: torch.Generator
    fixed_z: Tensor
    step: int = 0
    encoder: Encoder | None = None  # the reconstructor / VAE encoder (recon.mode ≠ none)
    opt_e: torch.optim.Optimizer | None = None
    ema: Generator | None = None  # exponential moving average of the generator (train.ema > 0)
    controller: SupportController | None = (
        None  # adapts λ to the support target (model.sparsity "controller"); its state is λ, in the generator
    )

    def modules(self) -> dict[str, nn.Module]:
        """The nets by checkpoint prefix."""
        mods: dict[str, nn.Module] = {"generator": self.generator, "critic": self.critic}
        if self.encoder is not None:
            mods["encoder"] = self.encoder
        if self.ema is not None:
            mods["ema"] = self.ema
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"opt_g": self.opt_g, "opt_d": self.opt_d}
        if self.opt_e is not None:
            opts["opt_e"] = self.opt_e
        return opts


def check_train_config(cfg: SganConfig) -> None:
    """Errors a user can make in the model / recon / train sections, before any work."""
    if cfg.model.arch != "auto":  # resolved once the dictionary and device are known (sgan_cli/auto.py)
        _check_arch(cfg.model.arch)
    if cfg.model.critic_arch is not None and cfg.model.critic_arch not in ARCHS:
        # no "auto" here: without critic_arch the critic follows model.arch (auto included)
        raise SganError(
            f"unknown critic architecture {cfg.model.critic_arch!r}",
            where="model.critic_arch",
            fix=f"use one of {', '.join(ARCHS)}, or leave model.critic_arch unset (null) to follow --arch",
        )
    check_sparsity_config(cfg.model)
    if cfg.recon.mode not in RECON_MODES:
        raise SganError(
            f"unknown reconstructor mode {cfg.recon.mode!r}",
            where="recon.mode / --recon",
            fix="use none, latent or vae",
        )
    if cfg.train.precision not in PRECISIONS:
        raise SganError(
            f"unknown precision {cfg.train.precision!r}",
            where="train.precision / --precision",
            fix="use fp32, bf16 or auto",
        )
    check_ranges(cfg, ("model", "gan", "recon", "train"), "the training configuration")


def check_training_fits(cfg: SganConfig, geometry: Geometry, dictionary: DictionaryFile | None, n_images: int) -> None:
    """Refuse, before any allocation, a run whose nets (counted on the meta device: weights,
    gradients and two Adam moments) plus the data as floats plus one batch's activations
    cannot fit in memory (widths, z_dim, batch size, image size)."""
    from .validation import check_batch_memory, check_memory

    check_train_config(cfg)
    gan = resolve_gan(cfg.gan)
    with torch.device("meta"):
        nets = [build_generator(cfg.model, geometry, dictionary), build_critic(cfg.model, gan.objective, geometry)]
        if cfg.recon.mode != "none":
            nets.append(build_encoder(cfg.model, geometry, cfg.recon.mode))
    params = sum(p.numel() for net in nets for p in net.parameters())
    image = geometry.channels * geometry.size**2 * 4
    check_memory(
        params * 4 * 4 + n_images * image,
        f"nets of {params:,} parameters (with gradients and optimiser state) and {n_images} training images",
        "model.z_dim / model.*_width / --data",
        "use smaller widths (--set model.g_width=…), a smaller model.z_dim, or fewer images (--limit)",
    )
    check_batch_memory(
        cfg.train.batch_size,
        cfg.train.batch_size,
        image,
        f"{geometry.channels}×{geometry.size}×{geometry.size} training images",
    )


def new_state(
    cfg: SganConfig, geometry: Geometry, dictionary: DictionaryFile | None, device: torch.device
) -> TrainState:
    """Fresh nets and optimisers, seeded by ``train.seed``."""
    import copy

    from .auto import resolve_arch

    resolve_arch(
        cfg, dictionary.patch if dictionary is not None else None, dictionary is not None, device.type
    )  # --arch auto
    gan = resolve_gan(cfg.gan)
    check_train_config(cfg)
    torch.manual_seed(cfg.train.seed)  # parameter initialisation: G, then D, then E
    layout = preferred_layout(device)  # before the optimisers: their states take the parameters' layout
    G = build_generator(cfg.model, geometry, dictionary).to(device, memory_format=layout)
    D = build_critic(cfg.model, gan.objective, geometry).to(device, memory_format=layout)
    if cfg.train.sync_bn and distributed.current().distributed:  # before the optimisers take the parameters
        G = distributed.sync_batchnorm(G, device.type == "cuda")  # type: ignore[assignment]
        D = distributed.sync_batchnorm(D, device.type == "cuda")  # type: ignore[assignment]
    rng = torch.Generator(device="cpu").manual_seed(cfg.train.seed + 1)
    fixed_z = torch.randn(64, cfg.model.z_dim, generator=torch.Generator().manual_seed(cfg.train.seed + 2))
    state = TrainState(
        G,
        D,
        make_optimizer(G.parameters(), gan, gan.lr_g),
        make_optimizer(D.parameters(), gan, gan.lr_d),
        rng,
        fixed_z.to(device),
    )
    if cfg.recon.mode != "none":
        state.encoder = build_encoder(cfg.model, geometry, cfg.recon.mode).to(device, memory_format=layout)
        state.opt_e = adam(state.encoder.parameters(), cfg.recon.lr, (0.5, 0.9))
    if cfg.train.ema > 0:
        state.ema = copy.deepcopy(G).requires_grad_(False)
    if dictionary is not None:
        state.controller = make_controller(G.threshold, cfg.model, dictionary_sparsity(cfg.model, dictionary))
    return state


def _critic_scores(D: Critic, x: Tensor, fake: Tensor, joint: bool) -> tuple[Tensor, Tensor]:
    """D(x) and D(G(z)). ``joint``: one forward over the concatenated batch [2B, C, H, W] —
    the same numbers when the critic treats samples independently (no BatchNorm, no
    minibatch discrimination), with half the kernel launches."""
    if joint:
        scores = D(torch.cat([x, fake]))
        return scores[: x.shape[0]], scores[x.shape[0] :]
    return D(x), D(fake)


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


def _recon_phase(state: TrainState, cfg: SganConfig, real: Tensor, amp: torch.dtype | None = None) -> dict[str, float]:
    """The third player, after the generator's adversarial step.

    latent (seed 002, Algorithm 1 lines 14–19): ``recon.steps`` encoder updates on
    ‖E(G(z)) − z‖² over fresh z (G frozen), then one generator update on
    recon.weight·‖G(E(x)) − x‖² over real x with E frozen.
    vae (seed 000): ``recon.steps`` joint updates of E and G on the VAE loss of real x,
    z = μ + σ·ε.
    """
    G, E, rc = state.generator, state.encoder, cfg.recon
    assert E is not None and state.opt_e is not None
    device, n, B, z_dim = real.device, real.shape[0], cfg.train.batch_size, cfg.model.z_dim
    out: dict[str, float] = {}
    if rc.mode == "latent":
        for _ in range(rc.steps):
            z = distributed.shard(torch.randn(B, z_dim, generator=state.rng)).to(device)
            with autocast(device, amp):
                with torch.no_grad():  # E learns to invert the current G; G is not updated here
                    xg = G(z)
                loss_e = latent_recon_loss(E(xg), z)
            state.opt_e.zero_grad(set_to_none=True)
            loss_e.backward()
            distributed.step(state.opt_e)
            out["recon_e"] = loss_e.item()
        x = real[distributed.shard(torch.randint(0, n, (B,), generator=state.rng)).to(device)]
        with autocast(device, amp):
            with torch.no_grad():  # E frozen: z_x = E*(x) is data for the generator step
                zx = E(x)
            loss_r = image_recon_loss(G(zx), x)
        state.opt_g.zero_grad(set_to_none=True)
        (rc.weight * loss_r).backward()
        distributed.step(state.opt_g)
        out["recon_g"] = loss_r.item()
        return out
    for _ in range(rc.steps):  # vae
        x = real[distributed.shard(torch.randint(0, n, (B,), generator=state.rng)).to(device)]
        with autocast(device, amp):
            mu, logvar = E.stats(x)
            eps = distributed.shard(torch.randn(B, mu.shape[1], generator=state.rng)).to(device)
            x_hat = G(mu.float() + torch.exp(0.5 * logvar.float()) * eps)
            loss, kl = vae_loss(x_hat, x, mu, logvar, rc.kl_weight)
        state.opt_e.zero_grad(set_to_none=True)
        state.opt_g.zero_grad(set_to_none=True)
        (rc.weight * loss).backward()
        distributed.step(state.opt_e)
        distributed.step(state.opt_g)
        out["vae"], out["kl"] = loss.item(), kl.item()
    return out


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
    G, D = state.generator, state.critic
    device = real.device
    amp = resolve_precision(cfg.train.precision, device)
    if real.dim() == 4:  # minibatches in the nets' layout (a no-op when the caller converted once)
        real = real.contiguous(memory_format=preferred_layout(device))
    n, B, z_dim = real.shape[0], cfg.train.batch_size, cfg.model.z_dim
    beta, fm = cfg.model.beta, cfg.gan.feature_matching
    joint = D.mbd is None and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    shard, step_opt = (
        distributed.shard,
        distributed.step,
    )  # this rank's rows of each global draw; averaged-gradient steps
    for m in state.modules().values():
        m.train()
    t_log, imgs_log = time.perf_counter(), 0
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    agreed_stop = False  # under torchrun: the ranks' stop requests, combined after each iteration
    while state.step < until:
        if agreed_stop if distributed.current().distributed else (should_stop is not None and should_stop()):
            break
        D.requires_grad_(True)
        for _ in range(gan.critic_steps):
            idx = shard(torch.randint(0, n, (B,), generator=state.rng)).to(device)
            z = shard(torch.randn(B, z_dim, generator=state.rng)).to(device)
            x = real[idx]
            with autocast(device, amp):
                with torch.no_grad():  # the critic step needs G(z) as data, not G's graph
                    fake = G(z)
                real_scores, fake_scores = _critic_scores(D, x, fake, joint)
                loss_d = critic_loss(gan.objective, real_scores, fake_scores)
                gp = torch.zeros((), device=device)
                if gan.objective == "wgan-gp":
                    gp = gradient_penalty(D, x, fake, eps=shard(torch.rand(B, generator=state.rng)))
                    loss_d = loss_d + gan.gp_lambda * gp
            state.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            step_opt(state.opt_d)
            if gan.objective == "wgan":
                clip_weights(D, gan.clip)
        # the generator step needs gradients through D to the images, not to D's weights
        D.requires_grad_(False)
        z = shard(torch.randn(B, z_dim, generator=state.rng)).to(device)
        with autocast(device, amp):
            fake, codes = G.forward_codes(z)
            f_fake = D.features(fake)
            loss_adv = generator_loss(gan.objective, D.score(f_fake))
            l1 = l1_code_penalty(codes).to(device)
            loss_g = loss_adv + beta * l1
            values = {"loss_d": loss_d.item(), "loss_g": loss_adv.item(), "gp": gp.item(), "l1": l1.item()}
            if fm > 0:
                x = real[shard(torch.randint(0, n, (B,), generator=state.rng)).to(device)]
                with torch.no_grad():
                    f_real = D.features(x)
                loss_fm = feature_matching_loss(f_real, f_fake, mean=distributed.global_mean)
                loss_g = loss_g + fm * loss_fm
                values["fm"] = loss_fm.item()
        state.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        step_opt(state.opt_g)
        D.requires_grad_(True)
        if codes is not None:
            support = (codes != 0).float().flatten(1).mean(1)  # [B] per code vector's image
            values["support"] = float(support.mean())
            if state.controller is not None:
                # the global batch's support (the same on every rank under torchrun), so λ stays identical
                global_support = float(distributed.global_mean(support))
                state.controller.update(global_support)
                values["support_target"] = state.controller.target
            elif cfg.model.sparsity == "topk" and cfg.model.topk is not None:
                values["support_target"] = cfg.model.topk / codes.shape[1]  # k of K per code vector
            elif cfg.model.support_target is not None:
                values["support_target"] = cfg.model.support_target
            lam = head_lambda(G.threshold)
            if lam is not None:
                values["lambda"] = lam
        state.step += 1
        if state.encoder is not None and cfg.recon.steps > 0 and state.step % cfg.recon.every == 0:
            values.update(_recon_phase(state, cfg, real, amp))
        if state.ema is not None:
            _update_ema(state.ema, G, cfg.train.ema)
        # one collective per step: the global batch's means for the log (a NaN on any rank
        # reaches all, so every rank stops below together), and any rank's stop request
        asked = (should_stop is not None and should_stop()) or distributed.stop_requested()
        agreed_stop, means = distributed.any_rank(asked, list(values.values()))
        values = dict(zip(values, means))
        if not all(math.isfinite(v) for v in values.values()):
            raise SganError(
                f"training diverged at step {state.step}: a loss became NaN or inf ({values})",
                where=f"step {state.step}",
                fix="lower the learning rates (--set gan.lr_g=…, gan.lr_d=…) or resume from the last checkpoint",
            )
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        imgs_log += B * (gan.critic_steps + 1)
        if on_step is not None:
            on_step(state.step)
        if on_log is not None and (
            state.step % cfg.train.log_every == 0
            or state.step == until
            or state.step == early_log_step(cfg.train.log_every)
        ):
            now = time.perf_counter()
            entry = {
                "step": state.step,
                **{k: v / counts[k] for k, v in sums.items()},
                "images_per_s": imgs_log / max(now - t_log, 1e-9),
            }
            on_log(entry)
            sums, counts, t_log, imgs_log = {}, {}, now, 0


def early_log_step(log_every: int) -> int:
    """One early metrics.jsonl line (step 10) when the log interval is longer, so a slow run
    shows its pace, and what it is learning, within its first steps."""
    return 10 if log_every > 10 else log_every


def state_tensors(state: TrainState) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Flatten a TrainState into safetensors tensors and JSON metadata (no pickle)."""
    tensors: dict[str, Tensor] = {}
    meta: dict[str, str] = {"step": str(state.step)}
    for prefix, module in state.modules().items():
        for k, v in module.state_dict().items():
            tensors[f"{prefix}.{k}"] = v
    for prefix, opt in state.optimizers().items():
        sd = opt.state_dict()
        for pid, st in sd["state"].items():
            for k, v in st.items():
                tensors[f"{prefix}.state.{pid}.{k}"] = v if isinstance(v, Tensor) else torch.tensor(v)
        meta[f"{prefix}.param_groups"] = json.dumps(sd["param_groups"])
    tensors["rng.state"] = state.rng.get_state()
    # every rank's stream, [world size, state bytes] (a collective under torchrun: all ranks call this)
    tensors["rng.rank_states"] = distributed.gather_rows(state.rng.get_state())
    meta["world_size"] = str(distributed.current().size)
    tensors["fixed_z"] = state.fixed_z
    return tensors, meta


def load_state_tensors(state: TrainState, tensors: dict[str, Tensor], meta: dict[str, str]) -> None:
    """Inverse of :func:`state_tensors`, into a freshly built state of the same config."""
    for prefix, module in state.modules().items():
        sd = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        module.load_state_dict(sd)
    for prefix, opt in state.optimizers().items():
        groups = json.loads(meta[f"{prefix}.param_groups"])
        st: dict[int, dict[str, Tensor]] = {}
        head = prefix + ".state."
        for k, v in tensors.items():
            if k.startswith(head):
                pid, name = k[len(head) :].split(".", 1)
                st.setdefault(int(pid), {})[name] = v
        opt.load_state_dict({"state": st, "param_groups": groups})
        _match_state_layout(opt)
    ranks = tensors.get(
        "rng.rank_states"
    )  # absent in checkpoints from before torchrun support; clone: set_state ignores a view's offset
    state.rng.set_state(ranks[distributed.current().rank].clone() if ranks is not None else tensors["rng.state"])
    state.fixed_z = tensors["fixed_z"].to(state.fixed_z.device)
    state.step = int(meta["step"])


def check_checkpoint_fits(state: TrainState, tensors: dict[str, Tensor], meta: dict[str, str], path: Path) -> None:
    """Load a checkpoint into ``state`` after checking its tensor names and shapes against the
    nets its config builds (a critic or generator file copied over checkpoint.safetensors, a
    hand-edited config); any mismatch is one SganError naming the file, never a traceback."""
    fix = "resume from the checkpoint.safetensors that sgan train wrote in this run folder, or start over with --force"
    for prefix, module in state.modules().items():
        expected = {f"{prefix}.{k}": tuple(v.shape) for k, v in module.state_dict().items()}
        for name, shape in expected.items():
            if name not in tensors:
                raise SganError(
                    f"{path} is not a training checkpoint of this run: it lacks the tensor {name!r}",
                    where=str(path),
                    fix=fix,
                )
            if tuple(tensors[name].shape) != shape:
                raise SganError(
                    f"{path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                    f"but the run's config builds {shape}",
                    where=str(path),
                    fix=fix,
                )
        extra = sorted(
            k
            for k in tensors
            if k.startswith(prefix + ".") and k not in expected and not k.startswith(prefix + ".state.")
        )
        if extra:
            raise SganError(
                f"{path}: tensors {', '.join(extra[:3])} do not belong to the run's {prefix}", where=str(path), fix=fix
            )
    for name in ("rng.state", "fixed_z"):
        if name not in tensors:
            raise SganError(
                f"{path} is not a training checkpoint: it lacks the tensor {name!r}", where=str(path), fix=fix
            )
    step = meta.get("step", "")
    if not step.isdigit():
        raise SganError(f"{path}: metadata 'step' must be a whole number ≥ 0, got {step!r}", where=str(path), fix=fix)
    try:
        load_state_tensors(state, tensors, meta)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError, json.JSONDecodeError) as exc:
        raise SganError(
            f"{path}: the optimiser or RNG state does not fit the run "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            where=str(path),
            fix=fix,
        ) from None


def _match_state_layout(opt: torch.optim.Optimizer) -> None:
    """Give each loaded optimiser state tensor its parameter's strides (checkpoints store
    them contiguous; parameters may be channels-last). Needed for correctness, not only
    speed: the fused Adam kernel walks parameter and state memory in the same order, so
    mismatched layouts would pair the wrong elements."""
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k, v in st.items():
                if isinstance(v, Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


RUN_SECTIONS = ("data", "model", "gan", "recon", "train")  # the config sections a training run uses


def config_json(cfg: SganConfig) -> dict[str, Any]:
    """The sections a run uses, with the objective's defaults filled in (what really ran)."""
    check_train_config(cfg)
    out = {k: to_dict(getattr(cfg, k)) for k in RUN_SECTIONS}
    gan = resolve_gan(cfg.gan)
    out["gan"].update(
        critic_steps=gan.critic_steps, lr_g=gan.lr_g, lr_d=gan.lr_d, beta1=gan.betas[0], beta2=gan.betas[1]
    )
    return out


# what a run folder holds (all of it is replaced by a --force run, none of it by another command)
RUN_OUTPUTS = (
    "checkpoint.safetensors", "generator.safetensors", "critic.safetensors", "reconstructor.safetensors",
    "config.yaml", "metrics.jsonl", "grids", "curves.png", "tensorboard",
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
    }


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


def _save_outputs(
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

    from .contracts import write_file
    from .outputs import AtomicGroup

    tensors, meta = state_tensors(state)
    if not distributed.is_main():
        return
    conf = config_json(cfg)
    geo = {
        "channels": str(geometry.channels),
        "image_size": str(geometry.size),
        "step": str(state.step),
        "sparse": json.dumps(dictionary is not None),
    }
    g_tensors = dict(state.generator.state_dict())  # includes the dictionary (synthesis buffers)
    if dictionary is not None:
        geo["dictionary_patch"] = json.dumps(dictionary.patch)
        geo["dictionary_stride"] = str(dictionary.stride)
    g_meta = {**geo, "ema": json.dumps(state.ema is not None)}
    if state.ema is not None:  # the averaged weights beside the raw ones: `sgan sample --ema`
        g_tensors.update({f"ema.{k}": v for k, v in state.ema.state_dict().items()})
    text = yaml.safe_dump(conf, sort_keys=False)
    with AtomicGroup() as group:
        write_file(
            paths["checkpoint"],
            "sgan.checkpoint",
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
            "sgan.generator",
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
            "sgan.checkpoint",
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
                "sgan.checkpoint",
                e_tensors,
                config=conf,
                lineage=lineage,
                meta=e_meta,
                force=True,
                group=group,
            )


def _write_grid(state: TrainState, path: Path) -> Tensor:
    """Samples from the fixed z (the same 64 latents all run long), as one PNG; from the
    EMA generator when there is one (what `sgan sample --ema` draws from)."""
    from .images import grid_scale, make_grid, save_png, to_uint8

    G = state.ema if state.ema is not None else state.generator
    was_training = G.training
    G.eval()
    with torch.no_grad():
        imgs = to_uint8(G(state.fixed_z).cpu())
    G.train(was_training)
    grid = make_grid(imgs, nrow=8, scale=grid_scale(imgs.shape[-1]))
    save_png(grid, path)
    return grid


def check_world_size(meta: dict[str, str], size: int, out: Path) -> None:
    """A run resumes bit for bit only with the world size it was saved with (the global batch
    is split into that many per-rank shards; BatchNorm statistics are per shard)."""
    raw = meta.get("world_size", "1")  # absent in checkpoints from before torchrun support: one process
    if not raw.isdigit() or int(raw) < 1:
        raise SganError(
            f"{out}: checkpoint metadata 'world_size' must be a whole number ≥ 1, got {raw!r}",
            where=str(out),
            fix="resume from the checkpoint.safetensors that sgan train wrote, or start over with --force",
        )
    saved = int(raw)
    if saved != size:
        how = (
            "without torchrun"
            if saved == 1
            else f"with torchrun --nproc-per-node {saved} (or that many ranks over all nodes)"
        )
        raise SganError(
            f"the run in {out} was trained with {saved} process(es) and this "
            f"resume has {size}; it continues exactly only with the same number",
            where=str(out),
            fix=f"resume {how}, or start a new run with --force or another --out",
        )


def refuse_ignored_on_resume(out: Path, options: Sequence[str]) -> None:
    """A resumed run keeps its saved configuration: options that would silently lose to it
    (anything but the number of steps and the device) are an error instead."""
    if options:
        raise SganError(
            f"--resume continues the run in {out} with its own configuration, so {', '.join(options)} would be ignored",
            where=str(out),
            fix="resume with only --steps (and --device), or start a new run with --force or another --out",
        )


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
    from .outputs import locked_folder

    # under torchrun rank 0 holds the lock (and writes); the others read the folder once it has recovered it
    with locked_folder(out, "sgan train") if distributed.is_main() else contextlib.nullcontext():
        distributed.barrier()
        return _train_locked(cfg, out, resume=resume, force=force, progress=progress, stop=stop, hooks=hooks)


def _resume_config(cfg: SganConfig, saved: dict[str, Any], path: Path) -> None:
    """The run's own configuration wins, except how long to train and on which device; each
    saved value is type- and range-checked like a recipe's (SganError naming ``path``)."""
    steps, device_name = cfg.train.steps, cfg.train.device
    for section in RUN_SECTIONS:
        setattr(cfg, section, section_from_file(saved, section, type(getattr(cfg, section)), path))
    cfg.train.steps = steps
    legacy_sparsity(cfg.model, saved.get("model", {}))
    if device_name != "auto":  # an explicit --device moves the run (CPU ↔ CUDA)
        cfg.train.device = device_name


def _absolute_inputs(cfg: SganConfig) -> None:
    """Record input paths as absolute paths, so a run resumed from another working folder (or a
    copied run) finds the same data."""
    from .data import DATASET_NAMES

    if cfg.data.root:
        cfg.data.root = str(Path(cfg.data.root).expanduser().resolve())
    if cfg.data.name not in DATASET_NAMES and Path(cfg.data.name).exists():
        cfg.data.name = str(Path(cfg.data.name).resolve())


def checkpoint_dictionary(ckpt: Any) -> Any:
    """The dictionary a run trains with, rebuilt from the generator's synthesis buffers in its
    checkpoint (a resumed run needs no dictionary file, so a copied run resumes anywhere);
    None for a dense run."""
    from .contracts import SganFile
    from .run_files import generator_dictionary

    head = "generator."
    g = SganFile(
        ckpt.path,
        "sgan.generator",
        ckpt.schema,
        {k[len(head) :]: v for k, v in ckpt.tensors.items() if k.startswith(head)},
        ckpt.config,
        ckpt.lineage,
        ckpt.meta,
    )
    if g.meta.get("sparse") != "true":
        return None
    if "synthesis.atoms" not in g.tensors and "synthesis.kernel" not in g.tensors:
        raise SganError(
            f"the checkpoint {ckpt.path} of a sparse run holds no dictionary (generator.synthesis.*)",
            where=str(ckpt.path),
            fix="start the run again with --force",
        )
    return generator_dictionary(g)


def _trim_log(paths: dict[str, Path], step: int) -> None:
    """After an interruption, forget what the run logged past its checkpoint (it is redone):
    metrics.jsonl keeps its entries up to ``step`` (and drops a line torn by a kill), grids of
    later steps are removed."""
    from .outputs import atomic_write

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


def _open_run(cfg: SganConfig, out: Path, resume: bool, force: bool) -> Any:
    """Stage 1: what is in the (locked) folder decides. With ``resume``: its checkpoint (an
    SganFile), whose configuration then holds in ``cfg``; ``--steps`` below its step is refused
    before anything is written. Without: None, refusing a folder that holds a run unless ``force``."""
    from .contracts import read_file

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
    ckpt = read_file(paths["checkpoint"], "sgan.checkpoint", what="checkpoint")
    from .contracts import meta_int
    from .validation import CHANNELS, INT64_MAX, SIZE, Range

    meta_int(ckpt.meta, "channels", ckpt.path, CHANNELS)
    meta_int(ckpt.meta, "image_size", ckpt.path, SIZE)
    _resume_config(cfg, ckpt.config, ckpt.path)
    done = meta_int(ckpt.meta, "step", ckpt.path, Range(0, INT64_MAX))
    if cfg.train.steps < done:
        raise SganError(
            f"the run in {out} is already at step {done}, so --steps {cfg.train.steps} would go back",
            where=str(out),
            fix=f"give --steps above {done} to train further, or start over with --force",
        )
    return ckpt


def _run_inputs(cfg: SganConfig, out: Path, ckpt: Any) -> tuple[Any, Geometry, DictionaryFile | None, dict[str, str]]:
    """Stage 2: the data, its geometry, the dictionary and the lineage recorded in every file.
    A resumed run takes its atoms from the checkpoint and refuses data whose content changed."""
    from .contracts import content_hash, load_dictionary
    from .data import load_data

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
    from .auto import resolve_auto
    from .dictionary import resolve_device
    from .outputs import Staging

    paths = run_dir_paths(out)
    ckpt = _open_run(cfg, out, resume, force)
    if cfg.train.steps < 1 or cfg.train.batch_size < 1:
        raise SganError(
            "train.steps and train.batch_size must be positive",
            where="--steps / --batch-size",
            fix="give positive numbers",
        )
    world = distributed.current()
    distributed.check_divisible(cfg.train.batch_size, "train.batch_size / --batch-size")
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
    main = world.main  # under torchrun rank 0 alone writes; the other ranks compute and join the saves
    if ckpt is not None and main:
        _trim_log(paths, start)
    # a resumed run writes in place (each save is atomic); a new one in a staging folder until its first checkpoint
    staging = None if resume or not main else Staging(out)
    with staging if staging is not None else contextlib.nullcontext():
        work = paths if staging is None else run_dir_paths(staging.dir)
        if main:
            work["grids"].mkdir(parents=True, exist_ok=True)
        last: dict[str, float] = {}
        t0 = time.perf_counter()

        def save() -> None:
            nonlocal work
            _save_outputs(state, cfg, work, dictionary, geometry, lineage)
            if staging is not None and not staging.published:  # the new run's first checkpoint: swap it in
                staging.publish(
                    remove=[name for name in RUN_OUTPUTS if (out / name).exists()], commit=paths["checkpoint"].name
                )
                work = paths

        def on_log(entry: dict[str, float]) -> None:
            nonlocal last
            entry["wall_s"] = time.perf_counter() - t0
            last = entry
            if not main:
                return
            with open(work["metrics"], "a") as fh:
                fh.write(json.dumps(entry) + "\n")
            for hook in hooks:
                hook.log(entry, work["metrics"].parent)

        def on_step(step: int) -> None:
            if progress is not None and main:
                progress(
                    step,
                    cfg.train.steps,
                    {
                        k: v
                        for k, v in last.items()
                        if k in ("loss_d", "loss_g", "recon_g", "vae", "support", "images_per_s")
                    },
                )
            if main and (step % cfg.train.grid_every == 0 or step == cfg.train.steps):
                grid = _write_grid(state, work["grids"] / f"step-{step:06d}.png")
                for hook in hooks:
                    hook.grid(step, grid, work["metrics"].parent)
            if step % cfg.train.save_every == 0 and step != cfg.train.steps:
                save()

        try:
            train_steps(state, cfg, real, cfg.train.steps, on_log=on_log, on_step=on_step, should_stop=stop)
            interrupted = state.step < cfg.train.steps
            if state.step > start:
                save()
        finally:
            for hook in hooks:
                hook.close(work["metrics"].parent)
    arch = (
        cfg.model.arch
        if critic_arch(cfg.model) == cfg.model.arch
        else f"{cfg.model.arch}, critic {critic_arch(cfg.model)}"
    )
    return TrainResult(
        out,
        state.step,
        start,
        time.perf_counter() - t0,
        last,
        dictionary is not None,
        precision,
        interrupted,
        cfg.train.steps,
        arch,
        arch_auto,
    )
