"""Feature extractors for scoring: the FID Inception network or a domain classifier.

``--features inception`` is the TF-2015 Inception port (:mod:`sgan_cli.inception`): FID and
KID read its 2048-d pool features, IS its logits without bias. ``--features
classifier:FILE`` is an ``sgan.classifier`` (:mod:`sgan_cli.classifier`): FID and KID read its
penultimate layer, IS and mode coverage its softmax. Either way :func:`extract` runs the net
over uint8 images in batches under ``torch.inference_mode`` and returns features and
logits (float32 for Inception, as torch-fidelity runs it; float64 for a classifier);
statistics over them are taken in float64 (:mod:`sgan_cli.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from . import distributed
from .classifier import load_classifier
from .errors import SganError
from .inception import FEATURE_DIM, N_CLASSES, load_inception, locate_weights
from .metrics import stacked_modes
from .progress import ProgressFn
from .ranges import range_of
from .validation import check_number


@dataclass
class Extractor:
    """A ready feature network and what a score made with it must report."""

    kind: str  # "inception" or "classifier"
    net: nn.Module  # uint8 [B, C, H, W] → (features [B, dim], logits [B, n_classes])
    source: str  # the weights or classifier file
    weights_hash: str  # "sha256:…" of the weights file (inception) or of the classifier's tensors
    standard: bool  # inception: the published weights; classifier: always True
    dim: int
    n_classes: int
    channels: int | None = None  # classifier: the channels it reads; inception: 1 or 3
    image_size: int | None = None  # classifier: the size it reads; inception: any (resized to 299)
    accuracy: float | None = None  # classifier: test accuracy recorded in its file
    dataset: str | None = None  # classifier: what it was trained on
    dtype: torch.dtype = torch.float32  # the net's precision (see load_extractor)

    @property
    def identity(self) -> str:
        """What a statistics file must match to be reused: kind and weights hash."""
        return f"{self.kind}:{self.weights_hash}"

    @property
    def label(self) -> str:
        """Short human description for tables."""
        if self.kind == "inception":
            return "inception (TF-2015 FID Inception" + (")" if self.standard else ", NON-STANDARD custom weights)")
        return f"classifier {Path(self.source).name} ({self.dataset}, test accuracy {self.accuracy:.2%})"


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``inception`` → ("inception", None); ``classifier:FILE`` → ("classifier", FILE)."""
    if spec == "inception":
        return "inception", None
    kind, sep, path = spec.partition(":")
    if kind == "classifier" and sep and path:
        return "classifier", path
    raise SganError(
        f"unknown feature extractor {spec!r}",
        where="features",
        fix="use features inception, or classifier:FILE with a file from `sgan classifier`",
    )


def load_extractor(
    spec: str, weights: str | None = None, custom_weights: bool = False, download: bool = True
) -> Extractor:
    """Build the extractor named by ``--features`` (on the CPU; :func:`extract` moves it)."""
    kind, path = parse_spec(spec)
    if kind == "inception":
        file = locate_weights(weights, download=download)
        net, digest, standard = load_inception(file, custom=custom_weights)
        return Extractor("inception", net, str(file), digest, standard, FEATURE_DIM, N_CLASSES)
    if weights is not None:
        raise SganError(
            "weights applies to features inception only",
            where="weights",
            fix="drop weights; a classifier file holds its own weights",
        )

    clf = load_classifier(path)  # type: ignore[arg-type]
    info = clf.info
    return Extractor(
        "classifier",
        clf.net,
        str(path),
        clf.hash,
        True,
        info.feature_dim,
        info.n_classes,
        channels=info.channels,
        image_size=info.image_size,
        accuracy=info.test_accuracy,
        dataset=info.dataset,
        # float64: a small net costs little more in double, and KID's cubic kernel turns
        # float32 rounding noise (1e-7, which varies with batch size and memory alignment)
        # into ~1e-6 relative changes; in float64 results repeat to ~1e-12
        dtype=torch.float64,
    )


def check_images(extractor: Extractor, images: Tensor, what: str) -> None:
    """Say clearly when images [N, C, H, W] cannot go through the extractor."""
    c, h, w = (int(s) for s in images.shape[1:])
    if extractor.kind == "inception":
        if c not in (1, 3):
            raise SganError(
                f"the {what} images have {c} channels; the Inception network reads 1 or 3",
                fix="score grayscale or RGB images",
            )
        return
    if c != extractor.channels or h != extractor.image_size or w != extractor.image_size:
        fixes = []  # only the fixes that would work
        if h != extractor.image_size or w != extractor.image_size:
            fixes.append(f"pass --image-size {extractor.image_size} to resize them")
        if c != extractor.channels:
            fixes.append(
                f"give {extractor.channels}-channel images ({'grayscale' if extractor.channels == 1 else 'colour'})"
            )
        raise SganError(
            f"the {what} images are {c}×{h}×{w}, but the classifier reads "
            f"{extractor.channels}×{extractor.image_size}×{extractor.image_size}",
            where=extractor.source,
            fix=f"{' and '.join(fixes)}, or use a classifier trained on such images",
        )


@dataclass
class Features:
    features: Tensor  # [N, dim], the extractor's dtype (float32 inception, float64 classifier)
    logits: Tensor  # [N, n_classes]


def extract(
    extractor: Extractor, images: Tensor, batch_size: int, device: torch.device, progress: ProgressFn | None = None
) -> Features:
    """Run the extractor over uint8 images [N, C, H, W] in batches; features stay on the CPU.

    Each image's features depend only on that image (eval-mode BatchNorm, no dropout), so
    results do not depend on ``batch_size`` beyond float rounding in the convolutions.
    Under torchrun each rank extracts every W-th batch (the batches one process makes) and
    the ranks combine them: every rank returns all N rows, bit-identical to one process.
    """
    check_number(batch_size, "batch_size", range_of("batch_size"))
    n = int(images.shape[0])
    net = extractor.net.to(device, extractor.dtype).eval()
    world = distributed.current()
    alloc = torch.zeros if world.distributed else torch.empty  # rows of other ranks stay 0 for the combination
    feats = alloc(n, extractor.dim, dtype=extractor.dtype)
    logits = alloc(n, extractor.n_classes, dtype=extractor.dtype)
    n_batches = -(-n // batch_size)
    with torch.inference_mode():
        for done_batches, b in enumerate(distributed.owned(n_batches), 1):
            lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
            f, lg = net(images[lo:hi].to(device, non_blocking=True))
            feats[lo:hi] = f.cpu()
            logits[lo:hi] = lg.cpu()
            if progress is not None:
                progress(hi if not world.distributed else min(n, done_batches * world.size * batch_size), n, {})
    if world.distributed:
        feats, logits = distributed.combine(feats), distributed.combine(logits)
    check_finite_features(extractor, feats, logits)
    return Features(feats, logits)


def check_finite_features(extractor: Extractor, feats: Tensor, logits: Tensor) -> None:
    """NaN or ±inf features (a broken extractor, e.g. a classifier with a NaN weight) would
    turn every metric into NaN or a linear-algebra failure: one SganError instead."""
    bad = int((~torch.isfinite(feats)).any(dim=1).sum()) + int((~torch.isfinite(logits)).any(dim=1).sum())
    if bad:
        raise SganError(
            "the feature extractor gave non-finite values (NaN or inf) for "
            f"{bad} image(s); no score computed from them can be trusted",
            where=extractor.source,
            fix=(
                "use another extractor (a classifier trained again with "
                "sgan classifier, or the standard Inception weights)"
            ),
        )


def class_predictions(
    extractor: Extractor, images: Tensor, batch_size: int, device: torch.device, logits: Tensor | None = None
) -> tuple[Tensor, int]:
    """Predicted modes of uint8 images [N, C, H, W] → ([N] int64, number of modes).

    A 1-channel classifier reads C-channel images one channel at a time: stacked MNIST
    (Metz et al. 2017) puts a digit in each of 3 channels, so an image's mode is the
    3-digit number they spell, one of 10³. Otherwise the mode is the predicted class
    (from ``logits`` [N, K] when already computed).
    """
    if extractor.kind != "classifier":
        raise SganError(
            "mode coverage needs a classifier's classes", where="--metric modes", fix="use --features classifier:FILE"
        )
    n, c, h, w = images.shape
    k = extractor.n_classes
    if extractor.channels == 1 and c > 1:
        check_images(extractor, images[:, :1], "samples")
        per_channel = (
            extract(extractor, images.reshape(n * c, 1, h, w), batch_size, device).logits.argmax(dim=1).view(n, c)
        )
        return stacked_modes(per_channel, k), k**c
    if logits is None:
        check_images(extractor, images, "samples")
        logits = extract(extractor, images, batch_size, device).logits
    return logits.argmax(dim=1), k
