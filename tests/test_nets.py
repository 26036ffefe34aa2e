"""Sparse heads, generators and critics: closed forms, explicit loops, shapes, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sgan_cli.critics import Critic, DCGANFeatures, Encoder, MinibatchDiscrimination, MLPFeatures, ResNetFeatures
from sgan_cli.nets import (
    DCGANBody,
    Generator,
    MLPBody,
    PatchSynthesis,
    ResNetBody,
    SoftThreshold,
    TopK,
    WholeImageSynthesis,
    up_sampling_plan,
)


def test_soft_threshold_values_and_gradients():
    t = SoftThreshold(0.5)
    u = torch.tensor([-2.0, -0.3, 0.0, 0.4, 1.5], requires_grad=True)
    out = t(u)
    assert torch.allclose(out, torch.tensor([-1.5, 0.0, 0.0, 0.0, 1.0]))
    out.sum().backward()
    assert torch.equal(u.grad, torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0]))  # identity where active, 0 inside


def test_learnable_threshold_gets_gradient_and_stays_positive():
    t = SoftThreshold(0.5, learnable=True)
    u = torch.tensor([-2.0, 1.5])
    t(u).sum().backward()
    # d/dλ Σ T_λ(u) = −Σ sign(u) over active entries = −(−1 + 1) = 0; use a one-sided case
    t.zero_grad()
    t(torch.tensor([2.0, 3.0])).sum().backward()
    assert t.log_lam.grad is not None and float(t.log_lam.grad) == pytest.approx(-2 * 0.5)
    assert float(t.threshold().detach()) > 0


def _explicit_patch_synthesis(codes, atoms, C, P, H):
    """A plain loop: every code position (i, j) writes its patch centred there, then average."""
    B, K, h, w = codes.shape
    out = torch.zeros(B, C, H, H)
    count = torch.zeros(1, 1, H, H)
    off = (P - 1) // 2
    patches = torch.einsum("bkij,kd->bijd", codes, atoms).reshape(B, h, w, C, P, P)
    for i in range(h):
        for j in range(w):
            for di in range(P):
                for dj in range(P):
                    y, x = i - off + di, j - off + dj
                    if 0 <= y < H and 0 <= x < H:
                        out[:, :, y, x] += patches[:, i, j, :, di, dj]
                        count[:, :, y, x] += 1
    return out / count


@pytest.mark.parametrize("C, P", [(1, 3), (3, 3), (1, 2)])
def test_patch_synthesis_equals_explicit_loop(C, P):
    g = torch.Generator().manual_seed(0)
    K, H = 5, 6
    atoms = F.normalize(torch.randn(K, C * P * P, generator=g), dim=1)
    codes = torch.randn(2, K, H, H, generator=g)
    synth = PatchSynthesis(atoms, C, P, H, stride=1)
    assert torch.allclose(synth(codes), _explicit_patch_synthesis(codes, atoms, C, P, H), atol=1e-5)


def test_tiled_patch_synthesis_places_each_patch():
    C, P, H, K = 3, 2, 4, 12
    atoms = torch.eye(K)  # code k lights pixel k of the patch
    codes = torch.zeros(1, K, 2, 2)
    codes[0, 5, 1, 0] = 1.0  # patch at tile (1, 0); entry 5 = channel 1, row 0, col 1
    img = PatchSynthesis(atoms, C, P, H, stride=P)(codes)
    expected = torch.zeros(1, C, H, H)
    expected[0, 1, 2, 1] = 1.0
    assert torch.equal(img, expected)


def test_whole_image_synthesis_is_matmul():
    atoms = F.normalize(torch.randn(10, 64), dim=1)
    codes = torch.randn(3, 10)
    img = WholeImageSynthesis(atoms, 1, 8)(codes)
    assert img.shape == (3, 1, 8, 8) and torch.allclose(img.flatten(1), codes @ atoms)


@pytest.mark.parametrize("head", ["fixed", "learn", "topk"])
def test_straight_through_heads_keep_their_codes_and_pass_every_gradient(head):
    """Forward: the same codes. Backward: ∂/∂u of Σ w·codes is w everywhere (the kept codes'
    and the zeroed ones'); a learned λ gets the same gradient as without."""
    g = torch.Generator().manual_seed(1)
    u0, w = torch.randn(6, 20, generator=g), torch.randn(6, 20, generator=g)

    def make(st: bool) -> torch.nn.Module:
        if head == "topk":
            return TopK(3, straight_through=st)
        return SoftThreshold(0.5, learnable=head == "learn", straight_through=st)

    plain, through = make(False), make(True)
    u1, u2 = u0.clone().requires_grad_(True), u0.clone().requires_grad_(True)
    a, b = plain(u1), through(u2)
    assert torch.equal(a, b) and (a == 0).any()
    (a * w).sum().backward()
    (b * w).sum().backward()
    assert torch.equal(u2.grad, w)
    assert torch.equal(u1.grad, w * (a != 0))  # without: the zeroed codes get nothing
    if head == "learn":
        assert torch.allclose(plain.log_lam.grad, through.log_lam.grad)
    with torch.no_grad():
        assert torch.equal(through(u0), a.detach())
    inf = u0.clone()
    inf[0, 0] = float("inf")  # the same forward for a value that is kept: no inf − inf = NaN
    assert torch.equal(through(inf.requires_grad_(True)), plain(inf))


@pytest.mark.parametrize("kind", ["whole", "patch"])
def test_clipped_synthesis_bounds_images_like_a_saturated_tanh(kind):
    """clip=True: the unclipped image clamped to [−1, 1]; pixels inside pass the gradient
    unchanged, pixels outside pass none."""
    g = torch.Generator().manual_seed(0)
    dim, code_shape = (64, (5, 12)) if kind == "whole" else (9, (5, 12, 8, 8))
    atoms, mean = F.normalize(torch.randn(12, dim, generator=g), dim=1), torch.randn(dim, generator=g)
    codes = 3 * torch.randn(code_shape, generator=g)

    def make(clip: bool) -> torch.nn.Module:
        if kind == "whole":
            return WholeImageSynthesis(atoms, 1, 8, mean, clip=clip)
        return PatchSynthesis(atoms, 1, 3, 8, stride=1, mean=mean, clip=clip)

    free, clipped = make(False), make(True)
    c = codes.clone().requires_grad_(True)
    raw = free(codes)
    out = clipped(c)
    inside = (raw > -1) & (raw < 1)
    assert (~inside).any() and inside.any()  # the case has pixels on both sides
    assert torch.equal(out, raw.clamp(-1, 1))
    weights = torch.randn(out.shape, generator=g)
    (out * weights).sum().backward()
    c2 = codes.clone().requires_grad_(True)
    (free(c2) * weights * inside).sum().backward()
    assert torch.allclose(c.grad, c2.grad)


@pytest.mark.parametrize("size, plan", [(8, (4, 1)), (28, (7, 2)), (32, (4, 3)), (64, (4, 4))])
def test_up_sampling_plan(size, plan):
    assert up_sampling_plan(size) == plan


@pytest.mark.parametrize("size, channels", [(8, 1), (28, 1), (32, 3), (64, 3)])
def test_dcgan_shapes_dense_and_sparse(size, channels):
    z = torch.randn(4, 16)
    dense = Generator(DCGANBody(16, channels, size, width=32))
    x = dense(z)
    assert x.shape == (4, channels, size, size) and float(x.detach().abs().max()) <= 1.0
    K, P = 7, 3
    atoms = F.normalize(torch.randn(K, channels * P * P), dim=1)
    sparse = Generator(DCGANBody(16, K, size, width=32), SoftThreshold(0.5), PatchSynthesis(atoms, channels, P, size))
    img, codes = sparse.forward_codes(z)
    assert img.shape == (4, channels, size, size) and codes.shape == (4, K, size, size)
    assert bool((codes == 0).any())  # the threshold makes exact zeros
    critic = Critic(DCGANFeatures(channels, size, width=8))
    assert critic(img).shape == (4,)


def test_mlp_generator_and_critic_shapes_and_backward():
    atoms = F.normalize(torch.randn(20, 64), dim=1)
    g = Generator(MLPBody(8, 20, hidden=32), SoftThreshold(0.1), WholeImageSynthesis(atoms, 1, 8))
    img, codes = g.forward_codes(torch.randn(5, 8))
    critic = Critic(MLPFeatures(64, hidden=32))
    critic(img).sum().backward()
    assert img.shape == (5, 1, 8, 8) and codes.shape == (5, 20)
    assert all(p.grad is not None for p in g.body.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in critic.modules())


@pytest.mark.parametrize("size, channels", [(8, 1), (28, 1), (32, 3)])
def test_resnet_generator_and_critic_shapes(size, channels):
    z = torch.randn(3, 16)
    x = Generator(ResNetBody(16, channels, size, width=32))(z)
    assert x.shape == (3, channels, size, size)
    feats = ResNetFeatures(channels, size, width=8)
    assert Critic(feats)(x).shape == (3,)
    assert feats(x).shape == (3, feats.out_dim)


def test_minibatch_discrimination_matches_its_definition():
    """o(x_i)_b = Σ_{j≠i} exp(−‖M_{i,b} − M_{j,b}‖₁), written out with loops on a tiny case."""
    torch.manual_seed(0)
    mbd = MinibatchDiscrimination(6, kernels=4, dim=3)
    f = torch.randn(5, 6)
    m = (f @ mbd.T).view(5, 4, 3)
    expected = torch.zeros(5, 4)
    for i in range(5):
        for j in range(5):
            if i != j:
                expected[i] += torch.exp(-(m[i] - m[j]).abs().sum(-1))
    assert torch.allclose(mbd(f), expected, atol=1e-6)
    # identical samples see each other fully: o = n − 1 for every kernel
    assert torch.allclose(mbd(f[:1].repeat(4, 1)), torch.full((4, 4), 3.0))


def test_critic_with_minibatch_discrimination_is_twice_differentiable():
    critic = Critic(DCGANFeatures(1, 8, width=4), minibatch_kernels=5, mbd_dim=3)
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    g.pow(2).sum().backward()  # the gradient penalty's double backward
    assert critic.mbd is not None and critic.mbd.T.grad is not None


def test_encoder_modes():
    feats = MLPFeatures(64, hidden=16)
    x = torch.randn(3, 1, 8, 8)
    z = Encoder(feats, z_dim=5, mode="latent")(x)
    assert z.shape == (3, 5)
    vae = Encoder(MLPFeatures(64, hidden=16), z_dim=5, mode="vae")
    mu, logvar = vae.stats(x)
    assert mu.shape == logvar.shape == (3, 5) and torch.equal(vae(x), mu)
    with pytest.raises(ValueError):
        Encoder(feats, 5, mode="other")


def test_fixed_and_learnable_thresholds_agree_and_loading_updates_lambda():
    u = torch.randn(4, 7, 5, 5)
    fixed, learn = SoftThreshold(0.3), SoftThreshold(0.3, learnable=True)
    assert torch.allclose(fixed(u), learn(u), atol=1e-6)  # softshrink path = the written-out T_λ
    other = SoftThreshold(0.9)
    other.load_state_dict(fixed.state_dict())  # λ comes from the loaded buffer, not __init__
    assert torch.equal(other(u), fixed(u))
