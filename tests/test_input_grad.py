"""The gradient penalty's first-order input gradient equals autograd's double backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sgan_cli.critics import Critic, DCGANFeatures, MLPFeatures, ResNetFeatures
from sgan_cli.input_grad import input_gradient, traceable
from sgan_cli.losses import gradient_penalty


def _autograd_gp(critic: nn.Module, x_hat: torch.Tensor) -> torch.Tensor:
    """The reference: WGAN-GP as public code writes it (create_graph, then backward twice)."""
    x = x_hat.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return (g.flatten(1).norm(dim=1) - 1).pow(2).mean()


def _first_order_gp(critic: nn.Module, x_hat: torch.Tensor) -> torch.Tensor:
    return (input_gradient(critic, x_hat).flatten(1).norm(dim=1) - 1).pow(2).mean()


def _param_grads(critic: nn.Module, loss_fn, x_hat: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    critic.zero_grad(set_to_none=True)
    loss = loss_fn(critic, x_hat)
    loss.backward()
    return float(loss.detach()), [
        p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in critic.parameters()
    ]


def _assert_same_as_autograd(critic: nn.Module, x_hat: torch.Tensor) -> None:
    critic = critic.double()
    x_hat = x_hat.double()
    assert traceable(critic, x_hat)
    ref_loss, ref = _param_grads(critic, _autograd_gp, x_hat)
    loss, ours = _param_grads(critic, _first_order_gp, x_hat)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert any(float(g.abs().max()) > 0 for g in ref)
    for a, b in zip(ref, ours):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


CRITICS = [
    ("mlp", 1, 8), ("mlp", 3, 8), ("dcgan", 1, 8), ("dcgan", 1, 28), ("dcgan", 3, 32),
    ("resnet", 1, 8), ("resnet", 3, 32), ("resnet", 1, 28),
]  # fmt: skip


@pytest.mark.parametrize("arch,channels,size", CRITICS)
def test_sgan_critics_match_autograd_double_backward(arch: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    features = {
        "mlp": lambda: MLPFeatures(channels * size * size, 32),
        "dcgan": lambda: DCGANFeatures(channels, size, 8),
        "resnet": lambda: ResNetFeatures(channels, size, 8),
    }[arch]()
    _assert_same_as_autograd(Critic(features), torch.randn(5, channels, size, size))


def test_generic_layers_match_autograd() -> None:
    """Odd sizes (strided convs round down: output_padding), in-place activations, padded and
    ceil-mode pooling, a dilated and a grouped conv, a plain Sequential ending in [B, 1]."""
    torch.manual_seed(1)
    critic = nn.Sequential(
        nn.Conv2d(2, 6, 3, stride=2, padding=1), nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(6, 6, 3, stride=1, padding=2, dilation=2, groups=3), nn.ReLU(inplace=True),
        nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), nn.Identity(),
        nn.Conv2d(6, 4, 2, stride=3), nn.Flatten(), nn.Linear(4, 1),
    )  # fmt: skip
    _assert_same_as_autograd(critic, torch.randn(4, 2, 11, 11))


def test_input_gradient_values_match_autograd() -> None:
    torch.manual_seed(2)
    critic = Critic(DCGANFeatures(1, 28, 8)).double()
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(critic(xr).sum(), xr)
    torch.testing.assert_close(input_gradient(critic, x), ref, rtol=1e-12, atol=1e-14)


class _ScaledLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # not nn.Linear's forward: must not be traced
        return 2.0 * super().forward(x) ** 2


@pytest.mark.parametrize(
    "critic",
    [
        Critic(DCGANFeatures(1, 8, 8, norm="layer")),
        Critic(MLPFeatures(64, 16), minibatch_kernels=4, mbd_dim=3),
        nn.Sequential(nn.Flatten(), _ScaledLinear(64, 1)),
    ],
    ids=["layernorm", "minibatch-disc", "subclass"],
)
def test_untraceable_critics_fall_back_to_autograd(critic: nn.Module) -> None:
    torch.manual_seed(3)
    x = torch.randn(4, 1, 8, 8)
    assert not traceable(critic, x)
    # the fallback is autograd itself: same penalty, gradients reach the weights
    ref_loss, ref = _param_grads(critic, _autograd_gp, x)
    loss, ours = _param_grads(critic, _first_order_gp, x)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    for a, b in zip(ref, ours):
        torch.testing.assert_close(b, a)


def test_gradient_penalty_takes_first_order_path_and_keeps_its_value() -> None:
    torch.manual_seed(4)
    critic = Critic(DCGANFeatures(1, 8, 8))
    real, fake = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))
    eps = torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    ref = _autograd_gp(critic, eps * real + (1 - eps) * fake)
    assert float(gp.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    assert gp.grad_fn is not None


def _rewind(critic: nn.Module) -> None:
    """Every seeded dropout back to draw 0: the next pass draws the masks the last one did."""
    from sgan_cli.paper_nets import SeededDropout

    for m in critic.modules():
        if isinstance(m, SeededDropout):
            m.draws = 0


@pytest.mark.parametrize("arch,channels,size", [("goyal", 1, 28), ("goyal", 3, 8), ("ganz-blau", 1, 28)])
def test_paper_critics_match_autograd_with_their_dropout_masks(arch: str, channels: int, size: int) -> None:
    """The papers' critics (paper_nets.py) in training mode: Goyal's dropout is linear once
    its mask is drawn, so the first-order gradient with the same masks is autograd's."""
    from sgan_cli.paper_nets import GanzBlauFeatures, GoyalFeatures

    torch.manual_seed(5)
    features = GoyalFeatures(channels, size, 8) if arch == "goyal" else GanzBlauFeatures(channels, size, 8)
    critic = Critic(features).double().train()
    x_hat = torch.randn(4, channels, size, size, dtype=torch.float64)
    assert traceable(critic, x_hat)
    assert all(m.draws == 0 for m in critic.modules() if hasattr(m, "draws"))  # the probe drew no mask
    ref_loss, ref = _param_grads(critic, _autograd_gp, x_hat)
    _rewind(critic)
    loss, ours = _param_grads(critic, _first_order_gp, x_hat)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for a, b in zip(ref, ours):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
    # the masks really drop: another draw gives another penalty
    if arch == "goyal":
        assert [m.draws for m in critic.modules() if hasattr(m, "draws")] == [1, 1]
        assert _first_order_gp(critic, x_hat).item() != pytest.approx(loss, rel=1e-6)
