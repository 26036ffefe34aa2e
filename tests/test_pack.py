"""Packing (PacGAN, Lin et al. 2018): the critic scores m samples concatenated along channels;
its gradient penalty is the one of the packed critic on its packed input; and the tiny
stacked-MNIST nets of PacGAN's Table 3."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sgan_cli.builders import Geometry, build_critic, build_encoder, build_generator, check_pack
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


def test_tiny_nets_are_built_and_drawn_as_pacgans_code():
    """PacGAN's D=0.25G/model.py: conv → BatchNorm → LeakyReLU 0.3 for every layer (the first
    too); every weight N(0, 0.02²) (convolutions truncated at 2σ), every bias 0; the linear
    heads of critic and encoder drawn alike. Seeds' draws are checked by their statistics."""
    torch.manual_seed(0)
    D = build_critic(ModelConfig(arch="pacgan-tiny", d_width=4), "gan", Geometry(3, 28))
    kinds = [type(m).__name__ for m in D.features.net]
    assert kinds == ["Conv2d", "BatchNorm2d", "LeakyReLU"] * 3 + ["Flatten"]
    assert all(m.negative_slope == 0.3 for m in D.modules() if isinstance(m, nn.LeakyReLU))
    G = build_generator(ModelConfig(arch="pacgan-tiny", z_dim=256, g_width=64), Geometry(3, 28), None)
    E = build_encoder(ModelConfig(arch="pacgan-tiny", e_width=8, z_dim=256), Geometry(3, 28), "latent")
    truncated_std = 0.02 * 0.8796  # the std of N(0, 1) truncated at ±2
    for net in (D, G, E):
        layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
        assert all(m.bias is None or not m.bias.any() for m in layers)
        conv = torch.cat([m.weight.detach().flatten() for m in layers if isinstance(m, nn.Conv2d)])
        assert conv.abs().max() <= 0.04 and abs(conv.std().item() - truncated_std) < 0.002
        rest = torch.cat([m.weight.detach().flatten() for m in layers if not isinstance(m, nn.Conv2d)])
        assert abs(rest.std().item() - 0.02) < 0.002 and rest.abs().max() > 0.04  # not truncated
    # the other architectures keep PyTorch's defaults
    dcgan = build_critic(ModelConfig(arch="dcgan"), "gan", Geometry(1, 28))
    assert dcgan.head.bias.abs().sum() > 0


def _copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy layer by layer, in order, between nets of the same layer sequence (biases a
    BatchNorm cancels may be missing on one side)."""
    kinds = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm1d, nn.BatchNorm2d)
    a = [m for m in src.modules() if isinstance(m, kinds)]
    b = [m for m in dst.modules() if isinstance(m, kinds)]
    assert [type(m) for m in a] == [type(m) for m in b]
    with torch.no_grad():
        for m, n in zip(a, b):
            n.weight.copy_(m.weight)
            if n.bias is not None:
                n.bias.copy_(m.bias)


@pytest.mark.parametrize("width, pack", [(2, 1), (2, 2), (4, 1)])
def test_tiny_nets_compute_what_pacgans_code_computes(width, pack):
    """sgan's pacgan-tiny generator and critic against benchmarks/reference_pacgan.py, a plain
    transcription of PacGAN's TensorFlow code: the same weights give the same images and scores
    (training mode, so BatchNorm uses the batch's statistics as PacGAN's does)."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    import reference_pacgan as ref

    torch.manual_seed(0)
    G_ref, D_ref = ref.generator(), ref.critic(width, pack)
    for m in G_ref.modules():  # sgan's transposed convolutions have no bias: the BatchNorm after them cancels it
        if isinstance(m, nn.ConvTranspose2d):
            nn.init.zeros_(m.bias)
    model = ModelConfig(arch="pacgan-tiny", z_dim=256, g_width=64, d_width=width, pack=pack)
    G, D = build_generator(model, Geometry(3, 28), None), build_critic(model, "gan", Geometry(3, 28))
    _copy_weights(G_ref, G)
    _copy_weights(D_ref, D)
    z = torch.randn(16, 256)
    x = G(z)
    torch.testing.assert_close(x, G_ref(z), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(D(x), D_ref(ref.packed(x, pack)).view(-1), rtol=1e-4, atol=1e-5)


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
