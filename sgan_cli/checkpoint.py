"""The training state and its checkpoint: nets, optimisers, step and RNG as safetensors tensors.

A checkpoint holds everything :class:`TrainState` holds, flattened into named tensors and
JSON metadata (no pickle): each net's state dict under its prefix, each optimiser's state
tensors and parameter groups, the sampling RNG of every rank and the fixed latents of the
sample grids. Loading checks every name and shape against the nets the run's configuration
builds before anything is copied, so a wrong file is one SganError, never a traceback.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import distributed
from .auto import resolve_arch
from .builders import (
    Geometry,
    adam,
    build_critic,
    build_encoder,
    build_generator,
    check_train_config,
    dictionary_sparsity,
    make_optimizer,
    resolve_gan,
)
from .config import SganConfig
from .contracts import DictionaryFile, SganFile, meta_int
from .critics import Critic, Encoder
from .errors import SganError
from .nets import Generator, SupportController
from .precision import preferred_layout
from .run_files import GENERATOR, generator_dictionary
from .sparsity import make_controller


@dataclass
class TrainState:
    """Everything a checkpoint holds: nets, optimisers, step, RNG."""

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


def new_state(
    cfg: SganConfig, geometry: Geometry, dictionary: DictionaryFile | None, device: torch.device
) -> TrainState:
    """Fresh nets and optimisers, seeded by ``train.seed``."""
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
    meta_int(meta, "step", path)
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


def check_world_size(meta: dict[str, str], size: int, out: Path) -> None:
    """A run resumes bit for bit only with the world size it was saved with (the global batch
    is split into that many per-rank shards; BatchNorm statistics are per shard)."""
    # absent in checkpoints from before torchrun support: one process
    saved = meta_int(meta, "world_size", out / "checkpoint.safetensors", default=1)
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


def checkpoint_dictionary(ckpt: Any) -> Any:
    """The dictionary a run trains with, rebuilt from the generator's synthesis buffers in its
    checkpoint (a resumed run needs no dictionary file, so a copied run resumes anywhere);
    None for a dense run."""
    head = "generator."
    g = SganFile(
        ckpt.path,
        GENERATOR.name,
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
