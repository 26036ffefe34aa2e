"""The nets and optimisers of a training run, built from the configuration.

The generator's body follows ``model.arch`` (an MLP, DCGAN's fractionally strided
convolutions, or residual blocks); a dictionary gives it a sparse head and a fixed synthesis
(whole-image atoms: Ganz & Blau, *Sparse GAN*; patch atoms: Mahdizadehaghdam, Panahi, Krim,
*Sparse Generative Adversarial Network*, ICCV Workshops 2019). The critic and the encoder are
feature extractors of ``model.critic_arch`` with a score or latent head. The objective's
defaults (critic steps, optimiser, learning rate, Adam's β) follow the table of Goyal,
*Generative Adversarial Nets (GANs): Training Algorithms* (EE5239 report, 2019).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from .config import GanConfig, ModelConfig, SganConfig, check_range, check_ranges
from .contracts import DictionaryFile
from .critics import FEATURES, Critic, Encoder
from .errors import SganError
from .losses import OBJECTIVES
from .nets import (
    DCGANBody,
    Generator,
    MLPBody,
    PatchSynthesis,
    ResNetBody,
    TinyBody,
    WholeImageSynthesis,
    dcgan_init,
)
from .paper_nets import CONV_BODIES, PAPER_ARCHS, PAPER_FEATURES, VECTOR_BODIES, no_dropout
from .precision import PRECISIONS
from .sparsity import ResolvedSparsity, check_sparsity_config, resolve_sparsity, sparse_head
from .validation import check_batch_memory, check_memory

N = TypeVar("N", Critic, Encoder)

ARCHS = ("mlp", "dcgan", "resnet", "pacgan-tiny", *PAPER_ARCHS)  # paper_nets: the papers' own nets
RECON_MODES = ("none", "latent", "vae")

# objective → (critic steps, optimiser, lr, β₁, β₂), from Goyal's table (EE5239 report, 2019)
OBJECTIVE_DEFAULTS: dict[str, tuple[int, str, float, float, float]] = {
    "gan": (1, "adam", 2e-4, 0.5, 0.999),
    "wgan": (5, "rmsprop", 5e-5, 0.0, 0.0),
    "wgan-gp": (5, "adam", 1e-4, 0.5, 0.9),
    "hinge": (1, "adam", 2e-4, 0.0, 0.9),
}


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
            where="gan.objective",
            fix=f"use one of {', '.join(OBJECTIVES)}",
        )
    steps, opt, lr, b1, b2 = OBJECTIVE_DEFAULTS[cfg.objective]
    critic_steps = cfg.critic_steps if cfg.critic_steps is not None else steps
    check_range("gan.critic_steps", critic_steps, "the gan configuration")
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
            f"unknown architecture {arch!r}", where="model.arch", fix=f"use one of auto, {', '.join(ARCHS)}"
        )


def _conv_body(model: ModelConfig, out_channels: int, size: int) -> nn.Module:
    """The convolutional generator body: DCGAN's fractionally strided convs, residual blocks, the
    tiny stacked-MNIST generator of PacGAN (Lin et al. 2018), or a paper's own (paper_nets)."""
    cls = {"resnet": ResNetBody, "pacgan-tiny": TinyBody, **CONV_BODIES}.get(model.arch, DCGANBody)
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
        synthesis = WholeImageSynthesis(dictionary.atoms, C, S, mean, clip=model.clip_images)
        return Generator(_vector_body(model, K), threshold, synthesis)
    if model.arch in ("mlp", *VECTOR_BODIES):
        raise SganError(
            "a patch dictionary needs a convolutional generator",
            where="model.arch",
            fix="use --arch dcgan (or goyal, resnet) with patch dictionaries",
        )
    stride = dictionary.stride if dictionary.stride == dictionary.patch else 1
    synth = PatchSynthesis(dictionary.atoms, C, dictionary.patch, S, stride=stride, mean=mean, clip=model.clip_images)
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

    Mahdizadehaghdam et al. used a ResNet-50 for E; ours is the critic's architecture at ``model.e_width``.
    """
    if mode not in ("latent", "vae"):
        raise SganError(f"unknown reconstructor mode {mode!r}", where="recon.mode", fix="use latent or vae")
    encoder = Encoder(no_dropout(_features(critic_arch(model), geometry, model.e_width, "none")), model.z_dim, mode)
    return _tiny_head_init(model, encoder)


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
    check_range("model.minibatch_disc", model.minibatch_disc, "the model configuration")
    check_range("model.mbd_dim", model.mbd_dim, "the model configuration")
    check_range("model.pack", model.pack, "the model configuration")
    # packing (PacGAN, Lin et al. 2018): the features read m samples concatenated along channels
    packed = Geometry(geometry.channels * model.pack, geometry.size)
    critic = Critic(
        _features(critic_arch(model), packed, model.d_width, norm), model.minibatch_disc, model.mbd_dim, model.pack
    )
    return _tiny_head_init(model, critic)


def _tiny_head_init(model: ModelConfig, net: N) -> N:
    """PacGAN's tiny critic draws its linear head as its convolutions (:func:`dcgan_init`);
    other architectures keep PyTorch's defaults."""
    if critic_arch(model) == "pacgan-tiny":
        dcgan_init(net.head)
    return net


def check_pack(batch_size: int, pack: int, world_size: int) -> None:
    """The packed critic scores packs of ``pack`` consecutive samples of each rank's batch:
    the global batch must split into ``world_size`` shards of whole packs."""
    if batch_size % (pack * world_size):
        unit = pack * world_size
        ranks = f" × {world_size} ranks" if world_size > 1 else ""
        raise SganError(
            f"the batch of {batch_size} does not split into packs of {pack}{ranks} (model.pack = {pack})",
            where="train.batch_size / --batch-size, model.pack / --pack",
            fix=f"use a batch size that is a multiple of {unit}, e.g. {max(unit, batch_size - batch_size % unit)}",
        )


def make_optimizer(params: Any, gan: ResolvedGan, lr: float) -> torch.optim.Optimizer:
    """The objective's optimiser. Adam runs fused (one kernel for all parameters, CPU or CUDA)
    and RMSprop multi-tensor (foreach): the same update rule, far fewer small kernels than the
    per-parameter default, which dominates small nets on CPU."""
    if gan.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=True)
    return adam(params, lr, gan.betas)


def adam(params: Any, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)


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
            where="recon.mode",
            fix="use none, latent or vae",
        )
    if cfg.train.precision not in PRECISIONS:
        raise SganError(
            f"unknown precision {cfg.train.precision!r}",
            where="train.precision",
            fix="use fp32, bf16 or auto",
        )
    check_ranges(cfg, ("model", "gan", "recon", "train"), "the training configuration")
    _check_evaluation(cfg.train.eval_every, cfg.train.eval_features)


def _check_evaluation(every: int, features: str | None) -> None:
    """train.eval_every > 0 needs train.eval_features: "inception" or "classifier:FILE"."""
    if every == 0:
        return
    how = 'set train.eval_features to "classifier:FILE" (a file from sgan classifier) or "inception"'
    if features is None:
        raise SganError(
            f"train.eval_every is {every} but train.eval_features is not set", where="train.eval_features", fix=how
        )
    if features != "inception" and not (features.startswith("classifier:") and len(features) > len("classifier:")):
        raise SganError(f"unknown train.eval_features {features!r}", where="train.eval_features", fix=how)


def check_training_fits(cfg: SganConfig, geometry: Geometry, dictionary: DictionaryFile | None, n_images: int) -> None:
    """Refuse, before any allocation, a run whose nets (counted on the meta device: weights,
    gradients and two Adam moments) plus the data as floats plus one batch's activations
    cannot fit in memory (widths, z_dim, batch size, image size)."""
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
        "train.batch_size",
    )
    if cfg.model.minibatch_disc:  # its pairwise distances grow with the batch squared: [n, n, kernels, dim]
        n = max(1, cfg.train.batch_size // cfg.model.pack)
        kernels, dim = cfg.model.minibatch_disc, cfg.model.mbd_dim
        check_memory(
            4 * n * n * kernels * dim * 4,  # float32, kept with its absolute value and both gradients
            f"minibatch discrimination over {n} critic inputs with {kernels} kernels of {dim}",
            "model.minibatch_disc / --minibatch-disc",
            "use fewer kernels (--minibatch-disc), a smaller model.mbd_dim, or a smaller --batch-size",
        )
