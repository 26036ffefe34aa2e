"""The FID Inception port: published state_dict layout, TF1 resize, safe loading, clear errors.

No download: the weights file is made here with torchvision's Inception-v3 of the FID
layout (1008 classes, no aux head), an independent definition of the same keys.
"""

from __future__ import annotations

import json

import pytest
import torch

from sgan_cli.cli import app
from sgan_cli.errors import SganError
from sgan_cli.inception import WEIGHTS_NAME, WEIGHTS_URL, FIDInception, load_inception, tf1_resize_matrix


def _torchvision_state() -> dict[str, torch.Tensor]:
    """A random state dict in the published layout, scaled so activations stay O(1) over 94 convs."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    state = net.state_dict()
    for key, t in state.items():
        if key.endswith("conv.weight"):
            fan_in = t[0].numel()
            state[key] = torch.randn_like(t) * (2.0 / fan_in) ** 0.5
        elif key.endswith("bn.running_mean"):
            state[key] = torch.randn_like(t) * 0.1
        elif key.endswith("bn.running_var"):
            state[key] = torch.rand_like(t) + 0.5
        elif key.endswith("bn.bias"):
            state[key] = torch.randn_like(t) * 0.1
    return state


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "custom-inception.pth"
    torch.save(_torchvision_state(), path)
    return path


def test_state_dict_layout_is_the_published_one():
    import torchvision

    ours = FIDInception().state_dict()
    theirs = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    ).state_dict()
    assert len(ours) == 566  # the published file's entry count
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def _tf1_resize_reference(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 resize_bilinear (align_corners=False) by explicit gathers: src = i·in/out, clamp hi."""

    def axis(n_in):
        src = torch.arange(size, dtype=torch.float64) * n_in / size
        lo = src.floor().long()
        return lo, (lo + 1).clamp_max(n_in - 1), (src - lo).float()

    ylo, yhi, fy = axis(x.shape[2])
    xlo, xhi, fx = axis(x.shape[3])
    top = x[:, :, ylo][:, :, :, xlo] * (1 - fx) + x[:, :, ylo][:, :, :, xhi] * fx
    bot = x[:, :, yhi][:, :, :, xlo] * (1 - fx) + x[:, :, yhi][:, :, :, xhi] * fx
    return top * (1 - fy[:, None]) + bot * fy[:, None]


@pytest.mark.parametrize("n_in", [8, 28, 32, 299, 400])
def test_tf1_resize_matrix_matches_gather_formula(n_in):
    x = torch.rand(2, 3, n_in, n_in, dtype=torch.float64) * 255
    w = tf1_resize_matrix(n_in, 299, torch.float64)
    assert torch.allclose(w @ x @ w.T, _tf1_resize_reference(x, 299).double(), atol=1e-4)
    assert torch.allclose(w.sum(dim=1), torch.ones(299, dtype=torch.float64))


def test_tf1_resize_matches_torch_fidelity():
    tf = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")
    x = torch.randint(0, 256, (2, 3, 28, 28)).float()
    w = tf1_resize_matrix(28, 299)
    ref = tf.interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert torch.allclose(w @ x @ w.T, ref, atol=1e-3)


def test_unverified_weights_are_refused_unless_custom(weights_file):
    with pytest.raises(SganError, match="not the published") as exc:
        load_inception(weights_file)
    assert "--custom-weights" in exc.value.message and WEIGHTS_URL in exc.value.message
    net, digest, standard = load_inception(weights_file, custom=True)
    assert not standard and digest.startswith("sha256:")


def test_inception_matches_torch_fidelity_on_the_same_weights(weights_file):
    fe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    ref = fe.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights_file)
    )
    net, _, _ = load_inception(weights_file, custom=True)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        f_ref, l_ref = ref(x)
        f, lg = net(x)
    assert f.abs().mean() > 1e-2  # activations survive the 94 layers: a meaningful comparison
    assert torch.allclose(f, f_ref, rtol=1e-3, atol=1e-4 * float(f_ref.abs().max()))
    assert torch.allclose(lg, l_ref, rtol=1e-3, atol=1e-4 * float(l_ref.abs().max()))


def test_grayscale_is_repeated_to_three_channels(weights_file):
    net, _, _ = load_inception(weights_file, custom=True)
    gray = torch.randint(0, 256, (2, 1, 20, 20), dtype=torch.uint8)
    with torch.inference_mode():
        a = net(gray)[0]
        b = net(gray.repeat(1, 3, 1, 1))[0]
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_wrong_kind_files_give_clear_errors(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(SganError, match="not a PyTorch weights file"):
        load_inception(text, custom=True)
    wrong = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3, 3, 3)}, wrong)
    with pytest.raises(SganError, match="not an FID Inception state dict"):
        load_inception(wrong, custom=True)
    pickled = tmp_path / "object.pth"
    torch.save(
        {"Conv2d_1a_3x3.conv.weight": torch.nn.Linear(2, 2)}, pickled
    )  # a module, not a tensor: refused by weights_only
    with pytest.raises(SganError):
        load_inception(pickled, custom=True)


def _save_pngs(folder, images):
    from PIL import Image

    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img[0].numpy(), mode="L").save(folder / f"{i:03d}.png")


def test_cli_inception_scores_and_batch_size_independence(runner, tmp_path, weights_file):
    from sgan_cli.metrics import feature_stats, frechet_distance

    g = torch.Generator().manual_seed(0)
    samples = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8, generator=g)
    real = torch.randint(0, 128, (4, 1, 16, 16), dtype=torch.uint8, generator=g)
    _save_pngs(tmp_path / "samples", samples)
    _save_pngs(tmp_path / "real", real)
    args = [
        "score",
        str(tmp_path / "samples"),
        "-m",
        "inception",
        "-m",
        "fid",
        "--ref",
        str(tmp_path / "real"),
        "--weights",
        str(weights_file),
        "--custom-weights",
        "--is-splits",
        "2",
        "--json",
    ]
    one = runner.invoke(app, [*args, "--batch-size", "1"], catch_exceptions=False)
    assert one.exit_code == 0, one.output
    many = runner.invoke(app, [*args, "--batch-size", "4"], catch_exceptions=False)
    a, b = json.loads(one.stdout), json.loads(many.stdout)
    assert a["extractor"]["kind"] == "inception" and a["extractor"]["standard"] is False
    assert "NON-STANDARD" in a["extractor"]["label"] and a["ceiling"] is None
    for key in ("fid", "inception", "inception_std"):
        assert a["metrics"][key] == pytest.approx(b["metrics"][key], rel=1e-5)
    net, _, _ = load_inception(weights_file, custom=True)
    with torch.inference_mode():
        fid = frechet_distance(feature_stats(net(samples)[0]), feature_stats(net(real)[0]))
    assert a["metrics"]["fid"] == pytest.approx(fid, rel=1e-4)


def test_cli_refuses_unverified_weights(runner, tmp_path, weights_file):
    _save_pngs(tmp_path / "s", torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    res = runner.invoke(app, ["score", str(tmp_path / "s"), "-m", "inception", "--weights", str(weights_file)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--custom-weights" in " ".join(res.stderr.split())


def test_missing_weights_offline_say_which_file_and_where(runner, tmp_path, monkeypatch, offline_root):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    _save_pngs(tmp_path / "s", torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    res = runner.invoke(app, ["score", str(tmp_path / "s"), "-m", "inception"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    message = " ".join(res.stderr.split())
    assert WEIGHTS_NAME in message and WEIGHTS_URL in message
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints" / WEIGHTS_NAME) in message
    res = runner.invoke(app, ["score", str(tmp_path / "s"), "-m", "inception", "--weights", str(tmp_path / "nope.pth")])
    assert res.exit_code == 2 and "does not exist" in res.stderr
