"""Packing (PacGAN, Lin et al. 2018): the critic scores m samples concatenated along channels;
its gradient penalty is the one of the packed critic on its packed input; and the tiny
stacked-MNIST nets of PacGAN's Table 3."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from sgan_cli.builders import Geometry, build_critic, build_generator, check_pack
from sgan_cli.config import ModelConfig, load_config
from sgan_cli.critics import Critic, DCGANFeatures, MLPFeatures, PackedFeatures, TinyFeatures, pack_samples
from sgan_cli.errors import SganError
from sgan_cli.input_grad import traceable
from sgan_cli.losses import gradient_penalty
from sgan_cli.training import run_training


def test_pack_samples_concatenates_consecutive_samples_along_channels():
    x = torch.randn(6, 3, 5, 5)
    packed = pack_samples(x, 3)
    assert packed.shape == (2, 9, 5, 5)
    for i in range(2):
        assert torch.equal(packed[i], torch.cat([x[3 * i], x[3 * i + 1], x[3 * i + 2]], dim=0))
    assert pack_samples(x, 1) is x
    with pytest.raises(ValueError, match="packs of 4"):
        pack_samples(x, 4)


@pytest.mark.parametrize("arch", ["mlp", "dcgan", "resnet", "pacgan-tiny"])
def test_packed_critic_reads_m_times_the_channels_and_scores_each_pack(arch):
    model = ModelConfig(arch=arch, d_width=4, pack=2)
    D = build_critic(model, "wgan-gp", Geometry(3, 28))
    seen: list[tuple[int, ...]] = []
    first = next(m for m in D.features.inner.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    first.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    x = torch.randn(8, 3, 28, 28)
    assert D(x).shape == (4,) and D.features(x).shape == (4, D.features.out_dim)
    assert seen[0][:2] == ((4, 6) if arch != "mlp" else (4, 6 * 28 * 28))
    # a pack's score depends on its own samples only, and on the order inside it
    y = x.clone()
    y[0] = torch.randn(3, 28, 28)
    a, b = D(x), D(y)
    assert a[0] != b[0] and torch.equal(a[1:], b[1:])
    assert not torch.equal(D(x[[1, 0, 2, 3, 4, 5, 6, 7]])[0], a[0])


def _packed_reference_gp(critic: Critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """WGAN-GP of a critic that reads packed inputs, as public code writes it: pack real and
    fake by concatenating along channels, interpolate the packs, double backward."""
    m = critic.pack
    rp = torch.stack([torch.cat(list(real[i : i + m]), 0) for i in range(0, len(real), m)])
    fp = torch.stack([torch.cat(list(fake[i : i + m]), 0) for i in range(0, len(fake), m)])
    x_hat = (eps.view(-1, 1, 1, 1) * rp + (1 - eps.view(-1, 1, 1, 1)) * fp).requires_grad_(True)
    inner = critic.features.inner
    (g,) = torch.autograd.grad(critic.score(inner(x_hat)).sum(), x_hat, create_graph=True)
    return (g.flatten(1).norm(dim=1) - 1).pow(2).mean()


@pytest.mark.parametrize(
    "make",
    [
        lambda c, s: Critic(DCGANFeatures(2 * c, s, 4), pack=2),
        lambda c, s: Critic(TinyFeatures(2 * c, s, 2), pack=2),
        lambda c, s: Critic(MLPFeatures(2 * c * s * s, 16), pack=2),
        # minibatch discrimination over packs: not traced, autograd's double backward
        lambda c, s: Critic(MLPFeatures(2 * c * s * s, 16), minibatch_kernels=3, mbd_dim=2, pack=2),
    ],
    ids=["dcgan", "pacgan-tiny", "mlp", "mlp-mbd"],
)
def test_packed_gradient_penalty_equals_autograd_on_the_packed_input(make):
    torch.manual_seed(0)
    critic = make(3, 8).double()
    real, fake = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.randn(6, 3, 8, 8, dtype=torch.float64)
    eps = torch.rand(3, dtype=torch.float64)  # one ε per pack
    grads = []
    for fn in (
        lambda: _packed_reference_gp(critic, real, fake, eps),
        lambda: gradient_penalty(critic, real, fake, eps=eps),
    ):
        critic.zero_grad(set_to_none=True)
        loss = fn()
        loss.backward()
        grads.append(
            (
                float(loss.detach()),
                [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in critic.parameters()],
            )
        )
    (ref_loss, ref), (loss, ours) = grads
    # gradient_penalty takes the norms in float32 (as for bf16 nets): equal to float32 rounding
    assert loss == pytest.approx(ref_loss, rel=1e-6) and ref_loss > 0
    assert any(float(g.abs().max()) > 0 for g in ref)
    for a, b in zip(ref, ours):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    assert traceable(critic, real) == (critic.mbd is None)


def test_check_pack_names_the_batch_the_pack_and_the_ranks():
    check_pack(64, 4, 2)
    with pytest.raises(SganError) as exc:
        check_pack(20, 4, 2)
    assert "packs of 4 × 2 ranks" in exc.value.message and "multiple of 8, e.g. 16" in exc.value.message
    with pytest.raises(SganError, match="packs of 3 "):
        check_pack(16, 3, 1)


def test_training_refuses_a_batch_that_is_not_whole_packs(tmp_path):
    cfg = load_config(None, ["model.pack=3", "train.batch_size=16", "train.steps=1", "model.arch=mlp"])
    with pytest.raises(SganError, match="does not split into packs of 3"):
        run_training(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_tiny_nets_have_pacgan_table_3_shapes():
    """G: linear → 4×4×64 → 3×3 transposed convs 32, 16, 8 (4 → 7 → 14 → 28) → 3 channels;
    D ¼: 3×3 convs 2-4-8 (28 → 14 → 7 → 4) → linear; D ½: 4-8-16."""
    G = build_generator(ModelConfig(arch="pacgan-tiny", z_dim=256, g_width=64), Geometry(3, 28), None)
    sizes: list[tuple[int, ...]] = []
    for m in G.modules():
        if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
            m.register_forward_hook(lambda m, a, out: sizes.append(tuple(out.shape[1:])))
    assert G(torch.randn(2, 256)).shape == (2, 3, 28, 28)
    assert sizes == [(32, 7, 7), (16, 14, 14), (8, 28, 28), (3, 28, 28)]
    assert all(m.kernel_size == (3, 3) for m in G.modules() if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)))
    for width, channels in ((2, [2, 4, 8]), (4, [4, 8, 16])):
        D = build_critic(ModelConfig(arch="pacgan-tiny", d_width=width), "gan", Geometry(3, 28))
        convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
        assert [c.out_channels for c in convs] == channels and D.head.in_features == channels[-1] * 16
        packed = build_critic(ModelConfig(arch="pacgan-tiny", d_width=width, pack=2), "gan", Geometry(3, 28))
        assert isinstance(packed.features, PackedFeatures)
        assert next(m for m in packed.modules() if isinstance(m, nn.Conv2d)).in_channels == 6


@pytest.mark.parametrize(
    "options",
    [
        ("gan.objective=gan", "model.arch=pacgan-tiny", "model.d_width=2", "model.g_width=16", "model.pack=2"),
        ("gan.objective=wgan-gp", "model.arch=dcgan", "model.pack=4", "model.minibatch_disc=4", "gan.critic_steps=1"),
        ("gan.objective=hinge", "model.arch=mlp", "model.pack=2", "gan.feature_matching=1.0", "recon.mode=latent"),
    ],
    ids=["tiny-gan", "dcgan-gp-mbd", "mlp-fm-recon"],
)
def test_packed_runs_train(tmp_path, options):
    cfg = load_config(
        None,
        ["model.z_dim=8", "model.d_width=8", "model.e_width=8", "train.batch_size=16", "train.steps=3",
         "train.log_every=1", *options],
    )  # fmt: skip
    res = run_training(cfg, tmp_path / "run")
    assert res.steps == 3 and all(math.isfinite(v) for v in res.last_log.values())
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines] == [1, 2, 3]
