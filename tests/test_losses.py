"""GAN objectives: closed forms, and the per-sample flattened gradient norm of WGAN-GP."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sgan_cli.losses import clip_weights, critic_loss, generator_loss, gradient_penalty, l1_code_penalty


class Linear(nn.Module):
    """D(x) = ⟨w, x⟩: ∇ₓD = w for every sample, so the penalty has a closed form."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


def test_gradient_penalty_uses_whole_flattened_gradient():
    w = torch.full((3, 4, 4), 0.5)  # ‖w‖ over all 48 values = 0.5·√48 ≈ 3.46; per pixel (3 ch) 0.87
    critic = Linear(w)
    real, fake = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    gp = gradient_penalty(critic, real, fake).detach()
    expected = (0.5 * math.sqrt(48) - 1.0) ** 2
    per_pixel_bug = (0.5 * math.sqrt(3) - 1.0) ** 2  # what the channel-only norm would give
    assert float(gp) == pytest.approx(expected, rel=1e-5)
    assert abs(float(gp) - per_pixel_bug) > 1.0


def test_gradient_penalty_is_differentiable_for_the_critic():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    gp = gradient_penalty(critic, torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2))
    gp.backward()
    assert critic[1].weight.grad is not None and float(critic[1].weight.grad.abs().sum()) > 0


def test_objective_closed_forms():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 3.0])
    assert float(critic_loss("wgan", real, fake)) == pytest.approx(1.0 - 1.0)
    assert float(critic_loss("hinge", real, fake)) == pytest.approx((0 + 1) / 2 + (0 + 4) / 2)
    softplus = lambda t: math.log1p(math.exp(t))  # noqa: E731 - BCE with logits in closed form
    gan = (softplus(-2.0) + softplus(0.0)) / 2 + (softplus(-1.0) + softplus(3.0)) / 2
    assert float(critic_loss("gan", real, fake)) == pytest.approx(gan, rel=1e-6)
    assert float(generator_loss("gan", fake)) == pytest.approx((softplus(1.0) + softplus(-3.0)) / 2, rel=1e-6)
    for objective in ("wgan", "wgan-gp", "hinge"):
        assert float(generator_loss(objective, fake)) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        critic_loss("lsgan", real, fake)


def test_clip_and_l1():
    lin = nn.Linear(3, 3)
    with torch.no_grad():
        lin.weight.fill_(0.5)
    clip_weights(lin, 0.01)
    assert float(lin.weight.detach().abs().max()) == pytest.approx(0.01)
    assert float(l1_code_penalty(torch.tensor([[1.0, -3.0], [0.0, 0.0]]))) == 1.0
    assert float(l1_code_penalty(None)) == 0.0


def test_vae_loss_kl_matches_torch_distributions():
    from torch.distributions import Normal, kl_divergence

    from sgan_cli.losses import vae_loss

    torch.manual_seed(0)
    x, x_hat = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    mu, logvar = torch.randn(4, 5), torch.randn(4, 5)
    total, kl = vae_loss(x_hat, x, mu, logvar, kl_weight=2.0)
    ref_kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros(5), torch.ones(5))).sum(1)  # [B]
    ref_rec = (x_hat - x).pow(2).flatten(1).sum(1)
    assert torch.allclose(kl, (ref_kl / 9).mean(), atol=1e-6)
    assert torch.allclose(total, ((ref_rec + 2.0 * ref_kl) / 9).mean(), atol=1e-6)


def test_feature_matching_and_recon_losses_closed_forms():
    from sgan_cli.losses import feature_matching_loss, image_recon_loss, latent_recon_loss

    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
    fake = torch.tensor([[0.0, 0.0], [0.0, 2.0]])  # mean (0, 1)
    assert feature_matching_loss(real, fake).item() == pytest.approx(8.0)  # 2² + 2²
    assert feature_matching_loss(real, real[[1, 0]]).item() == 0.0  # order of the batch does not matter
    z = torch.zeros(2, 4)
    assert latent_recon_loss(z + 1.0, z).item() == pytest.approx(1.0)
    assert image_recon_loss(torch.full((2, 1, 2, 2), 0.5), torch.zeros(2, 1, 2, 2)).item() == pytest.approx(0.25)
