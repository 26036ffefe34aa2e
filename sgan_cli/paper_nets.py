"""The papers' own nets, layer for layer: ``--arch goyal`` and ``--arch ganz-blau``.

**goyal** — A. Goyal, *Generative Adversarial Nets (GANs): Training Algorithms* (EE5239
report, 2019), Appendix I: the nets behind its MNIST and Fashion-MNIST comparison of DCGAN,
WGAN and WGAN-GP (they are TensorFlow's DCGAN tutorial nets, which the report names as its
source). Generator: z → Linear 12,544 (no bias) → BatchNorm → LeakyReLU → 7×7×256 →
ConvTranspose 5×5 stride 1 → 128 → BN → LeakyReLU → ConvTranspose 5×5 stride 2 → 64 → BN →
LeakyReLU → ConvTranspose 5×5 stride 2 → 1 (no biases in the generator), then tanh: 2,305,472
parameters (2,330,944 with BatchNorm's running statistics, the report's "total"). Critic:
Conv 5×5 stride 2 → 64, LeakyReLU, Dropout 0.3 → Conv 5×5 stride 2 → 128, LeakyReLU, Dropout
0.3 → Linear 6,272 → 1: 212,865 parameters, about 10 M multiply-adds per 28×28 image.
What the report's table does not show is taken from that TensorFlow source: LeakyReLU slope
0.3 and BatchNorm ε = 10⁻³, momentum 0.01 (Keras' defaults), Glorot-uniform weights and zero
biases in the generator body and the critic's convolutions (the critic's last Linear is
sgan's :class:`~sgan_cli.critics.Critic` head, PyTorch's default initialisation).

**ganz-blau** — R. Ganz, T. Blau, *Sparse GAN* (course project): the whole-image sparse
generator "of four fully connected layers with batch normalisation and non-linear activation",
ending in the soft threshold T_λ over a whole-image dictionary, and a discriminator "of three
convolutional layers and one fully connected layer" (sigmoid output: the BCE objective's
logits). The paper states no widths, kernels or activations; ours follow the DCGAN guidelines
(Radford et al., as in Kitov's lecture *Generative adversarial networks*): generator z →
w → 2w → 4w (Linear, BatchNorm, ReLU each) → Linear to the K codes (w = ``model.g_width``,
256 by default: 256, 512, 1024); critic Conv 5×5 stride 2 → d → 2d → 4d (LeakyReLU 0.2; no
normalisation unless ``model.critic_norm`` asks) → Linear → 1 (d = ``model.d_width``, 64).

Both bodies compose with sgan's heads like the others (:class:`~sgan_cli.nets.Generator`):
a dense generator ends in tanh on pixels; a sparse one emits codes — Ganz & Blau's a vector
per image over a whole-image dictionary, Goyal's a code map (K channels) over a patch
dictionary. Dropout draws its masks from its own seeded stream, saved in the state dict, so a
resumed run continues bit for bit like every other random draw of the loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .critics import norm2d
from .nets import MLPBody, up_sampling_plan

GOYAL, GANZ_BLAU = "goyal", "ganz-blau"
KERAS_SLOPE = 0.3  # Keras' LeakyReLU default (the report's nets are Keras layers)
_MASK64 = (1 << 64) - 1


def _keras_bn(kind: type[nn.modules.batchnorm._BatchNorm], n: int) -> nn.Module:
    """Keras' BatchNormalization defaults: ε = 10⁻³, moving averages with momentum 0.99
    (PyTorch's momentum counts the new batch's share: 0.01)."""
    return kind(n, eps=1e-3, momentum=0.01)


def _glorot(module: nn.Module) -> nn.Module:
    """Keras' default initialisation: Glorot-uniform weights of every Linear and (transposed)
    convolution, zero biases (the fan-in plus fan-out sum is the same for transposed convs)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def _splitmix64(x: int) -> int:
    """A 64-bit mixer (Steele et al., SplitMix): nearby counters give unrelated seeds."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _sync_stream(module: nn.Module, incompatible_keys: object) -> None:
    seed, draws = (int(v) for v in module.stream.tolist())
    module.seed, module.draws = seed, draws


class SeededDropout(nn.Module):
    """Dropout (inverted: kept entries scaled by 1/(1 − p)) whose masks come from a stream of
    its own: draw n uses a generator seeded with mix(seed, n), on the input's device.

    ``nn.Dropout`` draws from PyTorch's global generator, which no sgan checkpoint holds; this
    stream's state (seed, draws so far) is the buffer ``stream``, so checkpoints carry it and a
    resumed run draws the masks the uninterrupted run would have. The seed comes from the
    global generator at construction (``torch.manual_seed(train.seed)`` precedes the nets).
    A mask is one uniform draw compared with 1 − p (cheaper on CPU than ``F.dropout``'s
    Bernoulli draw, measured 6.1 against 10.3 ms on 1.25 M entries).
    """

    def __init__(self, p: float, seed: int | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError("dropout p must be in [0, 1)")
        self.p = p
        # drawn on the CPU also when the nets are built on the meta device (the memory check)
        self.seed = int(torch.randint(0, 2**62, (), dtype=torch.int64, device="cpu")) if seed is None else int(seed)
        self.draws = 0
        self.register_buffer("stream", torch.tensor([self.seed, 0], dtype=torch.int64))
        self.register_load_state_dict_post_hook(_sync_stream)

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # type: ignore[no-untyped-def]
        self.stream.copy_(torch.tensor([self.seed, self.draws], dtype=torch.int64))  # the Python mirror is current
        super()._save_to_state_dict(destination, prefix, keep_vars)

    @property
    def active(self) -> bool:
        return self.training and self.p > 0

    def mask(self, x: Tensor) -> Tensor:
        """The next mask for ``x`` (its shape, layout and dtype): 0 or 1/(1 − p)."""
        gen = torch.Generator(device=x.device)
        gen.manual_seed(_splitmix64(self.seed ^ _splitmix64(self.draws)))
        self.draws += 1
        keep = 1.0 - self.p
        u = torch.empty_like(x, dtype=torch.float32).uniform_(generator=gen)
        return (u < keep).to(x.dtype).mul_(1.0 / keep)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask(x) if self.active else x

    def extra_repr(self) -> str:
        return f"p={self.p}"


def no_dropout(module: nn.Module) -> nn.Module:
    """Switch off every :class:`SeededDropout` in ``module`` (p = 0: no draws): the encoders
    that borrow a critic's architecture keep its layers, not its regulariser."""
    for m in module.modules():
        if isinstance(m, SeededDropout):
            m.p = 0.0
    return module


class GoyalBody(nn.Module):
    """Goyal's generator up to its last transposed convolution (the head adds tanh or codes).

    z [B, z_dim] → Linear (no bias) → [width·base²] → BN → LeakyReLU → [width, base, base] →
    ConvTranspose 5×5 stride 1 → width/2 → BN → LeakyReLU → ConvTranspose 5×5 stride 2 (each
    halving the channels, BN + LeakyReLU between) … → ``out_channels`` at ``out_size``. At
    28×28 (base 7, two doublings, width 256) that is the report's net exactly; other sizes
    keep the pattern (``up_sampling_plan``). No biases anywhere, as in the report.
    """

    def __init__(self, z_dim: int, out_channels: int, out_size: int, width: int = 256) -> None:
        super().__init__()
        base, n_up = up_sampling_plan(out_size)
        self.base, self.c0 = base, width
        self.fc = nn.Sequential(
            nn.Linear(z_dim, width * base * base, bias=False),
            _keras_bn(nn.BatchNorm1d, width * base * base),
            nn.LeakyReLU(KERAS_SLOPE),
        )
        c = max(width // 2, 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(width, c, 5, 1, 2, bias=False),
            _keras_bn(nn.BatchNorm2d, c),
            nn.LeakyReLU(KERAS_SLOPE),
        ]
        for i in range(n_up):
            last = i == n_up - 1
            c_next = out_channels if last else max(c // 2, 1)
            layers.append(nn.ConvTranspose2d(c, c_next, 5, 2, 2, output_padding=1, bias=False))
            if not last:
                layers += [_keras_bn(nn.BatchNorm2d, c_next), nn.LeakyReLU(KERAS_SLOPE)]
            c = c_next
        if n_up == 0:  # an odd size: no doubling, one more stride-1 layer to the output channels
            layers.append(nn.ConvTranspose2d(c, out_channels, 5, 1, 2, bias=False))
        self.net = nn.Sequential(*layers)
        _glorot(self)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # the stride-1 transposed convolution keeps NCHW weights whatever layout the module is
        # moved to (training moves the nets to channels-last on CPU), and so runs NCHW: its input
        # comes NCHW from the Linear, and oneDNN's deconvolution there was 1.3× slower in NHWC in
        # fp32 (5–7 % of a WGAN iteration; no difference in bf16)
        out = super()._apply(fn, recurse)
        w = self.net[0].weight
        if not w.is_contiguous():
            w.data = w.data.contiguous()
        return out

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).view(-1, self.c0, self.base, self.base))


def _halved(size: int, times: int) -> int:
    """The size after ``times`` 5×5 stride-2 convolutions with padding 2 (TensorFlow's "same"): ⌈s/2⌉ each."""
    for _ in range(times):
        size = math.ceil(size / 2)
    return size


class GoyalFeatures(nn.Module):
    """Goyal's critic up to its Linear head: x [B, C, H, W] → features [B, 2·width·⌈⌈H/2⌉/2⌉²].

    Conv 5×5 stride 2 → width, LeakyReLU 0.3, Dropout 0.3 → Conv 5×5 stride 2 → 2·width
    (``norm`` after it when asked; the report has none), LeakyReLU 0.3, Dropout 0.3 → flatten:
    6,272 features at 28×28 with width 64.
    """

    def __init__(self, channels: int, size: int, width: int = 64, norm: str = "none", dropout: float = 0.3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 5, 2, 2),
            nn.LeakyReLU(KERAS_SLOPE),
            SeededDropout(dropout),
            nn.Conv2d(width, 2 * width, 5, 2, 2),
            norm2d(norm, 2 * width),
            nn.LeakyReLU(KERAS_SLOPE),
            SeededDropout(dropout),
            nn.Flatten(),
        )
        self.out_dim = 2 * width * _halved(size, 2) ** 2
        _glorot(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class GanzBlauBody(MLPBody):
    """Ganz & Blau's generator: four fully connected layers, BatchNorm + ReLU after the first
    three (z → width → 2·width → 4·width → ``out_dim``); the soft threshold follows in the
    head. ``out_dim`` is the number of atoms K (sparse) or C·H·W pixels (dense baseline).
    The layers are sgan's MLP body's (``MLPBody`` with hidden = 2·width)."""

    def __init__(self, z_dim: int, out_dim: int, width: int = 256) -> None:
        super().__init__(z_dim, out_dim, hidden=2 * width)


class GanzBlauFeatures(nn.Module):
    """Ganz & Blau's discriminator up to its fully connected layer: three 5×5 stride-2
    convolutions x [B, C, H, W] → width → 2·width → 4·width channels, LeakyReLU 0.2 (``norm``
    after the second and third when asked) → flatten: 4·width·⌈H/8⌉² features (4,096 at 28×28
    with width 64)."""

    def __init__(self, channels: int, size: int, width: int = 64, norm: str = "none") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 5, 2, 2), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(2):
            layers += [nn.Conv2d(c, 2 * c, 5, 2, 2), norm2d(norm, 2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        layers.append(nn.Flatten())
        self.net = nn.Sequential(*layers)
        self.out_dim = c * _halved(size, 3) ** 2

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# the generator bodies (conv: emit [B, C, H, W] maps; vector: emit [B, D]) and critic features by arch
CONV_BODIES: dict[str, type[nn.Module]] = {GOYAL: GoyalBody}
VECTOR_BODIES: dict[str, type[nn.Module]] = {GANZ_BLAU: GanzBlauBody}
PAPER_FEATURES: dict[str, type[nn.Module]] = {GOYAL: GoyalFeatures, GANZ_BLAU: GanzBlauFeatures}
PAPER_ARCHS = (GOYAL, GANZ_BLAU)
