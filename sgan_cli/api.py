"""sgan as a Python library: learn a dictionary, train, sample, encode and score.

Values in, values out: images are tensors (or the name of a data set, a folder of images or a
``samples.safetensors``, as on the command line), settings are keyword arguments (a
:class:`~sgan_cli.config.SganConfig` for training), results are tensors, dataclasses and
dicts. Files are written only where a function says so (:meth:`Dictionary.save`, the run
folder of :func:`train`). A user error is one :class:`~sgan_cli.errors.SganError` that names the
argument or configuration key, where the value came from and how to fix it.

Images are float32 in [−1, 1] or uint8 in [0, 255], always [N, C, H, W] with H = W; float
images are rounded to uint8 the way ``sgan sample`` writes them (x ↦ round((x + 1)·127.5)).
The methods: whole-image dictionaries (Ganz & Blau, *Sparse GAN*), patch dictionaries and the
reconstructor (Mahdizadehaghdam, Panahi, Krim, *Sparse Generative Adversarial Network*, ICCV
Workshops 2019), the objectives' defaults (Goyal, *Generative Adversarial Nets (GANs): Training
Algorithms*, 2019).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import DataConfig, DictConfig, SganConfig, check_ranges, to_dict
from .contracts import DICTIONARY, DictionaryFile, check_dictionary_fits, save_dictionary, write_file
from .contracts import load_dictionary as _load_dictionary_file
from .data import ImageData, load_data, resize
from .devices import resolve_device
from .dictionary_job import DictionaryJob, learn_from_config
from .encoding import Encoded, encode_dictionary, resolve_coder
from .errors import SganError
from .features import Extractor, check_images, class_predictions, extract, load_extractor
from .images import to_uint8
from .metrics import canonical_order, feature_stats
from .progress import ProgressFn
from .ranges import CHANNELS, option_range, range_of
from .reference_stats import Reference
from .run_files import LoadedGenerator
from .run_files import load_generator as _load_generator
from .sampling import block_size, draw_latents, run_block
from .score_metrics import feature_metrics
from .score_options import ScoreOptions
from .training import TrainResult, run_training
from .validation import check_number

Images = Tensor | str | Path  # a tensor [N, C, H, W], or a data set name, a folder, a samples.safetensors

__all__ = [
    "Dictionary", "Encoded", "LoadedGenerator", "SganConfig", "SganError", "TrainResult", "encode",
    "learn_dictionary", "load_dictionary", "load_generator", "sample", "score", "to_uint8", "train",
]  # fmt: skip


# --- images ---------------------------------------------------------------------------------------


def _uint8_images(images: Tensor, name: str) -> Tensor:
    """[N, C, H, W] uint8, or float in [−1, 1] rounded to uint8; anything else is an SganError."""
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[-1] != images.shape[-2]:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise SganError(
            f"{name} must be a tensor of square images [N, C, H, W], got {shape}",
            where=name,
            fix="give images as [N, C, H, W] (uint8, or float in [−1, 1])",
        )
    if images.shape[0] == 0 or not CHANNELS.contains(images.shape[1]):
        raise SganError(
            f"{name} holds {images.shape[0]} images of {images.shape[1]} channels",
            where=name,
            fix=f"give at least one image with channels {CHANNELS.describe()}",
        )
    if images.dtype == torch.uint8:
        return images.cpu()
    if not images.is_floating_point() or not bool(torch.isfinite(images).all()):
        raise SganError(
            f"{name} must be uint8 or finite floats in [−1, 1], got {images.dtype}",
            where=name,
            fix="give uint8 images, or floats in [−1, 1] (what sample returns)",
        )
    return to_uint8(images.detach().cpu())


def _image_data(
    images: Images,
    name: str,
    *,
    split: str = "train",
    limit: int | None = None,
    image_size: int | None = None,
    data_root: str | Path | None = None,
) -> ImageData:
    """Tensors as they are; a name, folder or samples file loaded as ``sgan … DATA`` loads it.
    ``limit`` keeps the first images, ``image_size`` resizes them (both as data.limit and data.image_size)."""
    if isinstance(images, (str, Path)):
        root = None if data_root is None else str(data_root)
        return load_data(DataConfig(name=str(images), root=root, split=split, limit=limit, image_size=image_size))
    data = ImageData(_uint8_images(images, name), None, "tensor", f"the {name} tensor")
    check_number(limit, "limit", range_of("limit"))
    if limit is not None:
        data = ImageData(data.images[:limit], None, data.name, data.source)
    return resize(data, image_size) if image_size is not None else data


# --- dictionaries ---------------------------------------------------------------------------------


@dataclass
class Dictionary(DictionaryFile):
    """A dictionary of unit-norm atoms, learned by :func:`learn_dictionary` or read by
    :func:`load_dictionary`; it can be given wherever sgan takes a dictionary.

    ``atoms`` float32 [K, dim] with dim = C·S·S (whole images, ``patch`` None) or C·P·P
    (P×P patches); ``mean`` [dim], added back at synthesis; ``alpha`` the lasso penalty α of
    ½‖y − aD‖² + α‖a‖₁; ``achieved_sparsity`` the fraction of non-zero exact codes on held-out
    signals; ``psnr`` their reconstruction PSNR in dB (NaN when unknown). ``path`` and ``hash``
    are set once it is saved or when it was loaded.
    """

    psnr: float = math.nan
    path: Path | None = None
    _job: DictionaryJob | None = field(default=None, repr=False)
    _config: dict[str, Any] = field(default_factory=dict, repr=False)

    def save(self, path: str | Path, *, force: bool = False) -> str:
        """Write it as an ``sgan.dictionary`` file (atomic; an existing file only with
        ``force``); returns its content hash, which training records as lineage."""
        path = Path(path)
        if self._job is not None:
            digest = save_dictionary(path, self._job, self._config, force=force)
        else:
            assert self.file is not None  # loaded: written again as it was read
            f = self.file
            digest = write_file(
                path, DICTIONARY, f.tensors, config=f.config, lineage=f.lineage, meta=f.meta, force=force
            )
        self.path, self.hash = path, digest
        return digest


def learn_dictionary(
    images: Images,
    *,
    atoms: int | None = None,
    patch: int | None = None,
    stride: int = 1,
    sparsity: float | None = None,
    alpha: float | None = None,
    mean: bool = True,
    solver: str = "auto",
    passes: float | None = None,
    batch_size: int | None = None,
    max_samples: int = 100_000,
    heldout: float = 0.1,
    seed: int = 0,
    device: str = "auto",
    split: str = "train",
    limit: int | None = None,
    image_size: int | None = None,
    data_root: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> Dictionary:
    """Learn min ½‖Y − AD‖² + α‖A‖₁ over unit-norm atoms D, α tuned so the held-out codes have
    ``sparsity`` non-zeros (default 0.1, or dim/(3K) where lasso codes cannot reach 0.1).

    ``images``: a tensor [N, C, S, S] (uint8, or float in [−1, 1]) or a data set name, folder or
    samples file (with ``split``, ``limit``, ``image_size``, ``data_root``). ``atoms`` K (default
    the signal dimension); ``patch`` P ≥ 2 learns P×P×C patch atoms at ``stride``, else
    whole-image atoms. The other arguments are the ``dict`` section of the configuration
    (see ``sgan learn-dict --help``). Nothing is written; :meth:`Dictionary.save` writes it.
    Raises SganError naming the key (``dict.atoms``, …) for a value out of range.
    """
    data = _image_data(images, "images", split=split, limit=limit, image_size=image_size, data_root=data_root)
    cfg = DictConfig(
        atoms=atoms, patch=patch, stride=stride, sparsity=sparsity, alpha=alpha, mean=mean, solver=solver,
        passes=passes, batch_size=batch_size, max_samples=max_samples, heldout=heldout, seed=seed, device=device,
    )  # fmt: skip
    job = learn_from_config(data, cfg, progress)
    r = job.learned
    d_mean = job.mean if job.mean is not None else torch.zeros(r.atoms.shape[1])
    data_cfg = DataConfig(name=data.name, split=split, limit=limit, image_size=image_size)
    return Dictionary(
        atoms=r.atoms, mean=d_mean.float(), channels=job.channels, image_size=job.image_size, patch=job.patch,
        stride=job.stride, alpha=r.alpha, achieved_sparsity=r.achieved_sparsity, psnr=r.psnr, _job=job,
        _config={"data": to_dict(data_cfg), "dict": to_dict(cfg)},
    )  # fmt: skip


def load_dictionary(path: str | Path) -> Dictionary:
    """Read and check an ``sgan.dictionary`` file (see :class:`Dictionary`)."""
    d = _load_dictionary_file(path)
    psnr = float(d.file.meta.get("psnr_db", "nan")) if d.file is not None else math.nan
    fields = {f.name: getattr(d, f.name) for f in dataclasses.fields(DictionaryFile)}
    return Dictionary(**fields, psnr=psnr, path=Path(path))


def _dictionary(dictionary: Dictionary | DictionaryFile | str | Path) -> DictionaryFile:
    return load_dictionary(dictionary) if isinstance(dictionary, (str, Path)) else dictionary


# --- training, generators, samples ----------------------------------------------------------------


def train(
    config: SganConfig,
    out: str | Path = "runs/default",
    *,
    dictionary: Dictionary | str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    progress: ProgressFn | None = None,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a GAN per ``config`` into the run folder ``out`` (as ``sgan train``): checkpoints,
    ``generator.safetensors``, metrics.jsonl and sample grids; ``resume`` continues the run in
    ``out`` bit for bit, ``force`` starts it over.

    ``dictionary`` (a saved :class:`Dictionary` or a file) sets ``train.dict``: a sparse
    generator; without one (and without ``train.dict``) the dense baseline. ``config`` is not
    changed (the run records the resolved copy). ``stop`` is asked at each iteration boundary;
    when it says True the run saves and returns with ``interrupted`` set. Returns the steps
    run, seconds and the last logged losses. Raises SganError naming the key of a bad value.
    """
    cfg = copy.deepcopy(config)
    if isinstance(dictionary, DictionaryFile):
        saved = dictionary.path if isinstance(dictionary, Dictionary) else None
        saved = saved or (dictionary.file.path if dictionary.file is not None else None)
        if saved is None:
            raise SganError(
                "training records its dictionary by file, and this dictionary is not saved",
                where="dictionary",
                fix="save it first: dictionary.save('dictionary.safetensors')",
            )
        dictionary = saved
    if dictionary is not None:
        cfg.train.dict = str(dictionary)
    check_ranges(cfg, tuple(f.name for f in dataclasses.fields(SganConfig)), "the configuration")
    return run_training(cfg, Path(out), resume=resume, force=force, progress=progress, stop=stop)


def load_generator(
    path: str | Path,
    *,
    ema: bool = False,
    dictionary: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> LoadedGenerator:
    """The generator of a run folder or a ``generator.safetensors``, ready to sample (eval mode,
    on ``device``): ``ema`` its EMA weights; ``dictionary`` swaps in the atoms of another
    dictionary file of the same shape. ``.module`` is the ``nn.Module`` z [B, z_dim] → images
    [B, C, H, W] in [−1, 1]; ``.z_dim``, ``.geometry``, ``.dictionary`` describe it.

    Gradients through a sparse generator trained with ``model.straight_through`` (the default
    since generator schema 3) are the straight-through surrogate the loop trained with: codes
    the sparsity head set to zero still pass u's gradient, the forward values are exact. For
    the true gradient of the thresholded codes (latent inversion, say), set
    ``.module.threshold.straight_through = False`` (the sparsity head: soft threshold or top-k)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    return _load_generator(path, ema=ema, dictionary=dictionary, device=dev)


def sample(generator: LoadedGenerator | str | Path, n: int, *, seed: int = 0, batch_size: int = 256) -> Tensor:
    """n images of ``generator`` (loaded, or a run folder / generator file): float32 [n, C, H, W]
    in [−1, 1], on the CPU. The latents are those ``sgan sample --seed`` draws (row i the same
    for any n and batch size), and G runs on the same fixed blocks of latents as there
    (:func:`sgan_cli.sampling.block_size`), so ``to_uint8`` of these images are ``sgan sample``'s
    images bit for bit, whatever ``batch_size`` (checked, kept for compatibility)."""
    g = load_generator(generator) if isinstance(generator, (str, Path)) else generator
    check_number(n, "n", range_of("sample.n"))
    check_number(seed, "seed", range_of("seed"))
    check_number(batch_size, "batch_size", range_of("batch_size"))
    block = block_size(g)
    out = []
    with torch.inference_mode():
        for lo in range(0, n, block):
            x, _ = run_block(g, draw_latents(seed, lo, min(n, lo + block), g.z_dim), block)
            out.append(x.float().clamp(-1.0, 1.0).cpu())
    return torch.cat(out)


# --- codes ----------------------------------------------------------------------------------------


def encode(
    images: Images,
    dictionary: Dictionary | DictionaryFile | str | Path,
    *,
    method: str = "omp",
    nonzeros: int | None = None,
    alpha: float | None = None,
    stride: int | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    split: str = "test",
    limit: int | None = None,
    image_size: int | None = None,
    data_root: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> Encoded:
    """Sparse codes of ``images`` over ``dictionary`` and their reconstructions (as ``sgan encode --dict``).

    ``method`` "omp" with ``nonzeros`` per signal (default round(s·K) of the dictionary's
    achieved sparsity s) or "lasso" with penalty ``alpha`` (default the dictionary's α); patch
    dictionaries code every ``stride``-th position. Returns :class:`~sgan_cli.encoding.Encoded`:
    ``codes`` float32 [N, K] (whole images) or [N, K, h, w] (patches), ``reconstructions`` and
    ``originals`` uint8 [N, C, H, W], ``psnr`` [N] in dB, ``support_fraction``.
    """
    data = _image_data(images, "images", split=split, limit=limit, image_size=image_size, data_root=data_root)
    d = _dictionary(dictionary)
    check_dictionary_fits(d, data.channels, data.image_size, d.source)
    coder = resolve_coder(d, data.image_size, method, nonzeros, alpha, stride)
    return encode_dictionary(data, d, coder, batch_size=batch_size, device=resolve_device(device), progress=progress)


# --- scores ---------------------------------------------------------------------------------------

SCORE_METRICS = ("inception", "fid", "kid", "pr", "modes")


class _FeatureNet(nn.Module):
    """A user's feature function as an extractor net: uint8 [B, C, H, W] → (features, no logits)."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.fn(x)
        return f.reshape(f.shape[0], -1), f.new_zeros(f.shape[0], 0)


def _extractor(features: str | Callable[[Tensor], Tensor], weights: str | None, probe: Tensor) -> Extractor:
    if isinstance(features, str):
        return load_extractor(features, weights)
    with torch.inference_mode():
        dim = int(_FeatureNet(features)(probe[:1])[0].shape[1])
    name = getattr(features, "__name__", "custom")
    return Extractor("custom", _FeatureNet(features), name, "", True, dim, 0, dtype=torch.float64)


def score(
    samples: Images,
    reference: Images | None = None,
    *,
    metrics: Sequence[str] | None = None,
    features: str | Callable[[Tensor], Tensor] = "inception",
    weights: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    seed: int = 0,
    splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    k: int = 3,
    limit: int | None = None,
    image_size: int | None = None,
    data_root: str | Path | None = None,
) -> dict[str, float]:
    """Scores of ``samples`` (against ``reference`` for FID, KID and precision/recall), as
    ``sgan score`` computes them on the same images: a dict of floats.

    ``metrics`` from "inception" (IS over ``splits`` splits), "fid", "kid" (``kid_subsets``
    subsets of ``kid_subset_size``), "pr" (precision and recall with ``k`` neighbours) and
    "modes" (a classifier's classes hit, and the KL of their histogram to uniform); default
    inception, plus fid with a reference. ``features``: "inception" (the TF-2015 FID network;
    ``weights`` a local copy of its weights), "classifier:FILE" (``sgan classifier``), or a
    function uint8 images [B, C, H, W] → features [B, d] (FID, KID and pr only). A data set
    name as ``samples`` reads its test split, as ``reference`` its train split. Keys: inception,
    inception_std, fid, kid, kid_std, precision, recall, modes, modes_total, modes_kl.
    """
    wanted = list(metrics) if metrics is not None else ["inception"] + (["fid"] if reference is not None else [])
    unknown = [m for m in wanted if m not in SCORE_METRICS]
    if unknown or not wanted:
        raise SganError(
            f"unknown metrics {unknown}" if unknown else "no metric asked for",
            where="metrics",
            fix=f"use some of {', '.join(SCORE_METRICS)}",
        )
    for name, value in (("splits", splits), ("kid_subsets", kid_subsets), ("kid_subset_size", kid_subset_size)):
        check_number(value, name, option_range("score", name))
    check_number(k, "k", option_range("score", "k"))
    needs_ref = [m for m in wanted if m in ("fid", "kid", "pr")]
    if needs_ref and reference is None:
        raise SganError(
            f"{needs_ref[0]} compares with reference images, but no reference was given",
            where="reference",
            fix="give reference images, or a data set name",
        )
    opts = ScoreOptions(None, seed=seed, splits=splits, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, k=k)
    x = _image_data(samples, "samples", split="test", limit=limit, image_size=image_size, data_root=data_root).images
    x = x[canonical_order(x)]  # as sgan score: the result does not depend on the images' order
    extractor = _extractor(features, weights, x)
    if extractor.kind == "custom" and any(m in ("inception", "modes") for m in wanted):
        raise SganError(
            "inception and modes need a network's class logits, which a feature function has none of",
            where="features",
            fix='use features="inception" or "classifier:FILE" for them',
        )
    if extractor.kind != "custom":  # a feature function takes what it is given
        check_images(extractor, x, "samples")
    dev = resolve_device(device)
    bs = batch_size or (50 if extractor.kind == "inception" else 500)
    ref = None
    if reference is not None:
        data = _image_data(reference, "reference", split="train", image_size=image_size, data_root=data_root)
        r = data.images[canonical_order(data.images)]
        if extractor.kind != "custom":
            check_images(extractor, r, "reference")
        rf = extract(extractor, r, bs, dev)
        ref = Reference(data.source, rf, feature_stats(rf.features), False, None, None)
    feats = extract(extractor, x, bs, dev)
    modes = class_predictions(extractor, x, bs, dev, feats.logits) if "modes" in wanted else None
    return feature_metrics(feats, ref, wanted, opts, modes)
