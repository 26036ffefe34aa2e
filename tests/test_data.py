"""Data sets: digits offline, folders, sample files, and clear errors when data is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sgan_cli.config import DataConfig
from sgan_cli.contracts import write_file
from sgan_cli.data import load_data
from sgan_cli.errors import SganError


def test_digits_split_range_and_labels():
    train = load_data(DataConfig(name="digits", split="train"))
    test = load_data(DataConfig(name="digits", split="test"))
    assert train.images.shape == (1438, 1, 8, 8) and test.images.shape == (359, 1, 8, 8)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    x = train.floats()
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert set(train.labels.tolist()) == set(range(10))
    assert load_data(DataConfig(name="digits", limit=10)).images.shape[0] == 10


def test_folder_of_images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (10, 10), dtype=np.uint8), mode="L").save(tmp_path / f"{i}.png")
    data = load_data(DataConfig(name=str(tmp_path)))
    assert data.images.shape == (3, 1, 10, 10)
    small = load_data(DataConfig(name=str(tmp_path), image_size=4))
    assert small.images.shape == (3, 1, 4, 4)


def test_folder_mixed_sizes_needs_image_size(tmp_path):
    Image.new("RGB", (8, 8), (200, 30, 10)).save(tmp_path / "a.png")
    Image.new("RGB", (9, 9), (200, 30, 10)).save(tmp_path / "b.png")
    with pytest.raises(SganError, match="different sizes.*--image-size"):
        load_data(DataConfig(name=str(tmp_path)))
    assert load_data(DataConfig(name=str(tmp_path), image_size=8)).images.shape == (2, 3, 8, 8)


def test_folder_of_non_square_images_needs_image_size(tmp_path):
    """Nets, dictionaries and metrics all take square images: a 10×8 folder is refused with the
    fix, not passed on to fail as a shape error in a matmul."""
    for i in range(3):
        Image.new("L", (10, 8)).save(tmp_path / f"{i}.png")
    with pytest.raises(SganError, match="10×8, not square.*--image-size"):
        load_data(DataConfig(name=str(tmp_path)))
    assert load_data(DataConfig(name=str(tmp_path), image_size=8)).images.shape == (3, 1, 8, 8)


def test_empty_folder(tmp_path):
    with pytest.raises(SganError, match="holds no images"):
        load_data(DataConfig(name=str(tmp_path)))


def test_samples_file_is_a_dataset(tmp_path):
    imgs = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    path = tmp_path / "samples.safetensors"
    write_file(path, "sgan.samples", {"images": imgs})
    data = load_data(DataConfig(name=str(path)))
    assert torch.equal(data.images, imgs)


def test_unknown_dataset():
    with pytest.raises(SganError, match="unknown data set 'imagenet'"):
        load_data(DataConfig(name="imagenet"))


def test_offline_mnist_names_files_and_folder(offline_root):
    with pytest.raises(SganError) as exc:
        load_data(DataConfig(name="mnist", root=str(offline_root)))
    msg = exc.value.message
    assert "mnist" in msg and str(offline_root / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "--data-root" in msg


def test_mnist_layout_is_read(tmp_path):
    # a tiny MNIST in torchvision's raw layout, written here (idx format)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def idx(path, arr, code):
        header = np.array([0, 0, code, arr.ndim], dtype=np.uint8).tobytes()
        dims = np.array(arr.shape, dtype=">i4").tobytes()
        path.write_bytes(header + dims + arr.astype(np.uint8).tobytes())

    for split, n in (("train", 6), ("t10k", 4)):
        idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 8)
        idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, (n,)), 8)
    data = load_data(DataConfig(name="mnist", root=str(tmp_path), split="test", download=False))
    assert data.images.shape == (4, 1, 28, 28) and data.labels.shape == (4,)
