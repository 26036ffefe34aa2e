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
    with pytest.raises(SganError, match="there is no folder or file samples/") as err:
        load_data(DataConfig(name="samples/"))
    assert "sgan sample RUN --out samples/" in err.value.fix
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


def test_a_folder_is_checked_at_its_decoded_size_and_decoded_one_image_at_a_time(tmp_path, monkeypatch):
    """Twelve RGB photos of 4096² at --image-size 8 passed a 100 MB budget (only the kept 8×8
    images were counted) and peaked at 1.3 GB, every image held decoded at full size before
    resizing. Here twelve of 1024² (3 MB decoded each, 36 MB together)."""
    import tracemalloc

    for i in range(12):
        Image.new("RGB", (1024, 1024), (20 * i, 5, 9)).save(tmp_path / f"{i:02d}.png")
    cfg = DataConfig(name=str(tmp_path), image_size=8)
    monkeypatch.setenv("SGAN_MAX_MEMORY", "5000000")  # the kept 12×3×8×8 bytes fit, one decoded image does not
    with pytest.raises(SganError, match=r"12 images of 8×8 \(decoded one at a time, the largest 1024×1024 at full"):
        load_data(cfg)
    monkeypatch.setenv("SGAN_MAX_MEMORY", "40000000")  # one decoded image fits, not twelve
    tracemalloc.start()
    try:
        data = load_data(cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data.images.shape == (12, 3, 8, 8) and data.images[3, :, 0, 0].tolist() == [60, 5, 9]
    assert peak < 3 * 3 * 1024 * 1024  # at most a couple of decoded arrays alive at once, not twelve


def test_hidden_files_and_temp_files_in_a_folder_are_not_data(tmp_path):
    """What a killed writer leaves (``.000001.png.<host>-<pid>-x.tmp``) and ``._x.png``
    companions are never read as images."""
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8), mode="L").save(tmp_path / f"{i}.png")
    (tmp_path / "._0.png").write_bytes(b"\0\5\x16\7 AppleDouble")
    Image.new("L", (9, 9)).save(tmp_path / ".hidden.png")
    (tmp_path / ".3.png.0a1b2c3d-999999-x.tmp").write_bytes(b"\x89PNG torn")
    assert load_data(DataConfig(name=str(tmp_path))).images.shape == (3, 1, 6, 6)
