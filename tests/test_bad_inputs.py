"""Files and folders that are not what they seem, images decoded by their meaning, and metric
gates that cannot be fooled by NaN (issue 12, kinds 4–6). CLI end to end where the user meets
them: exit code 2, the message, no traceback, no output left."""

from __future__ import annotations

import math
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from helpers import error_text, invoke
from PIL import Image

from sgan_cli.config import DataConfig
from sgan_cli.data import load_data
from sgan_cli.errors import SganError

# --- kind 4: files and folders -----------------------------------------------------------------


def test_named_pipe_as_dictionary_is_refused_without_blocking(runner, tmp_path):
    fifo = tmp_path / "dictionary.safetensors"
    os.mkfifo(fifo)  # opening it for reading would block forever
    for args in (["encode", "digits", "--dict", str(fifo)], ["train", "--dict", str(fifo), "--steps", "1"]):
        msg = error_text(invoke(runner, [*args, "--out", str(tmp_path / "out")]))
        assert f"the dictionary path {fifo} is not a regular file (a pipe, socket or device)" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dictionary.safetensors"]


def _png_header_only(path, width, height):
    """A tiny PNG whose header declares width×height 8-bit gray pixels (a decompression bomb's
    shape: the pixel data is not there)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )
    return path


def test_png_declaring_huge_size_is_refused_before_decoding(runner, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _png_header_only(folder / "bomb.png", 15000, 15000)
    assert (folder / "bomb.png").stat().st_size < 200
    msg = error_text(invoke(runner, ["learn-dict", str(folder), "--out", str(tmp_path / "d.safetensors")]))
    assert f"the image {folder / 'bomb.png'} declares 15000×15000 pixels" in msg and "decompression bomb" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


@pytest.mark.parametrize(
    ("shape", "message"),
    [((0, 1, 8, 8), "has no usable images (shape (0, 1, 8, 8)"), ((3, 0, 8, 8), "have no pixels or 0 channels")],
)
def test_data_sets_without_images_or_channels_are_refused(runner, tmp_path, shape, message):
    from sgan_cli.contracts import write_file

    path = tmp_path / "empty.safetensors"
    write_file(path, "sgan.samples", {"images": torch.zeros(shape, dtype=torch.uint8)})
    msg = error_text(invoke(runner, ["learn-dict", str(path), "--out", str(tmp_path / "d.safetensors")]))
    assert message in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.safetensors"]


def _idx(path, magic, dims, data):
    path.write_bytes(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data))


def test_mnist_labels_out_of_range_are_refused(runner, tmp_path):
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        _idx(raw / f"{split}-images-idx3-ubyte", 2051, (3, 28, 28), [0] * (3 * 28 * 28))
        _idx(raw / f"{split}-labels-idx1-ubyte", 2049, (3,), [1, 200, 3])  # 200: not a digit
    msg = error_text(
        invoke(
            runner,
            ["learn-dict", "mnist", "--data-root", str(tmp_path / "root"), "--out", str(tmp_path / "d.safetensors")],
        )
    )
    assert "the labels in" in msg and "run from 1 to 200, outside the 10 classes 0..9" in msg
    assert not (tmp_path / "d.safetensors").exists()


def test_recipe_not_utf8_is_refused(runner, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"train:\n  steps: 5 # \xff\xfe\n")
    msg = error_text(invoke(runner, ["train", "--recipe", str(recipe), "--dry-run"]))
    assert f"the recipe {recipe} is not UTF-8 text (byte 20)" in msg


def test_yaml_alias_bomb_is_refused(runner, tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)
    ]
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("\n".join(lines) + "\n")
    msg = error_text(invoke(runner, ["train", "--recipe", str(recipe), "--dry-run"]))
    assert f"the recipe {recipe} uses YAML aliases (*name)" in msg


# --- kind 5: images decoded by their meaning ------------------------------------------------------


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]] * 4, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "a.png")  # mode I;16
    assert Image.open(tmp_path / "a.png").mode.startswith("I")
    data = load_data(DataConfig(name=str(tmp_path)))
    assert data.images.shape == (1, 1, 4, 4)
    assert data.images[0, 0, 0].tolist() == [0, 1, 128, 255]


@pytest.mark.parametrize("mode", ["RGB", "LA", "P", "RGBA"])
def test_gray_valued_images_load_as_one_channel(tmp_path, mode):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    for i in range(2):
        base = Image.fromarray(gray + i)
        base.convert(mode).save(tmp_path / f"{i}.png")
    data = load_data(DataConfig(name=str(tmp_path)))
    assert data.images.shape == (2, 1, 8, 8)
    assert torch.equal(data.images[1, 0], torch.from_numpy(gray + 1))


def test_colour_images_stay_rgb(tmp_path):
    Image.new("RGB", (8, 8), (200, 30, 10)).save(tmp_path / "a.png")
    Image.new("L", (8, 8), 7).save(tmp_path / "b.png")  # one gray image among colour ones: RGB, gray repeated
    data = load_data(DataConfig(name=str(tmp_path)))
    assert data.images.shape == (2, 3, 8, 8)
    assert data.images[0, :, 0, 0].tolist() == [200, 30, 10] and data.images[1, :, 0, 0].tolist() == [7, 7, 7]


def test_classifier_mismatch_fix_names_what_differs():
    from sgan_cli.features import Extractor, check_images

    ext = Extractor("classifier", torch.nn.Identity(), "clf.safetensors", "", True, 4, 10, channels=1, image_size=8)
    with pytest.raises(SganError) as info:
        check_images(ext, torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "samples")
    assert "give 1-channel images (grayscale)" in info.value.message and "--image-size" not in info.value.message
    with pytest.raises(SganError, match="pass --image-size 8 to resize them"):
        check_images(ext, torch.zeros(2, 1, 16, 16, dtype=torch.uint8), "samples")


# --- kind 6: metric gates ---------------------------------------------------------------------


def test_nan_never_meets_a_bound():
    from sgan_cli.score_options import Threshold, check_thresholds

    for above in (True, False):
        assert Threshold("fid", 30.0, above).failed(float("nan"))
    assert (
        check_thresholds(
            {"kid": float("nan"), "inception": float("nan")},
            [Threshold("kid", 0.01, True), Threshold("inception", 5.0, False)],
        )
        != []
    )
    assert check_thresholds({"fid": 0.0}, [Threshold("fid", 0.0, False), Threshold("fid", 0.0, True)]) == []


def test_fid_is_never_below_zero():
    from sgan_cli.metrics import _at_least_zero, feature_stats, frechet_distance

    assert _at_least_zero(-3.1e-11) == 0.0 and math.isnan(_at_least_zero(float("nan")))
    gen = torch.Generator().manual_seed(0)
    for n, d in ((50, 8), (5, 16), (200, 64)):  # full-rank and rank-deficient covariances
        x = torch.randn(n, d, generator=gen) * 1e3
        fid = frechet_distance(feature_stats(x), feature_stats(x))
        assert 0.0 <= fid < 1e-6


def test_non_finite_features_are_an_error(runner, tmp_path):
    """A classifier with a NaN weight: FID used to end in a linalg.eigh traceback, KID and IS in
    'nan ± nan' with every gate met."""
    from sgan_cli.classifier import ClassifierInfo, LeNet, save_classifier

    net = LeNet(1, 8, 10, 8, 16)
    with torch.no_grad():  # finite weights whose features overflow to inf and NaN
        for p in net.parameters():
            p.fill_(3e38)
    clf = tmp_path / "clf.safetensors"
    info = ClassifierInfo(
        dataset="digits",
        channels=1,
        image_size=8,
        n_classes=10,
        width=8,
        feature_dim=16,
        test_accuracy=0.5,
        n_train=10,
        n_test=10,
    )
    save_classifier(clf, net, info, {})
    args = [
        "score",
        "digits",
        "-m",
        "fid",
        "-m",
        "kid",
        "-m",
        "inception",
        "--ref",
        "digits",
        "--features",
        f"classifier:{clf}",
    ]
    msg = error_text(
        invoke(
            runner,
            [
                *args,
                "--fail-above",
                "kid=0.01",
                "--fail-below",
                "inception=5",
                "--save-stats",
                str(tmp_path / "s.safetensors"),
            ],
        )
    )
    assert "the feature extractor gave non-finite values (NaN or inf)" in msg and str(clf) in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf.safetensors"]
    # a NaN weight is damage: refused as the file is read
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("nan")
    save_classifier(clf, net, info, {}, force=True)
    msg = error_text(invoke(runner, args))
    assert f"{clf}: tensor 'body.0.weight' holds NaN or infinite values" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf.safetensors"]


def test_recipe_over_one_megabyte_is_refused(runner, tmp_path):
    recipe = tmp_path / "big.yaml"
    recipe.write_text("# padding\n" * 120_000)
    msg = error_text(invoke(runner, ["train", "--recipe", str(recipe), "--dry-run"]))
    assert f"the recipe {recipe} is larger than 1000000 bytes" in msg


def test_statistics_file_with_nan_is_refused(tmp_path):
    from sgan_cli.contracts import read_file, write_file
    from sgan_cli.reference_stats import STATS

    feats = torch.randn(5, 3, dtype=torch.float64)
    tensors = {
        "features": feats,
        "logits": torch.randn(5, 2),
        "mean": feats.mean(0),
        "cov": torch.full((3, 3), float("nan")),
    }
    path = tmp_path / "stats.safetensors"
    write_file(path, "sgan.stats", tensors, meta={"extractor": "x"})
    with pytest.raises(SganError, match="holds non-finite \\(NaN or inf\\) statistics"):
        read_file(path, STATS)
