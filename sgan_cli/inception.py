"""The FID Inception network: TensorFlow's 2015 Inception-v3 graph as pytorch-fid and
torch-fidelity port it, and its published weights.

Scores are only comparable with published numbers on *this* network and weights
(``pt_inception-2015-12-05-6726825d.pth``). It differs from torchvision's ImageNet
Inception-v3 in four places, all kept here:

* 1008 output classes (TensorFlow's label map), and no auxiliary head;
* the average-pool branch of the A, C and first E blocks ignores zero padding
  (TensorFlow's ``avg_pool`` with SAME padding: ``count_include_pad=False``);
* the last E block (Mixed_7c) pools its branch with a 3×3 *max* pool;
* input: uint8 pixels, TF1-style bilinear resize to 299×299 (source coordinate
  i·in/out, no half-pixel offset), then (x − 128)/128.

The module and attribute names reproduce the published state_dict keys
(``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch_pool.bn.running_var``, … 566 entries),
so the file loads as is with ``torch.load(weights_only=True)``. The Inception Score uses
the logits without the fc bias, as torch-fidelity does; FID/KID use the 2048-d pool.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import SganError
from .outputs import ensure_folder

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_NAME
# torch-fidelity publishes the same bytes under another name; a hub cache may hold either
ALIASES = (WEIGHTS_NAME, "weights-inception-2015-12-05-6726825d.pth")
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"  # 95,628,359 bytes
INPUT_SIZE = 299
FEATURE_DIM = 2048
N_CLASSES = 1008


class ConvBN(nn.Module):
    """Conv (no bias) → BatchNorm (ε = 1e-3, TensorFlow's) → ReLU: Inception's basic unit."""

    def __init__(
        self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, padding: int | tuple[int, int] = 0
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        # the conv with the BN folded in (see fuse); not saved, so the state_dict keeps the published keys
        self.register_buffer("fused_weight", None, persistent=False)
        self.register_buffer("fused_bias", None, persistent=False)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold eval-mode BN into the conv: w' = w·γ/√(σ²+ε), b' = β − μ·γ/√(σ²+ε).

        One pass over the activations instead of two: the BN pass is ~10 % of the time on a CPU.
        """
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        self.fused_weight = self.conv.weight * scale[:, None, None, None]
        self.fused_bias = self.bn.bias - self.bn.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        if self.fused_weight is not None and not self.training:
            y = F.conv2d(x, self.fused_weight, self.fused_bias, self.conv.stride, self.conv.padding)
        else:
            y = self.bn(self.conv(x))
        return F.relu(y, inplace=True)  # y is a fresh tensor: no copy


def _tf_avg_pool(x: Tensor) -> Tensor:
    """3×3 stride-1 average that divides by the in-image count at borders (TF SAME padding)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    """35×35 block: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | pool→1×1 (Mixed_5b–5d)."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([a, b, c, d], dim=1)


class BlockB(nn.Module):
    """35→17 reduction (Mixed_6a): strided 3×3 | 1×1→3×3→strided 3×3 | strided max pool."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], dim=1)


class BlockC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (Mixed_6b–6e)."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding) of a 1×7 and a 7×1 conv
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7_3 = ConvBN(c7, 192, col[0], padding=col[1])
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_3 = ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7dbl_4 = ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_5 = ConvBN(c7, 192, row[0], padding=row[1])
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = x
        for conv in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            c = conv(c)
        d = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([a, b, c, d], dim=1)


class BlockD(nn.Module):
    """17→8 reduction (Mixed_7a)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], dim=1)


class BlockE(nn.Module):
    """8×8 block with split 1×3 / 3×1 outputs (Mixed_7b: TF average pool; Mixed_7c: max pool)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch1x1(x)
        b0 = self.branch3x3_1(x)
        c0 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        parts = [
            a,
            self.branch3x3_2a(b0),
            self.branch3x3_2b(b0),
            self.branch3x3dbl_3a(c0),
            self.branch3x3dbl_3b(c0),
            self.branch_pool(pooled),
        ]
        return torch.cat(parts, dim=1)


def tf1_resize_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """[n_out, n_in] weights of TF1 ``resize_bilinear`` (align_corners=False) along one axis.

    Output pixel i samples source coordinate s = i·n_in/n_out (TF1 has no half-pixel
    offset): (1 − f)·x[⌊s⌋] + f·x[min(⌊s⌋+1, n_in−1)] with f = s − ⌊s⌋. Bilinear resizing is
    separable, so the image resize is W_y · X · W_xᵀ: two small matmuls instead of four
    gathers per pixel.
    """
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp_max(n_in - 1)
    hi = (lo + 1).clamp_max(n_in - 1)
    frac = src - lo.double()
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    w.index_put_((rows, lo), 1.0 - frac, accumulate=True)
    w.index_put_((rows, hi), frac, accumulate=True)
    return w.to(dtype)


class FIDInception(nn.Module):
    """uint8 images [B, 1 or 3, H, W] → (pool features [B, 2048], unbiased logits [B, 1008])."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32)
        self.Mixed_5c = BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128)
        self.Mixed_6c = BlockC(768, 160)
        self.Mixed_6d = BlockC(768, 160)
        self.Mixed_6e = BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, max_pool=False)
        self.Mixed_7c = BlockE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, N_CLASSES)
        self._resize_cache: dict[tuple[int, int, str, str], tuple[Tensor, Tensor]] = {}

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 [B, C, H, W] → float [B, 3, 299, 299]: TF1 bilinear resize, (x − 128)/128; gray → 3 channels."""
        if images.shape[1] not in (1, 3):
            raise SganError(
                f"the Inception network reads 1- or 3-channel images, got {images.shape[1]} channels",
                fix="score grayscale or RGB images",
            )
        h, w = images.shape[-2:]
        dtype = self.fc.weight.dtype  # float32 as torch-fidelity runs it; float64 works too
        key = (h, w, str(images.device), str(dtype))
        if key not in self._resize_cache:
            self._resize_cache[key] = (
                tf1_resize_matrix(h, INPUT_SIZE, dtype).to(images.device),
                tf1_resize_matrix(w, INPUT_SIZE, dtype).to(images.device),
            )
        wy, wx = self._resize_cache[key]
        x = wy @ images.to(dtype) @ wx.T  # [B, C, 299, 299]; resized before the channel repeat (3× less work)
        x = (x - 128.0) / 128.0
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = self.preprocess(images)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # [B, 64, 147, 147]
        x = F.max_pool2d(x, 3, stride=2)  # [B, 64, 73, 73]
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # [B, 192, 71, 71]
        x = F.max_pool2d(x, 3, stride=2)  # [B, 192, 35, 35]
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
        ):
            x = block(x)  # → [B, 768, 17, 17]
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # [B, 2048, 8, 8]
        pool = x.mean(dim=(2, 3))  # [B, 2048]
        return pool, pool @ self.fc.weight.T  # logits without the fc bias (torch-fidelity's "logits_unbiased")


def hub_weights_dir() -> Path:
    """Where torch.hub caches checkpoints: ``torch.hub.get_dir()/checkpoints`` ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _missing(detail: str) -> SganError:
    target = hub_weights_dir() / WEIGHTS_NAME
    return SganError(
        f"the Inception weights file {WEIGHTS_NAME} is not available and could not be downloaded ({detail})",
        where=str(target),
        fix=(
            f"download {WEIGHTS_URL} and put it at {target} (or anywhere, and pass --weights PATH); "
            "or, with no network, score with a classifier trained on the data: sgan classifier DATA "
            "--out classifier.safetensors, then --features classifier:classifier.safetensors"
        ),
    )


def locate_weights(weights: str | Path | None, download: bool = True) -> Path:
    """The weights file: ``--weights PATH``, else the torch hub cache, else a download into it."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise SganError(
                f"the Inception weights file {path} does not exist",
                where=str(path),
                fix=f"give the path of {WEIGHTS_NAME} (from {WEIGHTS_URL})",
            )
        return path
    folder = hub_weights_dir()
    for name in ALIASES:
        if (folder / name).is_file():
            return folder / name
    if not download:
        raise _missing("downloads disabled")
    target = folder / WEIGHTS_NAME
    ensure_folder(folder)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # an offline machine must fail fast, not hang
    try:
        # hash_prefix: torch.hub checks the SHA-256 prefix in the name; load_inception checks all of it
        torch.hub.download_url_to_file(WEIGHTS_URL, str(target), hash_prefix=WEIGHTS_SHA256[:8], progress=False)
    except Exception as exc:
        raise _missing(f"{type(exc).__name__}: {exc}") from None
    finally:
        socket.setdefaulttimeout(old)
    return target


def load_inception(path: Path, custom: bool = False) -> tuple[FIDInception, str, bool]:
    """Build the network from a weights file: (net in eval mode, "sha256:…", standard?).

    A file whose SHA-256 is not the published one is refused unless ``custom`` (then every
    result is labelled non-standard). Loading is ``weights_only=True``: tensors only, never
    arbitrary pickled objects.
    """
    digest = sha256_file(path)
    standard = digest == WEIGHTS_SHA256
    if not standard and not custom:
        raise SganError(
            f"the Inception weights {path} have SHA-256 {digest[:16]}…, "
            f"not the published {WEIGHTS_SHA256[:16]}… of {WEIGHTS_NAME}",
            where=str(path),
            fix=(
                f"download the file again from {WEIGHTS_URL}, or pass --custom-weights "
                "to use these weights anyway (results are then labelled non-standard)"
            ),
        )
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SganError(
            f"{path} is not a PyTorch weights file that can be loaded safely ({type(exc).__name__}: {exc})",
            where=str(path),
            fix=f"give {WEIGHTS_NAME}",
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    net = FIDInception()
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise SganError(f"{path} does not hold a state dict of tensors", where=str(path), fix=f"give {WEIGHTS_NAME}")
    expected = net.state_dict()
    # files written before BatchNorm had num_batches_tracked lack it; it plays no part in eval
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise SganError(
            f"{path} is not an FID Inception state dict ({details})",
            where=str(path),
            fix=f"give {WEIGHTS_NAME} from {WEIGHTS_URL}",
        )
    net.load_state_dict(state, strict=False)
    net.eval().requires_grad_(False)
    for module in net.modules():
        if isinstance(module, ConvBN):
            module.fuse()
    return net, "sha256:" + digest, standard
