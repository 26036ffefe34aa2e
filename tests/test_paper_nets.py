"""The papers' own nets (``--arch goyal``, ``--arch ganz-blau``): layer tables, parameter counts,
multiply-adds, sparse heads, seeded dropout, and every MNIST recipe training end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sgan_cli.builders import Geometry, build_critic, build_encoder, build_generator
from sgan_cli.config import load_config
from sgan_cli.paper_nets import GanzBlauBody, GanzBlauFeatures, GoyalBody, GoyalFeatures, SeededDropout

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
MNIST = Geometry(1, 28)


def _model(*settings: str):
    return load_config(None, ["model.z_dim=100", *settings]).model


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _layer_table(net: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer type, output shape without the batch, parameters + running statistics) of every
    leaf layer with weights, as Keras' ``model.summary()`` lists them (channels last)."""
    rows: list[tuple[str, tuple[int, ...], int]] = []

    def hook(m: nn.Module, _inp: object, out: torch.Tensor) -> None:
        stats = sum(b.numel() for n, b in m.named_buffers() if n.startswith("running_"))
        shape = tuple(out.shape[1:])
        if out.dim() == 4:
            shape = (shape[1], shape[2], shape[0])  # NCHW → HWC as the report prints it
        rows.append((type(m).__name__, shape, _params(m) + stats))

    leaves = [m for m in net.modules() if not list(m.children()) and (list(m.parameters()) or list(m.buffers()))]
    handles = [m.register_forward_hook(hook) for m in leaves if not isinstance(m, SeededDropout)]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return rows


def test_goyal_generator_is_the_reports_table():
    """Goyal's EE5239 report, Appendix I (a): every layer's output shape and parameter count,
    total 2,330,944 with BatchNorm's moving statistics, 2,305,472 trainable."""
    G = build_generator(_model("model.arch=goyal"), MNIST, None)
    assert isinstance(G.body, GoyalBody) and not G.sparse
    table = _layer_table(G.eval(), torch.randn(2, 100))
    assert table == [
        ("Linear", (12544,), 1_254_400),
        ("BatchNorm1d", (12544,), 50_176),
        ("ConvTranspose2d", (7, 7, 128), 819_200),
        ("BatchNorm2d", (7, 7, 128), 512),
        ("ConvTranspose2d", (14, 14, 64), 204_800),
        ("BatchNorm2d", (14, 14, 64), 256),
        ("ConvTranspose2d", (28, 28, 1), 1_600),
    ]
    assert _params(G) == 2_305_472 and sum(n for *_, n in table) == 2_330_944
    with torch.no_grad():
        x = G(torch.randn(5, 100))
    assert x.shape == (5, 1, 28, 28) and float(x.abs().max()) <= 1.0  # tanh on pixels
    lrelu = [m for m in G.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(lrelu) == 3 and all(m.negative_slope == 0.3 for m in lrelu)  # Keras' default slope


def test_goyal_critic_is_the_reports_table_at_ten_million_multiply_adds():
    D = build_critic(_model("model.arch=goyal"), "wgan-gp", MNIST)
    assert isinstance(D.features, GoyalFeatures)
    assert _layer_table(D.eval(), torch.randn(2, 1, 28, 28)) == [
        ("Conv2d", (14, 14, 64), 1_664),
        ("Conv2d", (7, 7, 128), 204_928),
        ("Linear", (1,), 6_273),
    ]
    assert _params(D) == 212_865
    assert [m.p for m in D.modules() if isinstance(m, SeededDropout)] == [0.3, 0.3]
    # multiply-adds per image: every output element of a conv costs C_in·k² of them
    macs = 14 * 14 * 64 * 1 * 25 + 7 * 7 * 128 * 64 * 25 + 6272
    assert 10.0e6 < macs < 10.5e6
    # the critic of the 'gan' objective keeps the report's layers (no BatchNorm under norm auto)
    assert not any(
        isinstance(m, nn.BatchNorm2d) for m in build_critic(_model("model.arch=goyal"), "gan", MNIST).modules()
    )


def test_ganz_blau_nets_have_the_papers_layers():
    """Ganz & Blau: four fully connected layers with BatchNorm (the soft threshold follows), a
    discriminator of three convolutions and one fully connected layer."""
    model = _model("model.arch=ganz-blau")
    G = build_generator(model, MNIST, None)
    assert isinstance(G.body, GanzBlauBody)
    linears = [m for m in G.body.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(100, 256), (256, 512), (512, 1024), (1024, 784)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in G.body.modules()) == 3
    assert G(torch.randn(4, 100)).shape == (4, 1, 28, 28)
    D = build_critic(model, "gan", MNIST)
    assert isinstance(D.features, GanzBlauFeatures)
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in convs] == [
        (1, 64, (5, 5), (2, 2)), (64, 128, (5, 5), (2, 2)), (128, 256, (5, 5), (2, 2)),
    ]  # fmt: skip
    assert [m for m in D.modules() if isinstance(m, nn.Linear)] == [D.head] and D.head.in_features == 4096
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    assert D(torch.randn(3, 1, 28, 28)).shape == (3,)


@pytest.mark.parametrize("arch", ["goyal", "ganz-blau"])
@pytest.mark.parametrize("channels,size", [(1, 8), (3, 32), (1, 7)])
def test_paper_nets_fit_other_image_sizes(arch, channels, size):
    model = _model(f"model.arch={arch}", "model.g_width=16", "model.d_width=8", "model.e_width=8")
    geo = Geometry(channels, size)
    G, D = build_generator(model, geo, None), build_critic(model, "wgan-gp", geo)
    x = G(torch.randn(3, 100))
    assert x.shape == (3, channels, size, size)
    assert D(x).shape == (3,)
    E = build_encoder(model, geo, "vae")
    assert E(x).shape == (3, 100)


class _Dict:
    """The dictionary fields build_generator reads (a DictionaryFile's duck type)."""

    def __init__(self, atoms, patch, size, stride=1):
        self.atoms, self.patch, self.stride, self.channels, self.image_size = atoms, patch, stride, 1, size
        self.mean, self.achieved_sparsity = None, 0.1

    @property
    def n_atoms(self):
        return self.atoms.shape[0]


def test_ganz_blau_sparse_generator_outputs_codes_times_atoms():
    torch.manual_seed(0)
    atoms = F.normalize(torch.randn(40, 784), dim=1)
    G = build_generator(_model("model.arch=ganz-blau", "model.sparsity=fixed"), MNIST, _Dict(atoms, None, 28))
    assert isinstance(G.body, GanzBlauBody) and G.body.net[-1].out_features == 40
    x, codes = G.eval().forward_codes(torch.randn(6, 100))
    assert codes.shape == (6, 40) and (codes == 0).any()  # soft-thresholded codes
    torch.testing.assert_close(x.reshape(6, -1), codes @ atoms)


def test_goyal_sparse_generator_emits_code_maps_over_patch_atoms():
    torch.manual_seed(1)
    K, P = 12, 3
    atoms = F.normalize(torch.randn(K, P * P), dim=1)
    G = build_generator(
        _model("model.arch=goyal", "model.g_width=32", "model.sparsity=fixed"), MNIST, _Dict(atoms, P, 28)
    )
    assert isinstance(G.body, GoyalBody)
    x, codes = G.eval().forward_codes(torch.randn(3, 100))
    assert codes.shape == (3, K, 28, 28)  # one code vector per pixel position, the report's body ending in K maps
    # each position's code times the atoms is a P×P patch; overlapping patches are averaged
    summed = F.conv_transpose2d(codes, atoms.view(K, 1, P, P), padding=1)
    count = F.conv_transpose2d(torch.ones(1, 1, 28, 28), torch.ones(1, 1, P, P), padding=1)
    torch.testing.assert_close(x, summed / count)


def test_a_patch_dictionary_needs_a_convolutional_body():
    from sgan_cli.errors import SganError

    atoms = F.normalize(torch.randn(10, 9), dim=1)
    with pytest.raises(SganError, match="convolutional generator"):
        build_generator(_model("model.arch=ganz-blau"), MNIST, _Dict(atoms, 3, 28))


def test_seeded_dropout_drops_p_keeps_the_mean_and_repeats_its_stream():
    d = SeededDropout(0.3, seed=7)
    x = torch.ones(1000, 1000)
    y = d(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.3, abs=0.002)  # 1e6 draws: sd 4.6e-4
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)  # inverted dropout: E[y] = x
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert not torch.equal(d(x), y)  # the next draw differs
    # the stream state travels in the state dict: a fresh module loaded from it draws the same next mask
    state = d.state_dict()
    e = SeededDropout(0.3, seed=123)
    e.load_state_dict(state)
    assert torch.equal(e(x), d(x))
    assert torch.equal(d.eval()(x), x)  # eval: identity, and no draw
    assert e.draws == 3 and d.draws == 3


def test_seeded_dropout_streams_come_from_the_training_seed():
    torch.manual_seed(5)
    a = GoyalFeatures(1, 28)
    torch.manual_seed(5)
    b = GoyalFeatures(1, 28)
    seeds = [m.seed for m in a.modules() if isinstance(m, SeededDropout)]
    assert seeds == [m.seed for m in b.modules() if isinstance(m, SeededDropout)] and len(set(seeds)) == 2


def test_encoders_borrow_the_critics_layers_without_its_dropout():
    E = build_encoder(_model("model.arch=goyal", "model.e_width=8"), MNIST, "latent").train()
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(E(x), E(x))  # deterministic in train mode
    assert all(m.p == 0 for m in E.modules() if isinstance(m, SeededDropout))


@pytest.fixture(scope="module")
def dict28(tmp_path_factory):
    """A small whole-image dictionary of digits resized to 28×28 (24 atoms)."""
    from sgan_cli.config import DataConfig, DictConfig
    from sgan_cli.contracts import save_dictionary
    from sgan_cli.data import load_data
    from sgan_cli.dictionary_job import learn_from_config

    path = tmp_path_factory.mktemp("dict28") / "dictionary.safetensors"
    data = load_data(DataConfig(name="digits", image_size=28, limit=300))
    save_dictionary(path, learn_from_config(data, DictConfig(atoms=24, passes=1)), {})
    return path


@pytest.mark.parametrize(
    "recipe,arch,g_params",
    [
        ("dcgan-mnist", "goyal", 2_305_472),
        ("wgan-mnist", "goyal", 2_305_472),
        ("wgan-gp-mnist", "goyal", 2_305_472),
        ("sparse-mnist", "ganz-blau", None),
        ("sparse-fashion", "ganz-blau", None),
    ],
)
def test_mnist_recipes_train_the_papers_nets_end_to_end(tmp_path, dict28, recipe, arch, g_params):
    """Each MNIST recipe, unchanged but for the data (digits resized to 28×28), the length and
    the batch, trains a few steps with the paper's nets; the generator file records the
    architecture, and `sgan sample`'s loader rebuilds the same nets from it."""
    from sgan_cli.run_files import load_generator
    from sgan_cli.training import run_training

    sparse = recipe.startswith("sparse")
    cfg = load_config(
        RECIPES / f"{recipe}.yaml",
        [
            "data.name=digits", "data.image_size=28", "data.limit=120",
            "train.steps=2", "train.batch_size=8", "train.log_every=1", "gan.critic_steps=2",
            *([f"train.dict={dict28}"] if sparse else []),
        ],
    )  # fmt: skip
    assert cfg.model.arch == arch
    res = run_training(cfg, tmp_path / "run")
    assert res.steps == 2 and res.sparse == sparse and res.arch == arch
    assert all(math.isfinite(v) for v in res.last_log.values())
    g = load_generator(tmp_path / "run")
    assert g.config["model"]["arch"] == arch
    body = g.module.body
    assert isinstance(body, GoyalBody if arch == "goyal" else GanzBlauBody)
    if g_params is not None:
        assert _params(g.module) == g_params
    else:  # the codes over the 24 atoms of the dictionary
        assert body.net[-1].out_features == 24
    with torch.no_grad():
        assert g.module(torch.randn(3, g.z_dim)).shape == (3, 1, 28, 28)


def test_goyal_generator_keeps_its_stride_one_deconvolution_nchw_and_its_numbers():
    """Moved to channels-last (as training does on CPU), the first transposed convolution keeps
    NCHW weights (the faster layout there), the others go channels-last; same outputs."""
    torch.manual_seed(3)
    body = GoyalBody(100, 1, 28, width=32)
    z = torch.randn(4, 100)
    with torch.no_grad():
        ref = body(z)
        body.to(memory_format=torch.channels_last)
        out = body(z)
    assert body.net[0].weight.is_contiguous()
    assert body.net[3].weight.is_contiguous(memory_format=torch.channels_last)
    assert not body.net[3].weight.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_dense_goyal_run_resumes_bit_for_bit(tmp_path):
    """Goyal's generator body and dropout critic, WGAN-GP: split 3 + 3 steps equals 6 straight."""
    from sgan_cli.contracts import read_file
    from sgan_cli.training import run_training

    opts = [
        "model.arch=goyal", "model.g_width=16", "model.d_width=8", "model.z_dim=8", "gan.objective=wgan-gp",
        "gan.critic_steps=2", "train.batch_size=8", "train.log_every=3", "train.save_every=3", "train.grid_every=6",
    ]  # fmt: skip
    run_training(load_config(None, [*opts, "train.steps=6"]), tmp_path / "straight")
    run_training(load_config(None, [*opts, "train.steps=3"]), tmp_path / "split")
    run_training(load_config(None, [*opts, "train.steps=6"]), tmp_path / "split", resume=True)
    a, b = (
        read_file(tmp_path / d / "checkpoint.safetensors", "sgan.checkpoint").tensors for d in ("straight", "split")
    )
    assert a.keys() == b.keys() and any(k.endswith(".stream") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
