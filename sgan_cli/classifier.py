"""A LeNet-style domain classifier for MNIST-like data, and its file ``sgan.classifier``.

For digits the field scores GANs with a classifier trained on the data set instead of the
ImageNet Inception network: IS from its softmax, FID/KID from its penultimate
layer, mode coverage from its predicted classes. Such scores mean something only next to
the classifier's test accuracy, which the file carries in its metadata.

Net: two stages of [3×3 conv → BN → ReLU] ×2 → 2×2 max pool (width w, then 2w), a fully
connected layer to ``feature_dim`` ReLU units (the penultimate features), dropout, and a
linear head to the classes. Inputs are uint8 images, scaled to [−1, 1] inside.

The features it reports are the penultimate activations times a constant of the net,
``feature_scale`` = 1/RMS of those activations over its training images (a buffer, saved
with the weights). KID's kernel (xᵀy/D + 1)³ was made for Inception pool features, whose
values are O(1); raw ReLU features of a small classifier are ~5× larger (RMS 4.7 on
mnist-5k), which multiplies the kernel's scale and made KID of real test images against
real training images −13.7 ± 5.7 instead of −0.006 ± 0.002. FID scales by the same
constant squared; IS and classes use the logits, which the scale does not touch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .contracts import SganFile, content_hash, file_kind, meta_float, meta_int, read_file, write_file
from .devices import resolve_device
from .errors import SganError
from .progress import ProgressFn
from .ranges import option_range
from .validation import check_number

ARCH = "lenet-bn-1"


@dataclass
class ClassifierConfig:
    """Training of ``sgan classifier`` (defaults give ≥ 97 % on the 4,000-image mnist-5k in minutes on 2 CPU cores)."""

    epochs: int = 15  # passes over the training split
    batch_size: int = 128  # images per step
    lr: float = 3e-3  # peak AdamW learning rate (one-cycle: warm-up then cosine decay)
    weight_decay: float = 5e-4  # AdamW weight decay
    width: int = 32  # channels of the first conv stage (the second has 2×)
    feature_dim: int = 128  # penultimate layer: the features FID and KID use
    dropout: float = 0.3  # before the head
    shift: int | None = (
        None  # random translation ±shift pixels while training; None: image_size // 14 (2 px on 28×28, 0 on 8×8)
    )
    seed: int = 0  # initialisation, batch order, augmentation
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"


class LeNet(nn.Module):
    """uint8 [B, C, S, S] → (penultimate features [B, feature_dim], logits [B, n_classes])."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        n_classes: int,
        width: int = 32,
        feature_dim: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if image_size < 4:
            raise SganError(
                f"the classifier needs images of at least 4×4 pixels, got {image_size}×{image_size}",
                fix="use larger images (--image-size)",
            )

        def unit(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        w = width
        self.body = nn.Sequential(
            *unit(channels, w), *unit(w, w), nn.MaxPool2d(2), *unit(w, 2 * w), *unit(2 * w, 2 * w), nn.MaxPool2d(2)
        )
        side = image_size // 4
        self.fc = nn.Linear(2 * w * side * side, feature_dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, n_classes)
        self.register_buffer("feature_scale", torch.tensor(1.0))  # set by train_classifier

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = images.to(self.fc.weight.dtype) / 127.5 - 1.0 if images.dtype == torch.uint8 else images
        feats = F.relu(self.fc(self.body(x).flatten(1)))  # [B, feature_dim]
        return feats * self.feature_scale, self.head(self.drop(feats))


@dataclass
class ClassifierInfo:
    """What a classifier file records about its net and how good it is."""

    dataset: str
    channels: int
    image_size: int
    n_classes: int
    width: int
    feature_dim: int
    test_accuracy: float
    n_train: int
    n_test: int
    arch: str = ARCH


@dataclass
class ClassifierFile:
    net: LeNet  # eval mode, no gradients
    info: ClassifierInfo
    hash: str  # content hash of the weights
    file: SganFile


def _shift_batch(x: Tensor, shift: int, gen: torch.Generator) -> Tensor:
    """Translate each image [B, C, H, W] by its own random (dy, dx) ∈ [−shift, shift]², filling with the
    background −1."""
    if shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), value=-1.0)
    off = torch.randint(0, 2 * shift + 1, (2, b), generator=gen).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + off[0][:, None])[:, None, :, None]  # [B, 1, H, 1]
    cols = (torch.arange(w, device=x.device)[None, :] + off[1][:, None])[:, None, None, :]  # [B, 1, 1, W]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def _feature_rms(net: LeNet, images: Tensor, device: torch.device, batch_size: int = 1000) -> float:
    """√(mean f²) of the unscaled penultimate features f over images [N, C, H, W] (eval mode)."""
    net.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for xb in images.split(batch_size):
            f = net(xb.to(device))[0] / net.feature_scale
            total += float(f.double().pow(2).sum())
            count += f.numel()
    return (total / max(1, count)) ** 0.5


def accuracy(net: LeNet, images: Tensor, labels: Tensor, device: torch.device, batch_size: int = 1000) -> float:
    """Share of images [N, C, H, W] uint8 whose argmax logit is the label."""
    net.eval()
    correct = 0
    with torch.inference_mode():
        for xb, yb in zip(images.split(batch_size), labels.split(batch_size)):
            correct += int((net(xb.to(device))[1].argmax(dim=1).cpu() == yb).sum())
    return correct / max(1, int(labels.shape[0]))


def train_classifier(
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    n_classes: int,
    cfg: ClassifierConfig,
    progress: ProgressFn | None = None,
) -> tuple[LeNet, float, float]:
    """Train on uint8 images [N, C, S, S] with int64 labels [N]; returns (net, test accuracy, seconds).

    AdamW with a one-cycle schedule (linear warm-up over the first 10 % of steps, cosine
    decay to 0) and random ±shift-pixel translations; cross-entropy loss.
    """
    if train_images.shape[0] < 2:
        raise SganError(
            f"training a classifier needs at least 2 labelled images, got {train_images.shape[0]}",
            fix="use a larger data set",
        )
    for name in ("epochs", "batch_size", "width", "feature_dim", "lr", "seed"):
        check_number(getattr(cfg, name), name, option_range("classifier", name))
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    _, c, s, _ = train_images.shape
    shift = cfg.shift if cfg.shift is not None else s // 14
    net = LeNet(c, s, n_classes, cfg.width, cfg.feature_dim, cfg.dropout).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = int(train_images.shape[0])
    per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * per_epoch
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (t + 1) / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / max(1, total - warm)))
    )
    x_all = train_images.to(device)
    y_all = train_labels.long().to(device)
    start = time.perf_counter()
    step = 0
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(n, generator=gen).to(device)
        loss_sum = 0.0
        for idx in order.split(cfg.batch_size):
            x = _shift_batch(x_all[idx].float() / 127.5 - 1.0, shift, gen)
            loss = F.cross_entropy(net(x)[1], y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_sum += float(loss.detach())
        if progress is not None:
            progress(step, total, {"epoch": epoch + 1, "loss": loss_sum / per_epoch})
    acc = accuracy(net, test_images, test_labels, device)
    net.feature_scale.fill_(1.0 / max(_feature_rms(net, train_images, device), 1e-12))
    seconds = time.perf_counter() - start
    net.eval().requires_grad_(False)
    return net.cpu(), acc, seconds


def train_from_data(
    train: Any, test: Any, cfg: ClassifierConfig, progress: ProgressFn | None = None
) -> tuple[LeNet, ClassifierInfo, float]:
    """Train on two labelled :class:`~sgan_cli.data.ImageData` splits; (net, info, seconds)."""
    for part, split in ((train, "train"), (test, "test")):
        if part.labels is None:
            raise SganError(
                f"the data set {part.name} has no labels, and a classifier needs them",
                where=part.source,
                fix="train on a labelled data set: digits, mnist, fashion-mnist or cifar10",
            )
        if len(part) == 0:
            raise SganError(
                f"the {split} split of {part.name} is empty", where=part.source, fix="use a larger data set or --limit"
            )
    if train.images.shape[1:] != test.images.shape[1:]:
        raise SganError("the train and test images differ in shape", where=train.source, fix="pass --image-size N")
    if train.images.shape[-1] != train.images.shape[-2]:
        raise SganError(
            f"the classifier needs square images, got {tuple(train.images.shape[-2:])}",
            where=train.source,
            fix="pass --image-size N",
        )
    n_classes = int(train.n_classes or int(max(train.labels.max(), test.labels.max())) + 1)
    net, acc, seconds = train_classifier(train.images, train.labels, test.images, test.labels, n_classes, cfg, progress)
    info = ClassifierInfo(
        dataset=train.name,
        channels=train.channels,
        image_size=train.image_size,
        n_classes=n_classes,
        width=cfg.width,
        feature_dim=cfg.feature_dim,
        test_accuracy=acc,
        n_train=len(train),
        n_test=len(test),
    )
    return net, info, seconds


def save_classifier(
    path: str | Path, net: LeNet, info: ClassifierInfo, config: dict[str, Any], force: bool = False
) -> str:
    """Write an ``sgan.classifier`` file (weights + :class:`ClassifierInfo` as metadata); returns its hash."""
    meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in asdict(info).items()}
    return write_file(path, CLASSIFIER, net.state_dict(), config=config, meta=meta, force=force)


def _info_from_meta(meta: dict[str, str], path: Path) -> ClassifierInfo:
    if "dataset" not in meta:
        raise SganError(
            f"{path} lacks classifier metadata ('dataset')",
            where=str(path),
            fix="train the classifier again with sgan classifier",
        )
    return ClassifierInfo(
        dataset=meta["dataset"],
        channels=meta_int(meta, "channels", path),
        image_size=meta_int(meta, "image_size", path),
        n_classes=meta_int(meta, "n_classes", path),
        width=meta_int(meta, "width", path),
        feature_dim=meta_int(meta, "feature_dim", path),
        test_accuracy=meta_float(meta, "test_accuracy", path),
        n_train=meta_int(meta, "n_train", path),
        n_test=meta_int(meta, "n_test", path),
        arch=meta.get("arch", ARCH),
    )


def _validate_classifier(tensors: dict[str, Any], meta: dict[str, str], path: Path) -> None:
    info = _info_from_meta(meta, path)
    if info.arch != ARCH:
        raise SganError(
            f"{path} holds a classifier of architecture {info.arch!r}; this sgan reads {ARCH!r}",
            where=str(path),
            fix="train it again with sgan classifier",
        )
    with torch.device("meta"):  # shapes only: nothing allocated, whatever sizes the metadata claims
        expected = LeNet(info.channels, info.image_size, info.n_classes, info.width, info.feature_dim).state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape))
    if missing or extra or wrong:
        raise SganError(
            f"{path}: the weights do not fit the recorded classifier (missing "
            f"{missing[:3]}, unexpected {extra[:3]}, wrong shape {wrong[:3]})",
            where=str(path),
            fix="train the classifier again with sgan classifier",
        )


CLASSIFIER = file_kind("sgan.classifier", _validate_classifier)


def load_classifier(path: str | Path) -> ClassifierFile:
    """Read and validate an ``sgan.classifier`` file into a ready net (eval mode, no gradients)."""
    f = read_file(path, CLASSIFIER, what="classifier")
    info = _info_from_meta(f.meta, f.path)
    net = LeNet(info.channels, info.image_size, info.n_classes, info.width, info.feature_dim)
    net.load_state_dict(f.tensors)
    net.eval().requires_grad_(False)
    return ClassifierFile(net=net, info=info, hash=content_hash(f.tensors), file=f)
