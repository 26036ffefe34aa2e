"""Networks: sparse output heads and generators (the critics and encoders are in :mod:`sgan_cli.critics`).

A *sparse* generator ends in the soft threshold T_λ and a fixed dictionary: its body emits
codes, never pixels. Whole-image dictionaries (Ganz & Blau, Sparse GAN) turn a code vector a ∈ R^K into an
image a·D; patch dictionaries (Mahdizadehaghdam et al. 2019) turn a code map [B, K, h, w] into overlapping
P×P×C patches assembled by a fixed-weight ``conv_transpose2d`` (no loops over patches). A
*dense* generator (the baseline) ends in tanh on pixels instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _sync_lam_value(module: nn.Module, incompatible_keys: object) -> None:
    module.lam_value = float(module.lam)


def straight_through(codes: Tensor, u: Tensor) -> Tensor:
    """``codes`` (a sparse head's output for its input ``u``) with the gradient of the codes it
    zeroed passed straight through to ``u``: the value is unchanged, ∂codes/∂u = 1 everywhere
    (the straight-through estimator, Bengio, Léonard & Courville 2013). A code that is off then
    still learns whether to turn on; without it T_λ and top-k give it zero gradient. A learned
    λ keeps its own gradient."""
    return torch.where(codes == 0, codes + (u - u.detach()), codes)  # where: an infinite u stays infinite


class SoftThreshold(nn.Module):
    """T_λ(u) = sign(u)·max(|u| − λ, 0) with λ ≥ 0 fixed or learnable (Ganz & Blau, Sparse GAN, eq. 2).

    A learnable λ is stored as log λ so it stays positive under gradient steps. With
    ``straight_through``, codes below λ pass u's gradient (:func:`straight_through`).
    """

    def __init__(self, lam: float = 0.1, learnable: bool = False, straight_through: bool = False) -> None:
        super().__init__()
        if lam < 0:
            raise ValueError("λ must be ≥ 0")
        self.learnable, self.straight_through = learnable, straight_through
        if learnable:
            self.log_lam = nn.Parameter(torch.tensor(math.log(max(lam, 1e-8))))
        else:
            self.register_buffer("lam", torch.tensor(float(lam)))
            # the same λ as a Python float for softshrink (no device sync per call), kept in
            # step with the buffer when a state dict is loaded
            self.lam_value = float(lam)
            self.register_load_state_dict_post_hook(_sync_lam_value)

    def threshold(self) -> Tensor:
        return self.log_lam.exp() if self.learnable else self.lam

    def set_lambda(self, lam: float) -> None:
        """Set a fixed λ (the support controller's step); the float mirror is the stored float32."""
        if self.learnable:
            raise ValueError("a learnable λ is set by its optimiser")
        self.lam.fill_(lam)
        self.lam_value = float(self.lam)

    def forward(self, u: Tensor) -> Tensor:
        if not self.learnable:
            # one fused kernel (softshrink is T_λ) instead of four passes over code maps that
            # are large for patch generators ([B, K, H, W])
            codes = F.softshrink(u, self.lam_value)
        else:
            # written with relu so the gradient w.r.t. a learnable λ flows (−sign(u) where active)
            codes = torch.sign(u) * F.relu(u.abs() - self.threshold())
        return straight_through(codes, u) if self.straight_through and torch.is_grad_enabled() else codes


class TopK(nn.Module):
    """k-sparse codes (Makhzani & Frey 2013): keep the k largest-magnitude entries of each
    code vector along dim 1, zero the rest.

    Whole-image codes [B, K]: k per image; patch code maps [B, K, h, w]: k per position.
    The kept entries pass unchanged (so do their gradients); the others are zero with zero
    gradient, or with ``straight_through`` with u's gradient (:func:`straight_through`).
    Exactly k non-zeros per vector unless the input itself holds zeros.
    """

    def __init__(self, k: int, straight_through: bool = False) -> None:
        super().__init__()
        if k < 1:
            raise ValueError("top-k needs k ≥ 1")
        self.k, self.straight_through = k, straight_through

    def forward(self, u: Tensor) -> Tensor:
        if self.k >= u.shape[1]:
            return u
        idx = u.detach().abs().topk(self.k, dim=1).indices
        mask = torch.zeros_like(u).scatter_(1, idx, 1.0)
        if self.straight_through and torch.is_grad_enabled():
            return torch.where(mask.bool(), u, u - u.detach())  # dropped entries: value 0, gradient 1
        return u * mask


class SupportController:
    """Adapts a fixed soft threshold's λ so that the generated codes' support reaches a target.

    Integral control of log λ (dual ascent on the constraint support = target, step in
    relative units): log λ ← log λ + gain·clip((s − s*)/s*, ±1) after each generator step,
    where s is the support fraction of that step's codes. Too dense (s > s*) raises λ, too
    sparse lowers it. The only state is λ itself, held in the threshold's ``lam`` buffer,
    so it travels with the generator's state dict (checkpoints, generator files, EMA).
    Deterministic float arithmetic on s: with s all-reduced over ranks (DDP), every rank
    computes the same λ.
    """

    def __init__(self, threshold: SoftThreshold, target: float, gain: float = 0.05, lam_min: float = 1e-6) -> None:
        if threshold.learnable:
            raise ValueError("the support controller drives a fixed (non-learnable) threshold")
        if not 0.0 < target < 1.0:
            raise ValueError("the support target must be in (0, 1)")
        self.threshold, self.target, self.gain, self.lam_min = threshold, target, gain, lam_min

    def update(self, support: float) -> float:
        """One control step from the support fraction s ∈ [0, 1] of the last codes; returns the new λ."""
        error = max(-1.0, min(1.0, (support - self.target) / self.target))
        lam = max(self.threshold.lam_value, self.lam_min) * math.exp(self.gain * error)
        self.threshold.set_lambda(lam)
        return self.threshold.lam_value


def _sync_has_mean(module: nn.Module, incompatible_keys: object) -> None:
    module.has_mean = bool(module.mean.any())  # a Python flag: no device sync per forward


def _default_mean(module: nn.Module, state_dict: dict, prefix: str) -> None:
    """Generator files and checkpoints from before the dictionary mean read with mean = 0."""
    key = prefix + "mean"
    if key not in state_dict:
        state_dict[key] = torch.zeros_like(module.mean)


def clip_to_range(images: Tensor, clip: bool) -> Tensor:
    """The synthesised images clipped to the data's pixel range [−1, 1] when ``clip``.

    Real images fill that range and sit on its edge (MNIST's background is exactly −1); codes ×
    atoms are unbounded, and a fully connected sparse generator whose images may leave the range
    collapses under a conv critic where the same generator ending in tanh does not (the study in
    docs/results.md; ``model.clip_images``). Pixels outside pass no gradient, as a saturated tanh."""
    return images.clamp(-1.0, 1.0) if clip else images


class WholeImageSynthesis(nn.Module):
    """Codes [B, K] → images [B, C, H, W] = (a·D + m) reshaped; D = atoms [K, C·H·W] and the
    dictionary's mean image m [C·H·W] (zeros without a mean term) fixed; with ``clip``, clipped
    to [−1, 1] (:func:`clip_to_range`)."""

    def __init__(self, atoms: Tensor, channels: int, size: int, mean: Tensor | None = None, clip: bool = False) -> None:
        super().__init__()
        self.clip = clip
        if atoms.shape[1] != channels * size * size:
            raise ValueError(f"atoms of dim {atoms.shape[1]} do not make {channels}×{size}×{size} images")
        self.register_buffer("atoms", atoms.float().clone())
        self.register_buffer("mean", torch.zeros(atoms.shape[1]) if mean is None else mean.float().reshape(-1).clone())
        self.channels, self.size = channels, size

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        _default_mean(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, codes: Tensor) -> Tensor:
        images = torch.addmm(self.mean, codes, self.atoms).view(-1, self.channels, self.size, self.size)
        return clip_to_range(images, self.clip)


class PatchSynthesis(nn.Module):
    """Code map [B, K, h, w] → image [B, C, H, W] through P×P×C patch atoms (Mahdizadehaghdam et al. 2019).

    stride 1: one code per pixel position; patch (i, j) covers rows i − o … i − o + P − 1 with
    o = ⌊(P − 1)/2⌋ (clipped at the border), so h = H. Overlapping patches are summed by
    ``conv_transpose2d(codes, atoms.view(K, C, P, P), padding=o)`` and divided by the
    number of patches covering each pixel (precomputed). stride P: non-overlapping tiles,
    h = H / P, nothing to average. With ``clip``, the image is clipped to [−1, 1] (:func:`clip_to_range`).
    """

    def __init__(
        self,
        atoms: Tensor,
        channels: int,
        patch: int,
        size: int,
        stride: int = 1,
        mean: Tensor | None = None,
        clip: bool = False,
    ) -> None:
        super().__init__()
        self.clip = clip
        if atoms.shape[1] != channels * patch * patch:
            raise ValueError(f"atoms of dim {atoms.shape[1]} are not {channels}×{patch}×{patch} patches")
        if stride not in (1, patch):
            raise ValueError("patch synthesis supports stride 1 (overlapping, averaged) or stride P (tiled)")
        if stride == patch and size % patch:
            raise ValueError(f"tiled {patch}×{patch} patches cannot cover {size}×{size} images")
        self.register_buffer("kernel", atoms.float().reshape(-1, channels, patch, patch).clone())  # [K, C, P, P]
        self.patch, self.stride, self.size, self.channels = patch, stride, size, channels
        self.padding = (patch - 1) // 2 if stride == 1 else 0
        self.code_size = size if stride == 1 else size // patch
        ones = torch.ones(1, 1, self.code_size, self.code_size)
        count = F.conv_transpose2d(ones, torch.ones(1, 1, patch, patch), stride=stride, padding=self.padding)
        self.register_buffer("inv_count", 1.0 / count[:, :, :size, :size])  # [1, 1, H, W]
        # the mean patch m [C·P·P] (zeros without a mean term): added to every patch, so the
        # image gains the fixed offset (Σ of m over the patches covering a pixel) / count
        self.register_buffer("mean", torch.zeros(atoms.shape[1]) if mean is None else mean.float().reshape(-1).clone())
        _sync_has_mean(self, None)
        self.register_load_state_dict_post_hook(_sync_has_mean)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        _default_mean(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def offset(self) -> Tensor:
        """The image [1, C, H, W] that the mean patch adds (zeros without a mean term)."""
        ones = torch.ones(1, 1, self.code_size, self.code_size, device=self.mean.device, dtype=self.mean.dtype)
        m = self.mean.view(1, self.channels, self.patch, self.patch)
        return (
            F.conv_transpose2d(ones, m, stride=self.stride, padding=self.padding)[:, :, : self.size, : self.size]
            * self.inv_count
        )

    def forward(self, codes: Tensor) -> Tensor:
        out = F.conv_transpose2d(codes, self.kernel, stride=self.stride, padding=self.padding)
        out = out[:, :, : self.size, : self.size] * self.inv_count
        if self.has_mean:
            out = out + self.offset()
        return clip_to_range(out, self.clip)


def up_sampling_plan(size: int) -> tuple[int, int]:
    """(base, n_up): size = base·2^n_up with base ≥ 4 where possible (28 → 7·2², 32 → 4·2³)."""
    if size < 1:
        raise ValueError("size must be positive")
    base, n_up = size, 0
    while base % 2 == 0 and base // 2 >= 4:
        base //= 2
        n_up += 1
    return base, n_up


class MLPBody(nn.Module):
    """z [B, z_dim] → [B, out_dim]: four FC layers, BatchNorm + ReLU between (Ganz & Blau, Sparse GAN)."""

    def __init__(self, z_dim: int, out_dim: int, hidden: int = 512) -> None:
        super().__init__()
        widths = [z_dim, hidden // 2, hidden, hidden * 2]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class DCGANBody(nn.Module):
    """z → FC → [base·base·C₀] → fractionally strided convs doubling the size (DCGAN).

    Output [B, out_channels, out_size, out_size]; channels halve at every doubling from C₀
    (CIFAR in Mahdizadehaghdam et al. 2019: 4×4×1024 → … → K = 100 code channels at 32×32).
    """

    def __init__(self, z_dim: int, out_channels: int, out_size: int, width: int = 512) -> None:
        super().__init__()
        base, n_up = up_sampling_plan(out_size)
        self.base, self.c0 = base, width
        self.fc = nn.Sequential(
            nn.Linear(z_dim, width * base * base), nn.BatchNorm1d(width * base * base), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        c = width
        for _ in range(n_up):
            c_next = max(c // 2, 16)
            layers += [
                nn.ConvTranspose2d(c, c_next, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_next),
                nn.ReLU(inplace=True),
            ]
            c = c_next
        layers.append(nn.Conv2d(c, out_channels, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).view(-1, self.c0, self.base, self.base))


class Generator(nn.Module):
    """A body followed by a sparse head (T_λ → dictionary synthesis) or a dense tanh head.

    ``forward(z)`` returns images [B, C, H, W] in [−1, 1] (dense, and sparse with a clipping
    synthesis) or in the dictionary's span (sparse, unclipped); ``forward_codes(z)`` also
    returns the codes (None for dense), which the L1 penalty β·mean|a| and the support
    fraction are computed from.
    """

    def __init__(
        self,
        body: nn.Module,
        threshold: SoftThreshold | None = None,
        synthesis: nn.Module | None = None,
        image_shape: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        if (threshold is None) != (synthesis is None):
            raise ValueError("a sparse head needs both a threshold and a synthesis")
        self.body, self.threshold, self.synthesis = body, threshold, synthesis
        self.image_shape = image_shape  # dense MLP bodies emit flat pixels: reshaped to [C, H, W]

    @property
    def sparse(self) -> bool:
        return self.synthesis is not None

    def forward_codes(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        u = self.body(z)
        if self.threshold is None or self.synthesis is None:
            x = torch.tanh(u)
            return (x.view(-1, *self.image_shape) if self.image_shape is not None else x), None
        codes = self.threshold(u)
        return self.synthesis(codes), codes

    def forward(self, z: Tensor) -> Tensor:
        return self.forward_codes(z)[0]


class ResBlockUp(nn.Module):
    """BN → ReLU → ×2 nearest → conv3 → BN → ReLU → conv3, plus a ×2 → conv1 shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.ReLU(), nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, 1, 1),
        )  # fmt: skip
        self.skip = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x) + self.skip(x)


class ResNetBody(nn.Module):
    """z → FC → [C₀, base, base] → residual up-blocks doubling the size → BN → ReLU → conv3.

    The residual counterpart of :class:`DCGANBody` (same plan of sizes and channels), as in
    the residual generators of Mahdizadehaghdam et al. 2019, Table 2. Output [B, out_channels, out_size, out_size].
    """

    def __init__(self, z_dim: int, out_channels: int, out_size: int, width: int = 256) -> None:
        super().__init__()
        base, n_up = up_sampling_plan(out_size)
        self.base, self.c0 = base, width
        self.fc = nn.Linear(z_dim, width * base * base)
        blocks: list[nn.Module] = []
        c = width
        for _ in range(n_up):
            c_next = max(c // 2, 16)
            blocks.append(ResBlockUp(c, c_next))
            c = c_next
        self.net = nn.Sequential(*blocks, nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, out_channels, 3, 1, 1))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).view(-1, self.c0, self.base, self.base))


def dcgan_init(module: nn.Module) -> None:
    """DCGAN-tensorflow's initialisers, which PacGAN's stacked-MNIST code uses for its tiny nets
    (Lin et al. 2018, github.com/fjxmlzn/PacGAN, ``ops.py``): convolution weights N(0, 0.02²)
    truncated at 2σ, transposed-convolution and linear weights N(0, 0.02²), biases 0 (BatchNorm
    keeps γ = 1, β = 0). In place, on every submodule; draws from torch's global generator."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
        elif isinstance(m, (nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, std=0.02)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def tiny_plan(size: int) -> list[int]:
    """The sizes of the PacGAN/Unrolled-GAN tiny nets, from 4 up: 28 → [4, 7, 14, 28], 32 → [4, 8, 16, 32]
    (each ⌈s/2⌉ below ``size`` down to ≤ 4)."""
    sizes = [size]
    while sizes[0] > 4:
        sizes.insert(0, (sizes[0] + 1) // 2)
    return sizes


class TinyBody(nn.Module):
    """The stacked-MNIST generator of Unrolled GAN (Metz et al. 2017) and PacGAN (Lin et al. 2018, Table 3):
    z → linear → [C₀, 4, 4] → 3×3 transposed convs, stride 2, channels halving (C₀ = 64: 32, 16, 8)
    → a 3×3 stride-1 conv to ``out_channels``. BatchNorm (per channel, the first on the reshaped
    linear output) + ReLU between; weights drawn as PacGAN's code draws them (:func:`dcgan_init`).

    Each stride-2 transposed conv (padding 1) maps s to 2s − 1; output_padding 1 makes 2s where
    the target is even: 28×28 is 4 → 7 → 14 → 28 (output paddings 0, 1, 1).
    """

    def __init__(self, z_dim: int, out_channels: int, out_size: int, width: int = 64) -> None:
        super().__init__()
        sizes = tiny_plan(out_size)
        self.base, self.c0 = sizes[0], width
        self.fc = nn.Linear(z_dim, width * self.base**2)
        # PacGAN normalises the reshaped [C₀, 4, 4] map per channel (BatchNorm over the batch and the 4×4 positions)
        layers: list[nn.Module] = [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        c = width
        for s_in, s_out in zip(sizes[:-1], sizes[1:]):
            c_next = max(c // 2, 1)
            layers += [
                nn.ConvTranspose2d(c, c_next, 3, 2, 1, output_padding=s_out - (2 * s_in - 1), bias=False),
                nn.BatchNorm2d(c_next),
                nn.ReLU(inplace=True),
            ]
            c = c_next
        layers.append(nn.Conv2d(c, out_channels, 3, 1, 1))
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).view(-1, self.c0, self.base, self.base))
