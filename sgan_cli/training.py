"""The training loop (``sgan train``): critic steps, generator step, logging, checkpoints.

One iteration (DESIGN §2.3): ``critic_steps`` critic updates on real minibatches against
G(z) computed under no_grad (the generator's graph is not needed there), then one
generator update on the adversarial loss plus β·mean|a| for sparse codes. Every random
draw (minibatch indices, z, the gradient penalty's ε) comes from one explicit
``torch.Generator`` whose state is checkpointed with the nets and optimisers, so a resumed
run continues bit for bit on CPU.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import GanConfig, ModelConfig, SganConfig, to_dict
from .contracts import DictionaryFile
from .errors import SganError
from .losses import OBJECTIVES, clip_weights, critic_loss, generator_loss, gradient_penalty, l1_code_penalty
from .nets import DCGANBody, DCGANCritic, Generator, MLPBody, MLPCritic, PatchSynthesis, SoftThreshold, WholeImageSynthesis

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
        raise SganError(f"unknown objective {cfg.objective!r}", where="gan.objective / --gan", fix=f"use one of {', '.join(OBJECTIVES)}")
    steps, opt, lr, b1, b2 = OBJECTIVE_DEFAULTS[cfg.objective]
    critic_steps = cfg.critic_steps if cfg.critic_steps is not None else steps
    if critic_steps < 1:
        raise SganError(f"gan.critic_steps must be at least 1, got {critic_steps}", where="gan.critic_steps", fix="give a positive number")
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


def check_dictionary_fits(d: DictionaryFile, geometry: Geometry, source: str) -> None:
    """A dictionary and the data must agree on channels and (whole-image) size."""
    if d.channels != geometry.channels:
        raise SganError(
            f"the dictionary {source} has {d.channels}-channel atoms but the data has {geometry.channels} channels",
            where=source,
            fix="learn a dictionary on this data set with sgan learn-dict",
        )
    if d.patch is None and d.image_size != geometry.size:
        raise SganError(
            f"the dictionary {source} has whole-image atoms of {d.image_size}×{d.image_size}, but the data is {geometry.size}×{geometry.size}",
            where=source,
            fix="learn a dictionary on this data set (or pass --image-size to match)",
        )
    if d.patch is not None and d.patch > geometry.size:
        raise SganError(f"the dictionary's {d.patch}×{d.patch} patches exceed the {geometry.size}×{geometry.size} images", where=source, fix="use a smaller patch dictionary")


def build_generator(model: ModelConfig, geometry: Geometry, dictionary: DictionaryFile | None) -> Generator:
    """Body by ``model.arch``; a sparse head when a dictionary is given, else dense tanh."""
    if model.arch not in ("mlp", "dcgan"):
        raise SganError(f"unknown architecture {model.arch!r}", where="model.arch / --arch", fix="use mlp or dcgan")
    C, S = geometry.channels, geometry.size
    if dictionary is None:
        body: nn.Module = MLPBody(model.z_dim, C * S * S, model.g_width) if model.arch == "mlp" else DCGANBody(model.z_dim, C, S, model.g_width)
        return Generator(body, image_shape=(C, S, S))
    K = dictionary.n_atoms
    threshold = SoftThreshold(model.threshold, learnable=model.learn_threshold)
    if dictionary.patch is None:
        # whole-image codes are one vector per image: an MLP body whatever model.arch (seed 000)
        return Generator(MLPBody(model.z_dim, K, model.g_width), threshold, WholeImageSynthesis(dictionary.atoms, C, S))
    if model.arch == "mlp":
        raise SganError("a patch dictionary needs a convolutional generator", where="model.arch / --arch", fix="use --arch dcgan with patch dictionaries")
    stride = dictionary.stride if dictionary.stride == dictionary.patch else 1
    synth = PatchSynthesis(dictionary.atoms, C, dictionary.patch, S, stride=stride)
    return Generator(DCGANBody(model.z_dim, K, synth.code_size, model.g_width), threshold, synth)


def build_critic(model: ModelConfig, objective: str, geometry: Geometry) -> nn.Module:
    """Critic by ``model.arch``; no BatchNorm for the Wasserstein objectives unless asked."""
    norm = model.critic_norm
    if norm == "auto":
        norm = "none" if objective in ("wgan", "wgan-gp") else "batch"
    if norm not in ("none", "batch", "layer"):
        raise SganError(f"unknown critic norm {norm!r}", where="model.critic_norm", fix="use auto, none, batch or layer")
    if objective == "wgan-gp" and norm == "batch":
        raise SganError("BatchNorm in a WGAN-GP critic couples the samples the gradient penalty treats one by one", where="model.critic_norm", fix="use none or layer")
    C, S = geometry.channels, geometry.size
    if model.arch == "mlp":
        return MLPCritic(C * S * S, model.d_width, norm)
    return DCGANCritic(C, S, model.d_width, norm)


def make_optimizer(params: Any, gan: ResolvedGan, lr: float) -> torch.optim.Optimizer:
    if gan.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=gan.betas)


@dataclass
class TrainState:
    """Everything a checkpoint holds (DESIGN §3): nets, optimisers, step, RNG."""

    generator: Generator
    critic: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rng: torch.Generator
    fixed_z: Tensor
    step: int = 0


def new_state(cfg: SganConfig, geometry: Geometry, dictionary: DictionaryFile | None, device: torch.device) -> TrainState:
    """Fresh nets and optimisers, seeded by ``train.seed``."""
    gan = resolve_gan(cfg.gan)
    torch.manual_seed(cfg.train.seed)  # parameter initialisation
    G = build_generator(cfg.model, geometry, dictionary).to(device)
    D = build_critic(cfg.model, gan.objective, geometry).to(device)
    rng = torch.Generator(device="cpu").manual_seed(cfg.train.seed + 1)
    fixed_z = torch.randn(64, cfg.model.z_dim, generator=torch.Generator().manual_seed(cfg.train.seed + 2))
    return TrainState(G, D, make_optimizer(G.parameters(), gan, gan.lr_g), make_optimizer(D.parameters(), gan, gan.lr_d), rng, fixed_z.to(device))


def train_steps(
    state: TrainState,
    cfg: SganConfig,
    real: Tensor,
    until: int,
    on_log: Callable[[dict[str, float]], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> None:
    """Advance ``state`` to generator step ``until`` on the images ``real`` [N, C, H, W] in [−1, 1].

    Raises SganError on a NaN or inf loss (the caller keeps the last good checkpoint).
    """
    gan = resolve_gan(cfg.gan)
    G, D = state.generator, state.critic
    device = real.device
    n, B, z_dim = real.shape[0], cfg.train.batch_size, cfg.model.z_dim
    beta = cfg.model.beta
    G.train()
    D.train()
    t_log, imgs_log = time.perf_counter(), 0
    sums: dict[str, float] = {}
    count = 0
    while state.step < until:
        for _ in range(gan.critic_steps):
            idx = torch.randint(0, n, (B,), generator=state.rng).to(device)
            z = torch.randn(B, z_dim, generator=state.rng).to(device)
            x = real[idx]
            with torch.no_grad():  # the critic step needs G(z) as data, not G's graph
                fake = G(z)
            loss_d = critic_loss(gan.objective, D(x), D(fake))
            gp = torch.zeros((), device=device)
            if gan.objective == "wgan-gp":
                gp = gradient_penalty(D, x, fake, generator=state.rng)
                loss_d = loss_d + gan.gp_lambda * gp
            state.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            state.opt_d.step()
            if gan.objective == "wgan":
                clip_weights(D, gan.clip)
        z = torch.randn(B, z_dim, generator=state.rng).to(device)
        fake, codes = G.forward_codes(z)
        loss_adv = generator_loss(gan.objective, D(fake))
        l1 = l1_code_penalty(codes).to(device)
        loss_g = loss_adv + beta * l1
        state.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        state.opt_g.step()
        state.step += 1
        values = {"loss_d": loss_d.item(), "loss_g": loss_adv.item(), "gp": gp.item(), "l1": l1.item()}
        if not all(math.isfinite(v) for v in values.values()):
            raise SganError(
                f"training diverged at step {state.step}: a loss became NaN or inf ({values})",
                where=f"step {state.step}",
                fix="lower the learning rates (--set gan.lr_g=…, gan.lr_d=…) or resume from the last checkpoint",
            )
        if codes is not None:
            values["support"] = float((codes != 0).float().mean())
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        imgs_log += B * (gan.critic_steps + 1)
        if on_step is not None:
            on_step(state.step)
        if on_log is not None and (state.step % cfg.train.log_every == 0 or state.step == until):
            now = time.perf_counter()
            entry = {"step": state.step, **{k: v / count for k, v in sums.items()}, "images_per_s": imgs_log / max(now - t_log, 1e-9)}
            on_log(entry)
            sums, count, t_log, imgs_log = {}, 0, now, 0


def state_tensors(state: TrainState) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Flatten a TrainState into safetensors tensors and JSON metadata (no pickle)."""
    tensors: dict[str, Tensor] = {}
    meta: dict[str, str] = {"step": str(state.step)}
    for prefix, module in (("generator", state.generator), ("critic", state.critic)):
        for k, v in module.state_dict().items():
            tensors[f"{prefix}.{k}"] = v
    for prefix, opt in (("opt_g", state.opt_g), ("opt_d", state.opt_d)):
        sd = opt.state_dict()
        for pid, st in sd["state"].items():
            for k, v in st.items():
                tensors[f"{prefix}.state.{pid}.{k}"] = v if isinstance(v, Tensor) else torch.tensor(v)
        meta[f"{prefix}.param_groups"] = json.dumps(sd["param_groups"])
    tensors["rng.state"] = state.rng.get_state()
    tensors["fixed_z"] = state.fixed_z
    return tensors, meta


def load_state_tensors(state: TrainState, tensors: dict[str, Tensor], meta: dict[str, str]) -> None:
    """Inverse of :func:`state_tensors`, into a freshly built state of the same config."""
    for prefix, module in (("generator", state.generator), ("critic", state.critic)):
        sd = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        module.load_state_dict(sd)
    for prefix, opt in (("opt_g", state.opt_g), ("opt_d", state.opt_d)):
        groups = json.loads(meta[f"{prefix}.param_groups"])
        st: dict[int, dict[str, Tensor]] = {}
        head = prefix + ".state."
        for k, v in tensors.items():
            if k.startswith(head):
                pid, name = k[len(head) :].split(".", 1)
                st.setdefault(int(pid), {})[name] = v
        opt.load_state_dict({"state": st, "param_groups": groups})
    state.rng.set_state(tensors["rng.state"])
    state.fixed_z = tensors["fixed_z"].to(state.fixed_z.device)
    state.step = int(meta["step"])


def config_json(cfg: SganConfig) -> dict[str, Any]:
    """The sections a run uses, with the objective's defaults filled in (what really ran)."""
    out = {k: to_dict(getattr(cfg, k)) for k in ("data", "model", "gan", "train")}
    gan = resolve_gan(cfg.gan)
    out["gan"].update(critic_steps=gan.critic_steps, lr_g=gan.lr_g, lr_d=gan.lr_d, beta1=gan.betas[0], beta2=gan.betas[1])
    return out


def run_dir_paths(out: Path) -> dict[str, Path]:
    return {
        "generator": out / "generator.safetensors",
        "critic": out / "critic.safetensors",
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


def _save_outputs(state: TrainState, cfg: SganConfig, paths: dict[str, Path], dictionary: DictionaryFile | None, geometry: Geometry) -> None:
    """Generator (enough alone to sample), critic and checkpoint, each written atomically."""
    from .contracts import write_file

    conf = config_json(cfg)
    lineage = {"dictionary": dictionary.hash} if dictionary is not None else {}
    geo = {"channels": str(geometry.channels), "image_size": str(geometry.size), "step": str(state.step), "sparse": json.dumps(dictionary is not None)}
    g_tensors = dict(state.generator.state_dict())  # includes the dictionary (synthesis buffers)
    if dictionary is not None:
        geo["dictionary_patch"] = json.dumps(dictionary.patch)
        geo["dictionary_stride"] = str(dictionary.stride)
    write_file(paths["generator"], "sgan.generator", g_tensors, config=conf, lineage=lineage, meta=geo, force=True)
    c_tensors = {f"critic.{k}": v for k, v in state.critic.state_dict().items()}
    write_file(paths["critic"], "sgan.checkpoint", c_tensors, config=conf, lineage=lineage, meta={**geo, "role": "critic"}, force=True)
    tensors, meta = state_tensors(state)
    write_file(paths["checkpoint"], "sgan.checkpoint", tensors, config=conf, lineage=lineage, meta={**geo, **meta, "role": "checkpoint"}, force=True)


def _write_grid(state: TrainState, path: Path) -> None:
    """Samples from the fixed z (the same 64 latents all run long), as one PNG."""
    from .images import make_grid, save_png, to_uint8

    G = state.generator
    was_training = G.training
    G.eval()
    with torch.no_grad():
        imgs = to_uint8(G(state.fixed_z).cpu())
    G.train(was_training)
    save_png(make_grid(imgs, nrow=8, scale=max(1, 32 // imgs.shape[-1])), path)


def run_training(
    cfg: SganConfig,
    out: Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train per ``cfg`` into the run folder ``out`` (or continue it with ``resume``).

    Ctrl-C writes a checkpoint of the last finished step and re-raises KeyboardInterrupt;
    a NaN/inf loss raises SganError and leaves the last periodic checkpoint in place.
    """
    import yaml

    from .contracts import atomic_write_bytes, load_dictionary, read_file
    from .data import load_data
    from .dictionary import resolve_device

    paths = run_dir_paths(out)
    if resume:
        ckpt = read_file(paths["checkpoint"], "sgan.checkpoint", what="checkpoint")
        saved = ckpt.config
        # the run's own configuration wins, except how long to train
        steps = cfg.train.steps
        for section in ("data", "model", "gan", "train"):
            for key, value in saved.get(section, {}).items():
                setattr(getattr(cfg, section), key, value)
        cfg.train.steps = steps
    elif paths["checkpoint"].exists() and not force:
        raise SganError(f"the run folder {out} already holds a run", where=str(out), fix="pass --resume to continue it, --force to start over, or choose another --out")
    if cfg.train.steps < 1 or cfg.train.batch_size < 1:
        raise SganError("train.steps and train.batch_size must be positive", where="--steps / --batch-size", fix="give positive numbers")
    device = resolve_device(cfg.train.device)
    data = load_data(cfg.data)
    geometry = Geometry(data.channels, data.image_size)
    dictionary = None
    if cfg.train.dict is not None:
        dictionary = load_dictionary(cfg.train.dict)
        check_dictionary_fits(dictionary, geometry, cfg.train.dict)
    real = data.floats().to(device)
    state = new_state(cfg, geometry, dictionary, device)
    start = 0
    if resume:
        load_state_tensors(state, ckpt.tensors, ckpt.meta)
        start = state.step
    out.mkdir(parents=True, exist_ok=True)
    paths["grids"].mkdir(exist_ok=True)
    text = yaml.safe_dump(config_json(cfg), sort_keys=False)
    atomic_write_bytes(paths["config"], lambda tmp: tmp.write_text(text))
    last: dict[str, float] = {}
    t0 = time.perf_counter()

    def on_log(entry: dict[str, float]) -> None:
        nonlocal last
        entry["wall_s"] = time.perf_counter() - t0
        last = entry
        with open(paths["metrics"], "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def on_step(step: int) -> None:
        if progress is not None:
            progress(step, cfg.train.steps, {k: v for k, v in last.items() if k in ("loss_d", "loss_g", "support", "images_per_s")})
        if step % cfg.train.grid_every == 0 or step == cfg.train.steps:
            _write_grid(state, paths["grids"] / f"step-{step:06d}.png")
        if step % cfg.train.save_every == 0 and step != cfg.train.steps:
            _save_outputs(state, cfg, paths, dictionary, geometry)

    try:
        train_steps(state, cfg, real, cfg.train.steps, on_log=on_log, on_step=on_step)
    except KeyboardInterrupt:
        _save_outputs(state, cfg, paths, dictionary, geometry)
        raise
    _save_outputs(state, cfg, paths, dictionary, geometry)
    return TrainResult(out, state.step, start, time.perf_counter() - t0, last, dictionary is not None)
