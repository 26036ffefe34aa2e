"""Networks on the critic's side: feature extractors by architecture (MLP, DCGAN, ResNet, the
PacGAN tiny critic), minibatch discrimination, packing (PacGAN), the critic's score head and the
third player's encoder, which reuses the critic's extractors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .nets import dcgan_init, tiny_plan, up_sampling_plan


def norm2d(norm: str, c: int) -> nn.Module:
    """Critic normalisation: BatchNorm, per-sample LayerNorm over (C, H, W), or none."""
    if norm == "batch":
        return nn.BatchNorm2d(c)
    if norm == "layer":
        return nn.GroupNorm(1, c)
    return nn.Identity()


class MLPFeatures(nn.Module):
    """x [B, C, H, W] → features [B, hidden/2]: FC layers with LeakyReLU; LayerNorm or none,
    never BatchNorm for WGAN-GP (the gradient penalty is per sample; BatchNorm couples samples)."""

    def __init__(self, in_dim: int, hidden: int = 512, norm: str = "none") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        widths = [in_dim, hidden * 2, hidden, hidden // 2]
        for a, b in zip(widths[:-1], widths[1:]):
            layers.append(nn.Linear(a, b))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(b))
            elif norm == "layer":
                layers.append(nn.LayerNorm(b))
            layers.append(nn.LeakyReLU(0.2))
        self.net = nn.Sequential(*layers)
        self.out_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DCGANFeatures(nn.Module):
    """x [B, C, H, W] → features [B, C_last·base²]: strided convs halving the size to the base."""

    def __init__(self, channels: int, size: int, width: int = 64, norm: str = "none") -> None:
        super().__init__()
        base, n_down = up_sampling_plan(size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, 1, 1), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(n_down):
            layers += [nn.Conv2d(c, c * 2, 4, 2, 1), norm2d(norm, c * 2), nn.LeakyReLU(0.2)]
            c *= 2
        layers.append(nn.Flatten())
        self.net = nn.Sequential(*layers)
        self.out_dim = c * base * base

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ResBlockDown(nn.Module):
    """ReLU → conv3 → norm → ReLU → conv3 → norm → avg-pool ×½, plus a conv1 → avg-pool shortcut."""

    def __init__(self, c_in: int, c_out: int, norm: str) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c_in, c_out, 3, 1, 1), norm2d(norm, c_out),
            nn.ReLU(), nn.Conv2d(c_out, c_out, 3, 1, 1), norm2d(norm, c_out), nn.AvgPool2d(2),
        )  # fmt: skip
        self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.AvgPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x) + self.skip(x)


class ResNetFeatures(nn.Module):
    """x [B, C, H, W] → features [B, C_last]: residual down-blocks, ReLU, global sum pooling."""

    def __init__(self, channels: int, size: int, width: int = 64, norm: str = "none") -> None:
        super().__init__()
        _, n_down = up_sampling_plan(size)
        blocks: list[nn.Module] = [nn.Conv2d(channels, width, 3, 1, 1)]
        c = width
        for _ in range(n_down):
            blocks.append(ResBlockDown(c, c * 2, norm))
            c *= 2
        self.net = nn.Sequential(*blocks, nn.ReLU())
        self.out_dim = c

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).sum(dim=(2, 3))


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. (as in Kitov's GAN lecture): side information about the rest of the batch.

    f [n, A] → M = f·T reshaped [n, B, C]; c_b(i, j) = exp(−‖M_{i,b} − M_{j,b}‖₁);
    o(x_i)_b = Σ_{j≠i} c_b(i, j) → [n, B]. Computed in one broadcast ([n, n, B, C]), which
    stays twice differentiable for the gradient penalty.
    """

    def __init__(self, in_dim: int, kernels: int, dim: int) -> None:
        super().__init__()
        self.kernels, self.dim = kernels, dim
        self.T = nn.Parameter(torch.randn(in_dim, kernels * dim) * 0.1)

    def forward(self, f: Tensor) -> Tensor:
        m = (f @ self.T).view(-1, self.kernels, self.dim)  # [n, B, C]
        l1 = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(-1)  # [n, n, B]
        return torch.exp(-l1).sum(1) - 1.0  # exclude c_b(i, i) = 1


def pack_samples(x: Tensor, m: int) -> Tensor:
    """PacGAN's packing (Lin et al. 2018): [B, C, H, W] → [B/m, m·C, H, W], samples
    m·i … m·i + m − 1 concatenated along channels (pack i). ``m = 1`` returns ``x``."""
    if m == 1:
        return x
    if x.shape[0] % m:
        raise ValueError(f"a batch of {x.shape[0]} samples does not split into packs of {m}")
    return x.reshape(x.shape[0] // m, m * x.shape[1], *x.shape[2:])


class PackedFeatures(nn.Module):
    """Critic features of packed samples: x [B, C, H, W] → f [B/m, A], the ``inner`` extractor
    (built for m·C input channels) applied to :func:`pack_samples` (x, m)."""

    def __init__(self, inner: nn.Module, m: int) -> None:
        super().__init__()
        if m < 2:
            raise ValueError("packing needs m ≥ 2 samples per pack")
        self.inner, self.m = inner, m
        self.out_dim = int(inner.out_dim)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(pack_samples(x, self.m))


class Critic(nn.Module):
    """Features f(x) → [f, o(f)] (minibatch discrimination, optional) → linear score.

    ``features(x)`` is f, the critic's penultimate layer, which feature matching compares.
    With ``pack = m`` > 1 (PacGAN, Lin et al. 2018) the features are a :class:`PackedFeatures`
    (whose extractor reads m·C channels): the critic scores packs of m consecutive samples,
    so x [B, C, H, W] gives B/m scores and B/m feature rows.
    """

    def __init__(self, features: nn.Module, minibatch_kernels: int = 0, mbd_dim: int = 8, pack: int = 1) -> None:
        super().__init__()
        self.pack = pack
        self.features = PackedFeatures(features, pack) if pack > 1 else features
        a = int(features.out_dim)  # type: ignore[arg-type]
        self.mbd = MinibatchDiscrimination(a, minibatch_kernels, mbd_dim) if minibatch_kernels > 0 else None
        self.head = nn.Linear(a + minibatch_kernels, 1)

    def score(self, f: Tensor) -> Tensor:
        """Scores [B] from features f [B, A] (so a caller needing both runs the features once)."""
        if self.mbd is not None:
            f = torch.cat([f, self.mbd(f)], dim=1)
        return self.head(f).view(-1)

    def forward(self, x: Tensor) -> Tensor:
        return self.score(self.features(x))


class Encoder(nn.Module):
    """The third player: images [B, C, H, W] → latents [B, z_dim] through critic-like features.

    mode "latent" (the reconstructor E of Mahdizadehaghdam et al. 2019, trained on ‖E(G(z)) − z‖²): ``forward`` is z.
    mode "vae" (the VAE encoder of Ganz & Blau, Sparse GAN): ``stats`` gives (μ, log σ²); ``forward`` is μ.
    """

    def __init__(self, features: nn.Module, z_dim: int, mode: str = "latent") -> None:
        super().__init__()
        if mode not in ("latent", "vae"):
            raise ValueError(f"unknown encoder mode {mode!r}")
        self.features, self.z_dim, self.mode = features, z_dim, mode
        self.head = nn.Linear(int(features.out_dim), z_dim * (2 if mode == "vae" else 1))  # type: ignore[arg-type]

    def stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, log σ²), each [B, z_dim]; the latent mode has no variance (log σ² = 0 is not used)."""
        h = self.head(self.features(x))
        if self.mode == "latent":
            return h, torch.zeros_like(h)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar

    def forward(self, x: Tensor) -> Tensor:
        return self.stats(x)[0]


class TinyFeatures(nn.Module):
    """The stacked-MNIST critic of PacGAN (Lin et al. 2018, Table 3): 3×3 stride-2 convs with
    ``width``, 2·width and 4·width channels (width 2: "¼ of G", 2-4-8; width 4: "½ of G",
    4-8-16), each followed by the normalisation and LeakyReLU 0.3; flattened for the linear head.
    As PacGAN's code (github.com/fjxmlzn/PacGAN, ``D=0.25G/model.py``) builds it: BatchNorm
    after every conv, the first too, and weights drawn by :func:`~sgan_cli.nets.dcgan_init`
    (the linear head too: :func:`sgan_cli.builders.build_critic`)."""

    def __init__(self, channels: int, size: int, width: int = 2, norm: str = "none") -> None:
        super().__init__()
        sizes = tiny_plan(size)
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(len(sizes) - 1):
            c = width * 2**i
            layers += [nn.Conv2d(c_in, c, 3, 2, 1), norm2d(norm, c), nn.LeakyReLU(0.3)]
            c_in = c
        layers.append(nn.Flatten())
        self.net = nn.Sequential(*layers)
        self.out_dim = c_in * sizes[0] ** 2
        dcgan_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# the feature extractors by architecture, shared by critics and encoders
FEATURES: dict[str, type[nn.Module]] = {
    "mlp": MLPFeatures,
    "dcgan": DCGANFeatures,
    "resnet": ResNetFeatures,
    "pacgan-tiny": TinyFeatures,
}
