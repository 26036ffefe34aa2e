"""Loading what ``sgan train`` wrote: generators and reconstructors, from a run folder or a file.

A generator file (kind ``sgan.generator``) is enough alone to sample (docs/files.md): it holds
the run's resolved config (the architecture), the geometry in its metadata and, for a sparse
generator, the dictionary as synthesis buffers (``synthesis.atoms`` [K, C·H·W] for
whole-image atoms, ``synthesis.kernel`` [K, C, P, P] for patch atoms). The dictionary is
rebuilt from those buffers, so nothing but the file is needed. When the run kept an EMA of
the generator, its state dict sits beside the live one under the prefix ``ema.``.

A reconstructor file (kind ``sgan.checkpoint``, metadata ``role`` = "reconstructor") holds an
encoder E: images → z (the reconstructor of Mahdizadehaghdam et al. 2019, or the VAE encoder
of Ganz & Blau, Sparse GAN, whose mean is used) under the prefix ``encoder.``; G(E(x)) needs
the generator file of the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from .builders import Geometry, build_encoder, build_generator
from .config import ModelConfig, section_from_file
from .contracts import (
    CHECKPOINT,
    DictionaryFile,
    SganFile,
    check_field,
    content_hash,
    file_kind,
    load_dictionary,
    meta_int,
    read_file,
    require_tensor,
)
from .errors import SganError
from .outputs import check_folder_complete
from .schemas import legacy_model_keys
from .sparsity import legacy_sparsity

M = TypeVar("M", bound=nn.Module)

GENERATOR_FILE = "generator.safetensors"
RECONSTRUCTOR_FILE = "reconstructor.safetensors"
EMA_PREFIX = "ema."


@dataclass
class GeneratorDictionary:
    """The dictionary a sparse generator synthesises with, rebuilt from its buffers.

    Duck-types :class:`sgan_cli.contracts.DictionaryFile` for ``builders.build_generator``.
    """

    atoms: Tensor  # [K, dim] float32; dim = C·H·W (whole image) or C·P·P (patch)
    channels: int
    image_size: int
    patch: int | None  # None: whole-image atoms
    stride: int  # the dictionary's stride; synthesis tiles when stride == patch, else overlaps (1)
    hash: str  # content hash of the dictionary file (lineage), "" when unknown
    source: str  # where the atoms came from (the generator file, or a swapped dictionary)
    mean: Tensor | None = (
        None  # [dim] the dictionary's mean image / mean patch (None: zero, files from before the mean term)
    )

    @property
    def n_atoms(self) -> int:
        return int(self.atoms.shape[0])

    @property
    def tiled(self) -> bool:
        return self.patch is not None and self.stride == self.patch


@dataclass
class LoadedGenerator:
    """A generator ready to sample: eval mode, on its device, with what describes it."""

    module: nn.Module  # sgan_cli.nets.Generator; forward_codes(z [B, z_dim]) → (images, codes | None)
    z_dim: int
    geometry: Geometry
    sparse: bool
    dictionary: GeneratorDictionary | None  # None for a dense generator
    config: dict[str, Any]  # the run's resolved config tree (data, model, gan, train, …)
    hash: str  # content hash of the generator file's tensors
    path: Path
    ema: bool  # the EMA weights are loaded
    has_ema: bool  # the file holds EMA weights
    step: int
    device: torch.device

    @property
    def code_shape(self) -> tuple[int, ...] | None:
        """Shape of one sample's codes: (K,) whole-image, (K, h, w) patch, None dense."""
        d = self.dictionary
        if d is None:
            return None
        if d.patch is None:
            return (d.n_atoms,)
        side = self.geometry.size // d.patch if d.tiled else self.geometry.size
        return (d.n_atoms, side, side)


@dataclass
class LoadedReconstructor:
    """An encoder E: x [B, C, H, W] in [−1, 1] → z [B, z_dim], and the generator G for G(E(x))."""

    module: nn.Module
    mode: str  # "latent" (E(G(z)) ≈ z, Mahdizadehaghdam et al. 2019) or "vae" (z = μ, Ganz & Blau)
    geometry: Geometry
    z_dim: int
    config: dict[str, Any]
    hash: str
    path: Path
    generator: LoadedGenerator


def resolve_run_file(path: str | Path, name: str, what: str) -> Path:
    """A run folder → its ``name``; a file → itself. A folder without the file is an error."""
    p = Path(path)
    if p.is_dir():
        check_folder_complete(p)
        inside = p / name
        if not inside.exists():
            present = sorted(x.name for x in p.glob("*.safetensors"))
            raise SganError(
                f"the folder {p} holds no {name}" + (f" (it holds {', '.join(present)})" if present else ""),
                where=str(p),
                fix=f"give a run folder written by sgan train (with {name}) or the path of a {what} file",
            )
        return inside
    return p


def _validate_generator(tensors: dict[str, Any], meta: dict[str, str], path: Path) -> None:
    """Geometry in the metadata; a sparse generator holds synthesis buffers that fit it."""
    channels, size = meta_int(meta, "channels", path), meta_int(meta, "image_size", path)
    if meta.get("sparse") not in ("true", "false"):
        raise SganError(
            f"{path} does not say whether its generator is sparse (metadata 'sparse')",
            where=str(path),
            fix="write the file again with sgan train",
        )
    meta_int({"step": "0", **meta}, "step", path)
    meta_int({"dictionary_stride": "1", **meta}, "dictionary_stride", path)
    if meta["sparse"] == "false":
        return
    if "synthesis.atoms" in tensors:
        atoms = require_tensor(tensors, "synthesis.atoms", 2, path)
        if atoms.shape[1] != channels * size * size:
            raise SganError(
                f"{path}: synthesis.atoms have {atoms.shape[1]} values each, "
                f"but the generator makes {channels}×{size}×{size} images",
                where=str(path),
                fix="write the file again with sgan train",
            )
    elif "synthesis.kernel" in tensors:
        kernel = require_tensor(tensors, "synthesis.kernel", 4, path)
        check_field(int(kernel.shape[2]), "patch", path, what="the side of its synthesis.kernel (the patch)")
        if kernel.shape[1] != channels or kernel.shape[2] != kernel.shape[3] or kernel.shape[2] > size:
            raise SganError(
                f"{path}: synthesis.kernel of shape {tuple(kernel.shape)} "
                f"does not make {channels}-channel {size}×{size} images",
                where=str(path),
                fix="write the file again with sgan train",
            )
    else:
        raise SganError(
            f"{path} is a sparse generator without its dictionary (no synthesis.atoms or synthesis.kernel)",
            where=str(path),
            fix="write the file again with sgan train",
        )
    atoms_key = "synthesis.atoms" if "synthesis.atoms" in tensors else "synthesis.kernel"
    check_field(int(tensors[atoms_key].shape[0]), "n_atoms", path, what=f"the number of atoms of its {atoms_key}")
    if "synthesis.mean" in tensors:
        mean = require_tensor(tensors, "synthesis.mean", 1, path)
        dim = (
            tensors["synthesis.atoms"].shape[1]
            if "synthesis.atoms" in tensors
            else tensors["synthesis.kernel"][0].numel()
        )
        if mean.shape[0] != dim or not bool(mean.float().isfinite().all()):
            raise SganError(
                f"{path}: synthesis.mean has {mean.shape[0]} values (or non-finite ones), the atoms {dim}",
                where=str(path),
                fix="write the file again with sgan train",
            )
    if meta.get("ema") == "true" and not any(k.startswith(EMA_PREFIX) for k in tensors):
        raise SganError(
            f"{path} says it holds EMA weights but has no 'ema.' tensors",
            where=str(path),
            fix="write the file again with sgan train",
        )


GENERATOR = file_kind("sgan.generator", _validate_generator)


def model_config(config: dict[str, Any], path: Path) -> ModelConfig:
    """The ``model`` section of a file's config as a ModelConfig (keys this sgan lacks are refused)."""
    model = section_from_file(config, "model", ModelConfig, path)
    legacy_sparsity(model, config.get("model") or {})
    legacy_model_keys(model, config.get("model") or {})
    return model


def generator_dictionary(f: SganFile) -> GeneratorDictionary | None:
    """The dictionary held in a (validated) generator file's synthesis buffers; None if dense."""
    if f.meta["sparse"] != "true":
        return None
    channels, size = int(f.meta["channels"]), int(f.meta["image_size"])
    if "synthesis.atoms" in f.tensors:
        atoms, patch = f.tensors["synthesis.atoms"].float(), None
    else:
        kernel = f.tensors["synthesis.kernel"].float()  # [K, C, P, P]
        atoms, patch = kernel.reshape(kernel.shape[0], -1), int(kernel.shape[-1])
    stride = meta_int({"dictionary_stride": "1", **f.meta}, "dictionary_stride", f.path)
    mean = f.tensors.get("synthesis.mean")
    return GeneratorDictionary(
        atoms,
        channels,
        size,
        patch,
        stride,
        f.lineage.get("dictionary", ""),
        str(f.path),
        None if mean is None else mean.float(),
    )


def check_swap_fits(current: GeneratorDictionary, new: DictionaryFile, source: str) -> None:
    """A swapped dictionary must have the generator's atom count, atom shape and synthesis layout."""

    def shape(d: Any) -> str:
        side = d.image_size if d.patch is None else d.patch
        kind = "whole-image" if d.patch is None else "patch"
        return f"{d.n_atoms} {kind} atoms of {d.channels}×{side}×{side}"

    problem = None
    if new.n_atoms != current.n_atoms:
        problem = f"it has {new.n_atoms} atoms but the generator emits {current.n_atoms} codes"
    elif (new.patch is None) != (current.patch is None):
        problem = (
            "it has patch atoms but the generator uses whole-image atoms"
            if current.patch is None
            else "it has whole-image atoms but the generator uses patch atoms"
        )
    elif new.channels != current.channels or new.atoms.shape[1] != current.atoms.shape[1]:
        problem = "its atoms have another shape"
    elif new.patch is not None and (new.stride == new.patch) != current.tiled:
        problem = "it tiles patches (stride = patch) where the generator overlaps them, or the other way round"
    if problem is not None:
        raise SganError(
            f"the dictionary {source} does not fit the generator: "
            f"{problem} ({shape(new)}; the generator's: {shape(current)})",
            where=source,
            fix=f"give a dictionary of {shape(current)}, learned with sgan learn-dict",
        )


def _swap_state(state: dict[str, Tensor], d: GeneratorDictionary, channels: int) -> dict[str, Tensor]:
    """The state dict with the synthesis buffers replaced by ``d``'s atoms (inv_count depends
    only on the geometry, which :func:`check_swap_fits` kept)."""
    out = dict(state)
    if d.patch is None:
        out["synthesis.atoms"] = d.atoms.clone()
    else:
        out["synthesis.kernel"] = d.atoms.reshape(d.n_atoms, channels, d.patch, d.patch).clone()
    out["synthesis.mean"] = d.mean.clone() if d.mean is not None else torch.zeros(d.atoms.shape[1])
    return out


def _build_and_load(build: Callable[[], M], state: dict[str, Tensor], path: Path, what: str, fix: str) -> M:
    """Build a net from a file's config and load the file's weights into it; a mismatch
    (another version, a hand-edited config) is one clear error instead of a traceback."""
    try:
        with torch.device("meta"):  # names and shapes first, nothing allocated
            expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    except (RuntimeError, ValueError) as exc:
        raise SganError(
            f"the config in {path} does not describe a {what} sgan can build ({str(exc).splitlines()[0]})",
            where=str(path),
            fix=fix,
        ) from None
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in expected if k in state and tuple(state[k].shape) != expected[k])
    if missing or extra or wrong:
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:3])}" if missing else "",
                f"unexpected {', '.join(extra[:3])}" if extra else "",
                f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, the config builds {expected[wrong[0]]}"
                if wrong
                else "",
            )
            if part
        )
        raise SganError(
            f"the weights in {path} do not fit the {what} its config describes ({detail})", where=str(path), fix=fix
        )
    try:
        net = build()
        net.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        raise SganError(
            f"the weights in {path} do not fit the {what} its config describes ({str(exc).splitlines()[0]})",
            where=str(path),
            fix=fix,
        ) from None
    return net


def load_generator(
    path_or_run: str | Path,
    *,
    ema: bool = False,
    dictionary: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> LoadedGenerator:
    """Rebuild the generator of a run folder or a ``generator.safetensors``, in eval mode.

    ``ema`` loads the EMA weights (an error when the file has none); ``dictionary`` swaps
    the synthesis atoms for those of another dictionary file of the same shape (refused
    with a message saying what differs otherwise).
    """
    path = resolve_run_file(path_or_run, GENERATOR_FILE, "sgan.generator")
    f = read_file(path, GENERATOR, what="generator")
    geometry = Geometry(int(f.meta["channels"]), int(f.meta["image_size"]))
    model = model_config(f.config, path)
    has_ema = f.meta.get("ema") == "true"
    if ema and not has_ema:
        raise SganError(
            f"the generator {path} has no EMA weights (the run was trained with train.ema = 0)",
            where=str(path),
            fix="leave out ema, or train with train.ema > 0 (sgan train --ema 0.999)",
        )
    if ema:
        state = {k[len(EMA_PREFIX) :]: v for k, v in f.tensors.items() if k.startswith(EMA_PREFIX)}
    else:
        state = {k: v for k, v in f.tensors.items() if not k.startswith(EMA_PREFIX)}
    d = generator_dictionary(f)
    if dictionary is not None:
        if d is None:
            raise SganError(
                f"the generator {path} is dense (it paints pixels), so it has no dictionary to swap",
                where=str(dictionary),
                fix="leave out dictionary, or give a sparse generator",
            )
        new = load_dictionary(dictionary)
        check_swap_fits(d, new, str(dictionary))
        d = GeneratorDictionary(
            new.atoms, d.channels, d.image_size, d.patch, d.stride, new.hash, str(dictionary), new.mean
        )
        state = _swap_state(state, d, geometry.channels)
    G = _build_and_load(
        lambda: build_generator(model, geometry, d),
        state,
        path,
        "architecture",
        "write the file again with sgan train (it may come from another sgan version)",
    )
    dev = torch.device(device)
    G.to(dev).eval()  # eval: BatchNorm uses running statistics, so a sample does not depend on its batch
    return LoadedGenerator(
        module=G,
        z_dim=model.z_dim,
        geometry=geometry,
        sparse=d is not None,
        dictionary=d,
        config=f.config,
        hash=content_hash(f.tensors),
        path=path,
        ema=ema,
        has_ema=has_ema,
        step=meta_int({"step": "0", **f.meta}, "step", path),
        device=dev,
    )


def load_reconstructor(
    path_or_run: str | Path,
    *,
    generator: str | Path | None = None,
    ema: bool = False,
    device: torch.device | str = "cpu",
) -> LoadedReconstructor:
    """Rebuild the reconstructor of a run folder (or a file) and the generator beside it.

    The generator is ``generator`` when given, else ``generator.safetensors`` in the same
    folder; its latent size and geometry must match the encoder's.
    """
    path = resolve_run_file(path_or_run, RECONSTRUCTOR_FILE, "reconstructor")
    f = read_file(path, CHECKPOINT, what="reconstructor")
    role = f.meta.get("role")
    if role != "reconstructor":
        raise SganError(
            f"{path} is a {role or 'training'} checkpoint, not a reconstructor",
            where=str(path),
            fix="give reconstructor.safetensors from a run trained with --recon (or its run folder)",
        )
    mode = f.meta.get("recon_mode", "")
    if mode not in ("latent", "vae"):
        raise SganError(
            f"{path} has an unknown reconstructor mode {mode!r}",
            where=str(path),
            fix="write the file again with sgan train --recon",
        )
    geometry = Geometry(meta_int(f.meta, "channels", path), meta_int(f.meta, "image_size", path))
    model = model_config(f.config, path)
    state = {k[len("encoder.") :]: v for k, v in f.tensors.items() if k.startswith("encoder.")}
    if not state:
        raise SganError(
            f"{path} holds no encoder weights (no 'encoder.' tensors)",
            where=str(path),
            fix="write the file again with sgan train --recon",
        )
    E = _build_and_load(
        lambda: build_encoder(model, geometry, mode),
        state,
        path,
        "encoder",
        "write the file again with sgan train --recon",
    )
    dev = torch.device(device)
    E.to(dev).eval()
    g_path = Path(generator) if generator is not None else path.parent / GENERATOR_FILE
    if generator is None and not g_path.exists():
        raise SganError(
            f"no generator beside the reconstructor {path} (looked for {g_path})",
            where=str(path.parent),
            fix="give the generator with --generator FILE",
        )
    G = load_generator(g_path, ema=ema, device=dev)
    if G.z_dim != model.z_dim or G.geometry != geometry:
        raise SganError(
            f"the reconstructor {path} (z of {model.z_dim}, "
            f"{geometry.channels}×{geometry.size}×{geometry.size} images) "
            f"does not fit the generator {G.path} (z of {G.z_dim}, "
            f"{G.geometry.channels}×{G.geometry.size}×{G.geometry.size})",
            where=str(G.path),
            fix="give the generator of the run that trained this reconstructor",
        )
    return LoadedReconstructor(E, mode, geometry, model.z_dim, f.config, content_hash(f.tensors), path, G)


def describe(g: LoadedGenerator) -> str:
    """One line about a generator, for tables and messages."""
    kind = "dense"
    if g.dictionary is not None:
        d = g.dictionary
        kind = f"sparse, {d.n_atoms} " + (
            "whole-image atoms" if d.patch is None else f"{d.patch}×{d.patch} patch atoms"
        )
    return (
        f"{g.path} (step {g.step}, {kind}, z {g.z_dim}, "
        f"{g.geometry.channels}×{g.geometry.size}×{g.geometry.size}{', EMA' if g.ema else ''})"
    )
