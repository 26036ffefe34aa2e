"""Image data sets by name: all yield uint8 images [N, C, H, W] and optional labels.

``digits`` (scikit-learn's bundled 8×8 digits) works offline and is the default.
``stacked-mnist`` puts three MNIST digits, drawn with a seeded generator, in the three
channels of each image: 1,000 modes (Metz et al. 2017; VEEGAN, PacGAN).
``mnist``, ``fashion-mnist``, ``cifar10`` and ``celeba`` come through torchvision from
``--data-root`` (default ``$SGAN_DATA`` or ``~/.cache/sgan/data``) and are downloaded when
missing and online; offline, the error names the files expected and the folder looked in.
A folder of images and an ``sgan.samples`` file are data sets too, so samples can be fed
back (a folder is read by :mod:`sgan_cli.image_folder`). Pixels become floats in [−1, 1]
only when used (:meth:`ImageData.floats`), so large sets stay compact in memory.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from .config import DataConfig, check_range
from .contracts import SAMPLES, read_file
from .errors import SganError
from .image_folder import load_image_folder
from .outputs import check_folder_complete
from .validation import check_memory

# name → (torchvision class name, folder under root, files expected there)
_TORCHVISION: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mnist": (
        "MNIST",
        "MNIST/raw",
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ),
    "fashion-mnist": (
        "FashionMNIST",
        "FashionMNIST/raw",
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ),
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
    ),
    "celeba": (
        "CelebA",
        "celeba",
        (
            "img_align_celeba/",
            "list_eval_partition.txt",
            "identity_CelebA.txt",
            "list_attr_celeba.txt",
            "list_bbox_celeba.txt",
            "list_landmarks_align_celeba.txt",
        ),
    ),
}
DATASET_NAMES = ("digits", *_TORCHVISION, "stacked-mnist")


@dataclass
class ImageData:
    """A loaded image set. ``images`` is uint8 [N, C, H, W]; ``labels`` int64 [N] or None."""

    images: torch.Tensor  # noqa: F821 (torch is imported lazily)
    labels: torch.Tensor | None  # noqa: F821
    name: str
    source: str  # where it came from, for messages and metadata
    n_classes: int | None = None

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def floats(self, idx: torch.Tensor | slice | None = None) -> torch.Tensor:  # noqa: F821
        """Images (all, or ``idx``) as float32 in [−1, 1]: x/127.5 − 1."""
        x = self.images if idx is None else self.images[idx]
        return x.float().div_(127.5).sub_(1.0)


def default_root() -> Path:
    """``$SGAN_DATA``, else ``$XDG_CACHE_HOME/sgan/data``, else ``~/.cache/sgan/data``."""
    if os.environ.get("SGAN_DATA"):
        return Path(os.environ["SGAN_DATA"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sgan" / "data"


def absolute_paths(cfg: DataConfig) -> DataConfig:
    """A copy of ``cfg`` whose data root, and data name when it is a folder or file, are
    absolute paths: what a file records, so it is read back from any working folder."""
    import dataclasses

    root = str(Path(cfg.root).expanduser().resolve()) if cfg.root else cfg.root
    name = cfg.name
    if name not in DATASET_NAMES and Path(name).exists():
        name = str(Path(name).resolve())
    return dataclasses.replace(cfg, root=root, name=name)


def load_data(cfg: DataConfig) -> ImageData:
    """Load the data set ``cfg.name`` (see module doc), then apply resize and limit."""
    if cfg.split not in ("train", "test"):
        raise SganError(f"unknown split {cfg.split!r}", where="data.split", fix="use train or test")
    check_range("data.limit", cfg.limit, "the data configuration")
    name = cfg.name
    path = Path(name)
    if name == "digits":
        data = _load_digits(cfg.split)
    elif name in _TORCHVISION:
        data = _load_torchvision(name, Path(cfg.root) if cfg.root else default_root(), cfg.split, cfg.download)
    elif name == "stacked-mnist":
        mnist = _load_torchvision("mnist", Path(cfg.root) if cfg.root else default_root(), cfg.split, cfg.download)
        data = stack_digits(mnist, len(mnist), cfg.seed)
    elif path.suffix == ".safetensors":
        data = _load_samples(path)
    elif (samples_file := sample_folder_file(path)) is not None:
        data = _load_samples(samples_file)
    elif path.is_dir():
        data = ImageData(load_image_folder(path, cfg.image_size), None, path.name, str(path))
    elif path.exists():
        raise SganError(
            f"{name} is a file sgan cannot read as a data set",
            where=name,
            fix="give a data set name, a folder of images, or a samples.safetensors file",
        )
    elif os.sep in name or (os.altsep is not None and os.altsep in name):
        raise SganError(
            f"there is no folder or file {name}",
            where=name,
            fix=(
                "check the path; to score a trained run's images, make them first with "
                f"sgan sample RUN --out {name} (or give a data set name: {', '.join(DATASET_NAMES)})"
            ),
        )
    else:
        raise SganError(
            f"unknown data set {name!r} (not a known name, folder or .safetensors file)",
            where=name,
            fix=f"use one of {', '.join(DATASET_NAMES)}, a folder of images, or a samples.safetensors file",
        )
    check_nonempty(data)
    if cfg.limit is not None and cfg.limit < len(data):  # before resizing: only what is kept
        data.images = data.images[: cfg.limit]
        data.labels = None if data.labels is None else data.labels[: cfg.limit]
    if cfg.image_size is not None:
        data = resize(data, cfg.image_size)
    return data


def check_nonempty(data: ImageData) -> None:
    """A data set with no images, no channels or no pixels, or labels outside its classes,
    is one SganError naming its source."""
    shape = tuple(int(x) for x in data.images.shape)
    if len(shape) != 4 or 0 in shape:
        raise SganError(
            f"the data set {data.source} has no usable images (shape {shape}: images × channels × height × width)",
            where=data.source,
            fix="give a data set with at least one image of at least one channel",
        )
    if data.labels is not None and data.n_classes is not None and data.labels.numel():
        lo, hi = int(data.labels.min()), int(data.labels.max())
        if lo < 0 or hi >= data.n_classes:
            raise SganError(
                f"the labels in {data.source} run from {lo} to {hi}, outside "
                f"the {data.n_classes} classes 0..{data.n_classes - 1}",
                where=data.source,
                fix="restore the label files (they may be corrupt or of another data set)",
            )


def resize(data: ImageData, size: int) -> ImageData:
    """Square-resize every image (antialiased bilinear), in float, back to uint8."""
    import torch
    import torch.nn.functional as F

    check_range("data.image_size", size, "the data configuration")
    if data.images.shape[-2:] == (size, size):
        return data

    n, c = data.images.shape[0], data.images.shape[1]
    check_memory(
        n * c * size * size + min(n, 4096) * c * size * size * 8,
        f"{n} images of {c}×{size}×{size}",
        "--image-size",
        "give a smaller --image-size, or fewer images with --limit",
    )
    out = []
    for chunk in data.images.split(4096):  # bounded memory for large sets
        x = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    data.images = torch.cat(out)
    return data


def _load_digits(split: str) -> ImageData:
    """scikit-learn's 1,797 8×8 digits (values 0..16 → uint8 0..255); a seeded 80/20 split."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # [1797, 1, 8, 8]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(round(0.8 * len(x)))
    keep = order[:cut] if split == "train" else order[cut:]
    keep.sort()
    return ImageData(torch.from_numpy(x[keep]), torch.from_numpy(y[keep]), "digits", "sklearn.datasets.load_digits", 10)


def stack_digits(mnist: ImageData, n: int, seed: int, channels: int = 3) -> ImageData:
    """Stacked MNIST (Metz et al. 2017, Srivastava et al. 2017): n images [n, 3, H, W] whose
    channel c is MNIST image idx[i, c], idx drawn uniformly with ``torch.Generator(seed)``.

    The label is the mode Σ_c label_c·10^(2−c) ∈ [0, 1000) (the order of
    ``metrics.stacked_modes``), so all 1,000 modes are reachable when every digit is
    present. Deterministic per seed; independent of the machine (CPU generator).
    """
    import torch

    if mnist.channels != 1 or mnist.labels is None:
        raise ValueError("stacking needs labelled single-channel digits")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(mnist), (n, channels), generator=gen)  # [n, 3]
    images = mnist.images[idx, 0]  # [n, 3, H, W]
    place = 10 ** torch.arange(channels - 1, -1, -1)
    labels = (mnist.labels[idx] * place).sum(dim=1)
    return ImageData(images, labels, "stacked-mnist", f"{mnist.source} (3 digits per image, seed {seed})", 10**channels)


def _missing_data_error(name: str, folder: Path, files: tuple[str, ...], detail: str) -> SganError:
    return SganError(
        f"the {name} data set is not in {folder} and could not be downloaded ({detail})",
        where=str(folder),
        fix=(
            f"put these files in {folder}: {', '.join(files)} — or run once with network access, "
            f"or pass --data-root DIR (or set $SGAN_DATA) where DIR/{_TORCHVISION[name][1]} holds them"
        ),
    )


def locate_root(name: str, root: Path) -> Path:
    """The data root torchvision wants for ``name``, from what a user may pass as ``--data-root``:
    the root itself (holding ``MNIST/raw/…``), or a folder inside it that holds the files —
    ``…/MNIST/raw`` or ``…/MNIST`` — whose parents are then the root. A folder that holds the
    files but is not named like torchvision's layout is an error naming the folder to create.
    Never creates anything."""
    _, sub, files = _TORCHVISION[name]
    if _has_files(root / sub, files):
        return root
    parts = Path(sub).parts  # e.g. ("MNIST", "raw")
    for depth in range(len(parts), 0, -1):  # root = …/MNIST/raw, then root = …/MNIST
        if root.parts[-depth:] == parts[:depth] and _has_files(root.parents[depth - 1] / sub, files):
            return root.parents[depth - 1]
    if _has_files(root, files):
        raise SganError(
            f"{root} holds the {name} files, but torchvision reads them from {sub}/ inside the data root",
            where=str(root),
            fix=f"move them into {root / sub} and pass --data-root {root}",
        )
    return root


def _has_files(folder: Path, files: tuple[str, ...]) -> bool:
    """Whether every expected file (or, for names ending in '/', folder) is in ``folder``;
    MNIST's files count when gzipped too (torchvision unpacks them)."""

    def present(f: str) -> bool:
        p = folder / f.rstrip("/")
        return p.is_dir() if f.endswith("/") else (p.is_file() or p.with_name(p.name + ".gz").is_file())

    return folder.is_dir() and all(present(f) for f in files)


def _download(build: Callable[[str, bool], object], root: Path) -> None:  # noqa: F821
    """Download through torchvision into a temporary folder, then move what it wrote into
    ``root``: a failed (offline) download leaves the data root exactly as it was."""
    import shutil
    import tempfile

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # offline machines must fail fast, not hang
    tmp = Path(tempfile.mkdtemp(prefix="sgan-download-"))
    try:
        build(str(tmp), True)
        root.mkdir(parents=True, exist_ok=True)
        _merge_into(tmp, root)
    finally:
        socket.setdefaulttimeout(old)
        shutil.rmtree(tmp, ignore_errors=True)


def _merge_into(src: Path, dst: Path) -> None:
    """Move the tree ``src`` into ``dst``, keeping files already in ``dst``."""
    import shutil

    for item in src.iterdir():
        target = dst / item.name
        if item.is_dir() and target.is_dir():
            _merge_into(item, target)
        elif not target.exists():
            shutil.move(str(item), str(target))


def open_torchvision(name: str, root: Path, split: str, download: bool) -> tuple[object, Path]:
    """torchvision's data set object for ``name`` and its folder, downloaded into ``root``
    first when it is missing and ``download`` (offline: the SganError naming the files
    expected and the folder)."""
    import torchvision.datasets as tvd

    cls_name, sub, files = _TORCHVISION[name]
    root = locate_root(name, root)
    folder = root / sub
    cls = getattr(tvd, cls_name)
    train = split == "train"

    def build(where: str, dl: bool):
        if name == "celeba":
            return cls(where, split="train" if train else "test", target_type=[], download=dl)
        return cls(where, train=train, download=dl)

    try:
        if not root.is_dir():  # torchvision would create it; not yet
            raise OSError(f"no folder {root}")
        ds = build(str(root), False)
    except (RuntimeError, OSError) as first:
        if not download:
            raise _missing_data_error(name, folder, files, f"download disabled; {first}") from None
        try:
            _download(build, root)
            ds = build(str(root), False)
        except Exception as exc:
            raise _missing_data_error(name, folder, files, f"{type(exc).__name__}: {exc}") from None
    return ds, folder


def _load_torchvision(name: str, root: Path, split: str, download: bool) -> ImageData:
    import numpy as np
    import torch

    ds, folder = open_torchvision(name, root, split, download)
    if name in ("mnist", "fashion-mnist"):
        images = ds.data[:, None].clone()  # uint8 [N, 1, 28, 28]
        labels = ds.targets.clone().long()
        n_classes = 10
    elif name == "cifar10":
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # [N, 3, 32, 32]
        labels = torch.tensor(ds.targets, dtype=torch.long)
        n_classes = 10
    else:  # celeba: aligned 178×218 faces, centre-cropped square; resize later (default 64)
        images = _celeba_images(ds)
        labels, n_classes = None, None
    return ImageData(images, labels, name, str(folder), n_classes)


def _celeba_images(ds: object, size: int = 64) -> torch.Tensor:  # noqa: F821
    import numpy as np
    import torch
    from PIL import Image

    out = np.empty((len(ds), 3, size, size), dtype=np.uint8)  # type: ignore[arg-type]
    for i, fname in enumerate(ds.filename):  # type: ignore[attr-defined]
        with Image.open(Path(ds.root) / ds.base_folder / "img_align_celeba" / fname) as im:  # type: ignore[attr-defined]
            im = im.convert("RGB").crop((0, 20, 178, 198)).resize((size, size), Image.BILINEAR)
            out[i] = np.asarray(im).transpose(2, 0, 1)
    return torch.from_numpy(out)


_NUMBERED_PNG = re.compile(r"^\d{6,}\.png$")  # the numbered images sgan sample writes (as sampling.PNG_NAME)


def sample_folder_file(path: Path) -> Path | None:
    """The ``samples.safetensors`` (or, from ``--interpolate``, ``interpolation.safetensors``)
    of a folder written by ``sgan sample``, else None.

    Such a folder is read through that file — the exact uint8 samples (and their codes),
    not its numbered PNGs plus a grid of another size."""
    if not path.is_dir():
        return None
    check_folder_complete(path)  # not a folder sgan is still writing (or was killed while swapping)
    found = next((f for f in (path / "samples.safetensors", path / "interpolation.safetensors") if f.is_file()), None)
    if found is None and (path / "grid.png").is_file() and any(_NUMBERED_PNG.match(p.name) for p in path.iterdir()):
        # the layout of sgan sample without its samples file: an older sgan killed mid-way
        raise SganError(
            f"the folder {path} looks like an incomplete sgan sample "
            "output: numbered PNGs and grid.png but no samples.safetensors",
            where=str(path),
            fix=(
                "sample again into it with --force, or move grid.png "
                "out of it to read the PNGs as a plain folder of images"
            ),
        )
    return found


def _load_samples(path: Path) -> ImageData:
    """An ``sgan.samples`` file: tensor ``images`` uint8 [N, C, H, W], optional ``labels``."""
    f = read_file(path, SAMPLES, what="samples")  # its kind's checks: uint8 images [N, C, H, W], rows
    images = f.tensors["images"]
    labels = f.tensors.get("labels")
    return ImageData(images, None if labels is None else labels.long(), path.stem, str(path))
