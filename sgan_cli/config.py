"""One configuration path: dataclass defaults → recipe YAML → ``--set key=value`` → flags.

The whole pipeline shares one tree of sections (``data``, ``dict``, …) so one recipe can
describe a whole experiment; each command reads the sections it needs and records the
resolved tree in every file it writes. Unknown sections or keys are errors that name the
key and where it came from.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SganError
from .ranges import RANGES
from .validation import check_number


@dataclass
class DataConfig:
    """Which images to load (see :mod:`sgan_cli.data`)."""

    name: str = "digits"  # dataset name, folder of images, or a samples.safetensors file
    root: str | None = None  # torchvision data folder; None: $SGAN_DATA or ~/.cache/sgan/data
    split: str = "train"  # "train" or "test"
    limit: int | None = None  # keep only the first N images (after loading)
    image_size: int | None = None  # resize images to this square size (folders: required if mixed)
    download: bool = True  # try to download torchvision datasets that are missing
    seed: int = 0  # stacked-mnist: seed of the digit draws (the same seed gives the same images)


@dataclass
class DictConfig:
    """Dictionary learning (``sgan learn-dict``)."""

    atoms: int | None = None  # K atoms; None: square (K = signal dimension)
    patch: int | None = None  # None: whole-image atoms (Ganz & Blau); P ≥ 2: P×P×C patches (Mahdizadehaghdam et al.)
    stride: int = 1  # patch extraction stride
    sparsity: float | None = (
        None  # target fraction of non-zeros in (0, 1); None: 0.1, or dim/(3K) if 0.1 is out of reach
    )
    alpha: float | None = None  # fix the lasso penalty α instead of targeting `sparsity`
    mean: bool = (
        True  # learn atoms on centred signals and store the mean (mean image, or mean patch); synthesis adds it back
    )
    solver: str = "auto"  # "auto", "passes" (small data, many passes) or "online" (large data)
    # passes over the signals; None: ~300 steps in 4–40 passes with the compiled kernels, else 60 full-batch
    # epochs where n·K² ≤ 2e8 or ~150 steps in 4–20 passes ("passes"); 0.5 ("online")
    passes: float | None = None
    batch_size: int | None = None  # minibatch size; None: the solver's default
    max_samples: int = 100_000  # at most this many signals (random subset of images / patches)
    heldout: float = 0.1  # share of signals held out to measure sparsity, objective and PSNR
    seed: int = 0  # random seed (subset, split, initialisation, minibatches)
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"


@dataclass
class ModelConfig:
    """Generator and critic architecture (``sgan train``)."""

    # "auto" (fits the dictionary and device: sgan_cli/auto.py), "mlp" (Ganz & Blau), "dcgan"
    # (Mahdizadehaghdam et al. 2019) or "resnet" (residual blocks, their Table 2); the papers' own nets, layer
    # for layer (sgan_cli/paper_nets.py): "goyal" (Goyal's EE5239 report, Appendix I) and "ganz-blau" (Ganz & Blau)
    arch: str = "auto"
    z_dim: int = 64  # latent size
    g_width: int = 256  # generator width: MLP hidden size, or DCGAN channels at the base
    d_width: int = 64  # critic width: MLP hidden size, or DCGAN first-layer channels
    critic_arch: str | None = (
        None  # critic and encoder architecture when it differs from `arch` (e.g. a conv generator, an mlp critic)
    )
    critic_norm: str = "auto"  # "auto" (none for wgan-gp and wgan, batch otherwise), "none", "batch", "layer"
    # how sparse codes are made: "fixed" λ, "learn" λ, "topk" (k largest per code vector), "controller" (λ adapted
    # to a support target); "auto": the default (see sparsity.DEFAULT_SPARSITY_CONTROL; "learn" when learn_threshold)
    sparsity: str = "auto"
    threshold: float = 0.3  # λ of the soft threshold T_λ on the codes (the starting λ for "learn" and "controller")
    learn_threshold: bool = False  # learn λ (kept positive through log λ); the same as sparsity "learn"
    topk: int | None = (
        None  # topk: non-zeros per code vector; None: round(s·K) from the dictionary's achieved support s
    )
    support_target: float | None = (
        None  # controller: target support fraction in (0, 1); None: the dictionary's achieved support
    )
    controller_gain: float = 0.05  # controller: step of log λ per generator step at a relative support error of 1
    beta: float = 0.5  # weight of the L1 penalty β·mean|a| on the codes (Ganz & Blau, Sparse GAN)
    e_width: int = 64  # encoder (reconstructor / VAE) width: MLP hidden size, or conv first-layer channels
    minibatch_disc: int = 0  # minibatch-discrimination kernels B in the critic (Kitov's GAN lecture); 0: off
    mbd_dim: int = 8  # minibatch discrimination: dimension C of each kernel's rows
    pack: int = 1  # PacGAN packing: the critic scores m samples at once, concatenated along channels; 1: off
    # sparse generators: clip codes × atoms (+ mean) to the data's range [−1, 1], as a dense generator's tanh bounds
    # its images; unclipped, a whole-image sparse generator collapses (docs/results.md). Files from before: false
    clip_images: bool = True
    # the sparse head's backward: true passes the gradient to every code, also those T_λ or top-k zeroed (the
    # straight-through estimator), so an atom that is off can learn to turn on; false: only the kept codes learn
    # (without it a whole-image generator at the dictionary's support collapses: docs/results.md); older files: false
    straight_through: bool = True


@dataclass
class GanConfig:
    """The adversarial objective; None means the objective's default."""

    objective: str = "wgan-gp"  # "gan", "wgan", "wgan-gp" or "hinge"
    critic_steps: int | None = None  # critic updates per generator update (gan 1, wgan 5, wgan-gp 5, hinge 1)
    lr_g: float | None = None  # generator learning rate (gan 2e-4, wgan 5e-5, wgan-gp 1e-4, hinge 2e-4)
    lr_d: float | None = None  # critic learning rate (same defaults)
    beta1: float | None = None  # Adam β₁ (gan 0.5, wgan-gp 0.5, hinge 0.0)
    beta2: float | None = None  # Adam β₂ (gan 0.999, wgan-gp 0.9, hinge 0.9)
    clip: float = 0.01  # wgan: critic weights clipped to ±clip
    gp_lambda: float = 10.0  # wgan-gp: weight λ of the gradient penalty
    feature_matching: float = (
        0.0  # weight of ‖E f(x) − E f(G(z))‖² (critic features) added to the generator loss (Kitov's lecture); 0: off
    )


@dataclass
class ReconConfig:
    """The third player against mode collapse."""

    mode: str = "none"  # "none", "latent" (E(G(z)) ≈ z: Mahdizadehaghdam et al.) or "vae" (VAE encoder: Ganz & Blau)
    # encoder updates per iteration (n_reconst. of Algorithm 1; n_e for the VAE). 5 at lr 1e-3 keep the
    # reconstructor within 2–10 % of the best encoder of the current G (1 at 1e-4 left it near E ≡ 0:
    # benchmarks/bench_recon.py, docs/guide.md)
    steps: int = 5
    weight: float = 1.0  # latent: weight of the generator step on ‖G(E(x)) − x‖²; vae: weight of the VAE loss
    kl_weight: float = 1.0  # vae: weight of KL(q(z|x) ‖ N(0, I)) against the reconstruction error
    every: int = 1  # run the reconstructor phase every N generator steps
    lr: float = 1e-3  # encoder learning rate (Adam, β = (0.5, 0.9))


@dataclass
class TrainConfig:
    """The training run (``sgan train``)."""

    dict: str | None = None  # dictionary file: sparse generator; None: dense baseline (tanh on pixels)
    steps: int = 2000  # generator steps
    batch_size: int = 64  # images per critic and generator step; the global batch under torchrun (split over the ranks)
    seed: int = 0  # seeds initialisation, data order, z and the gradient penalty's ε
    log_every: int = 50  # steps between metrics.jsonl lines
    grid_every: int = 500  # steps between grids/step-NNNNNN.png (fixed z)
    save_every: int = 500  # steps between checkpoints
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    ema: float = 0.0  # decay of an exponential moving average of the generator weights (e.g. 0.999); 0: off
    # "fp32"; "bf16" (mixed: bf16 matmuls/convs, fp32 weights and losses); "auto" (bf16 where the hardware has it)
    precision: str = "fp32"
    sync_bn: bool = (
        False  # under torchrun: BatchNorm statistics of the global batch (SyncBatchNorm) instead of each rank's shard
    )
    # evaluation during training (sgan_cli/evaluation.py): every eval_every steps (0: never) score eval_samples
    # samples with eval_features ("classifier:FILE" or "inception") against the training images; metrics.jsonl
    # gets the scores, curves.png their panels, best.safetensors the generator of the lowest FID so far
    eval_every: int = 0
    eval_samples: int = 2000
    eval_features: str | None = None


@dataclass
class SganConfig:
    """The root of the configuration tree; one field per section."""

    data: DataConfig = field(default_factory=DataConfig)
    dict: DictConfig = field(default_factory=DictConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def check_range(key: str, value: Any, source: str) -> None:
    """``value`` of config ``key`` is finite and in its row of :data:`sgan_cli.ranges.RANGES` (None passes)."""
    check_number(
        value,
        key,
        RANGES.get(key),
        where=source,
        fix=f"give {key} a value {RANGES[key].describe()}" if key in RANGES else None,
    )


def check_ranges(cfg: Any, sections: tuple[str, ...], source: str) -> None:
    """Every key in these sections of ``cfg`` (a built config, e.g. one made in Python rather
    than read from a recipe) has its field's type, and every key of ``RANGES`` is finite and in
    range — the same rules recipes, ``--set`` values and files get."""
    for section in sections:
        check_section(section, getattr(cfg, section), source)


def check_section(section: str, values: Any, source: str) -> None:
    """Every key of one section (a :class:`DictConfig`, …) of its field's type (a bool is a
    bool, not a truthy string) and, with a row in ``RANGES``, in range."""
    for name, hint in _hints(type(values)).items():
        key, value = f"{section}.{name}", getattr(values, name)
        _coerce(value, hint, key, source)
        if key in RANGES:
            check_range(key, value, source)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config tree as plain JSON/YAML-ready data."""
    return dataclasses.asdict(cfg)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check (and gently convert) a value against a field's type hint."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(value, opt, key, source)
            except SganError as exc:
                errors.append(exc)
        raise errors[0]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):  # ASCII digits, one sign
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an int beyond float range
                raise SganError(
                    f"{key} is too large ({value})", where=source, fix=f"give {key} a smaller value"
                ) from None
        if isinstance(value, str):  # YAML 1.1 reads "1e-2" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        return value
    raise SganError(
        f"{key} must be {getattr(hint, '__name__', hint)}, got {value!r}",
        where=source,
        fix=f"give {key} a value of type {getattr(hint, '__name__', hint)}",
    )


def apply_mapping(cfg: SganConfig, data: dict[str, Any], source: str) -> None:
    """Merge a nested mapping (a parsed recipe) into the config, validating every key."""
    if not isinstance(data, dict):
        raise SganError(
            f"the recipe must be a mapping of sections, got {type(data).__name__}",
            where=source,
            fix="see recipes/ for examples",
        )
    sections = _hints(SganConfig)
    for section, values in data.items():
        if section not in sections:
            raise SganError(
                f"unknown section {section!r}",
                where=source,
                fix=f"use one of: {', '.join(sections)}",
            )
        if not isinstance(values, dict):
            raise SganError(
                f"section {section!r} must be a mapping of keys to values", where=source, fix="indent its keys under it"
            )
        for key, value in values.items():
            set_value(cfg, f"{section}.{key}", value, source)


def set_value(cfg: SganConfig, dotted: str, value: Any, source: str) -> None:
    """Set ``section.key`` to ``value`` after checking the key exists and the type fits."""
    section, _, key = dotted.partition(".")
    sections = _hints(SganConfig)
    if section not in sections or not key:
        raise SganError(
            f"unknown configuration key {dotted!r}",
            where=source,
            fix=f"keys look like section.key with section one of: {', '.join(sections)}",
        )
    obj = getattr(cfg, section)
    fields = _hints(type(obj))
    if key not in fields:
        raise SganError(
            f"unknown configuration key {dotted!r}",
            where=source,
            fix=f"keys of section {section!r} are: {', '.join(fields)}",
        )
    coerced = _coerce(value, fields[key], dotted, source)
    check_range(f"{section}.{key}", coerced, source)
    setattr(obj, key, coerced)


def section_from_file(config: Any, section: str, cls: type, path: Path, *, required: bool = True) -> Any:
    """The ``section`` of a config read from a file, as a ``cls`` instance whose every field
    has passed the same type and range checks as a recipe (missing keys keep their defaults;
    a key this sgan lacks is refused, never dropped: the file's sgan meant something by it,
    see :mod:`sgan_cli.schemas`). Raises SganError naming the file."""
    if not isinstance(config, dict):
        raise SganError(
            f"{path} holds a config that is a {type(config).__name__}, not a mapping",
            where=str(path),
            fix="write the file again with sgan",
        )
    values = config.get(section)
    if values is None and not required:
        return cls()
    if not isinstance(values, dict):
        raise SganError(
            f"{path} has no {section} section in its config (or it is not a mapping)",
            where=str(path),
            fix="write the file again with sgan",
        )
    obj = cls()
    hints = _hints(cls)
    for key, value in values.items():
        if key not in hints:
            raise SganError(
                f"{path} holds the configuration key {section}.{key}, which this sgan does not know "
                "(the file is from a newer sgan, or damaged)",
                where=str(path),
                fix="read it with the sgan version that wrote it, or write it again with this one",
            )
        coerced = _coerce(value, hints[key], f"{section}.{key}", f"the config in {path}")
        check_range(f"{section}.{key}", coerced, f"the config in {path}")
        setattr(obj, key, coerced)
    return obj


def parse_set(expr: str) -> tuple[str, Any]:
    """``'dict.atoms=100'`` → ('dict.atoms', 100); the value is parsed as YAML (null, 1e-3, …)."""
    import yaml

    if "=" not in expr:
        raise SganError(
            f"--set {expr!r} is not of the form section.key=value", where="--set", fix="write e.g. --set dict.atoms=100"
        )
    key, _, raw = expr.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


MAX_RECIPE_BYTES = 1_000_000


def read_recipe(path: Path) -> Any:
    """A recipe file parsed as YAML: a regular file of at most 1 MB of UTF-8 text, without
    aliases (``*name``: recipes do not need them, and nested aliases explode in size)."""
    import yaml

    try:
        if not path.is_file():
            raise SganError(
                f"the recipe {path} is not a regular file", where=str(path), fix="give the path of a YAML recipe file"
            )
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise SganError(
                f"the recipe {path} is larger than {MAX_RECIPE_BYTES} bytes",
                where=str(path),
                fix="give a YAML recipe (a few lines, see recipes/)",
            )
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SganError(
            f"the recipe {path} is not UTF-8 text (byte {exc.start})", where=str(path), fix="save the recipe as UTF-8"
        ) from None
    except OSError as exc:
        raise SganError(
            f"cannot read the recipe {path} ({exc.strerror})", where=str(path), fix="check the path and its permissions"
        ) from None
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise SganError(
                f"the recipe {path} uses YAML aliases (*name)",
                where=str(path),
                fix="write each value out instead of referring to an anchor",
            )
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SganError(
            f"the recipe {path} is not valid YAML ({exc})", where=str(path), fix="fix the YAML syntax"
        ) from None


def load_config(recipe: str | Path | None = None, sets: list[str] | None = None) -> SganConfig:
    """Defaults, then the recipe file, then each ``--set`` in order."""
    cfg = SganConfig()
    if recipe is not None:
        path = Path(recipe)
        if not path.exists():
            raise SganError(
                f"the recipe {path} does not exist",
                where=str(path),
                fix="give the path of a YAML recipe, e.g. recipes/quickstart.yaml",
            )
        data = read_recipe(path)
        apply_mapping(cfg, data, f"recipe {path}")
    for expr in sets or []:
        key, value = parse_set(expr)
        set_value(cfg, key, value, f"--set {expr}")
    return cfg


def given_keys(recipe: str | Path | None = None, sets: list[str] | None = None) -> set[str]:
    """The dotted keys a recipe and ``--set`` values give (whatever their values), so a
    command can tell a value the user chose from a default (call after :func:`load_config`,
    which has checked them)."""
    keys = set()
    if recipe is not None:
        data = read_recipe(Path(recipe))
        if isinstance(data, dict):
            keys |= {f"{sec}.{key}" for sec, values in data.items() if isinstance(values, dict) for key in values}
    return keys | {parse_set(expr)[0] for expr in sets or []}
