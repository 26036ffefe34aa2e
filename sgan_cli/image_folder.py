"""A folder of image files as a data set: headers read first, memory checked, then each image
decoded (every PIL mode to its meaning) and resized one at a time.

:func:`load_image_folder` is what :func:`sgan_cli.data.load_data` reads a folder with. The size
of each image comes from its header before any pixel is decoded (decompression bombs:
:data:`MAX_IMAGE_PIXELS`); hidden files and special files are never read as images.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SganError
from .outputs import remove_stale_temps
from .validation import check_memory

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
MAX_IMAGE_PIXELS = 8192 * 8192  # per image, read from the header before decoding (PIL warns from 89 M)
_GRAY_MODES = ("L", "1", "LA", "I;16", "I;16B", "I;16L", "I;16N", "I", "F")


@dataclass
class ImageHeader:
    """What an image file's header says, before any pixel is decoded (PIL opens lazily)."""

    path: Path
    width: int
    height: int
    mode: str

    @property
    def decoded_bytes(self) -> int:
        """An upper bound on the memory that decoding it takes: PIL's own copy (4 bytes a pixel
        for most modes, 8 for 32-bit ones) plus the uint8 array made of it; 16-bit and float
        modes pass through a float64 array too."""
        pixels = self.width * self.height
        if self.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            return pixels * (8 + 8 + 1)
        return pixels * (4 + 4 + (1 if self.mode in _GRAY_MODES else 3))


def _open_checked(path: Path) -> Any:
    """``Image.open`` (lazy: the header only) with the size checked before anything is decoded
    (decompression bombs). The caller closes it."""
    from PIL import Image

    im = Image.open(path)
    w, h = im.size
    if w < 1 or h < 1 or w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise SganError(
            f"the image {path} declares {w}×{h} pixels, outside what sgan reads (1 to {MAX_IMAGE_PIXELS:,} pixels)",
            where=str(path),
            fix="remove or replace the file (it may be corrupt or a decompression bomb)",
        )
    return im


@contextmanager
def _image_errors(path: Path) -> Iterator[None]:
    """PIL's errors about one file as one SganError naming it; PIL's own pixel limit lifted
    meanwhile (:func:`_open_checked` names the file and the limit instead)."""
    from PIL import Image, UnidentifiedImageError

    pil_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    except SganError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SganError(
            f"cannot read the image {path} ({exc})", where=str(path), fix="remove or replace the broken file"
        ) from None
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit


def read_header(path: Path) -> ImageHeader:
    """An image file's size and mode, its pixels left undecoded. Raises SganError naming the file."""
    with _image_errors(path), _open_checked(path) as im:
        return ImageHeader(path, im.size[0], im.size[1], im.mode)


def decode_image(path: Path) -> np.ndarray:  # noqa: F821
    """One image file → uint8 [H, W] (gray) or [H, W, 3] (colour), every PIL mode decoded
    to its meaning: 16-bit gray (I;16, I) scaled by 255/65535, not clipped; gray + alpha
    (LA) and palette images by their visible values; 1-bit as 0/255; RGBA without alpha.
    The header's size is checked before any pixel is decoded (decompression bombs).
    Raises SganError naming the file."""
    import numpy as np

    with _image_errors(path), _open_checked(path) as im:
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            a = np.asarray(im).astype(np.float64)
            return np.rint(np.clip(a, 0, 65535) * (255.0 / 65535.0)).astype(np.uint8)
        if mode == "F":  # 32-bit float gray (TIFF): read as 0..255 values
            return np.rint(np.clip(np.asarray(im, dtype=np.float64), 0, 255)).astype(np.uint8)
        if mode in ("L", "1", "LA"):
            return np.asarray(im if mode == "L" else im.convert("L"), dtype=np.uint8)
        return np.asarray(im if mode == "RGB" else im.convert("RGB"), dtype=np.uint8)


def _is_gray(a: np.ndarray) -> bool:  # noqa: F821
    return a.ndim == 2 or bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def _image_files(folder: Path) -> list[Path]:
    """The image files of a folder, sorted by name. Hidden names (``.*``: temp files of a
    writer, AppleDouble ``._x.png`` companions) and special files (pipes, devices) are never
    data."""
    try:
        return sorted(
            p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        )
    except OSError as exc:
        raise SganError(
            f"cannot read the folder {folder} ({exc.strerror})",
            where=str(folder),
            fix="check the path and its permissions",
        ) from None


def load_image_folder(folder: Path, size: int | None) -> torch.Tensor:  # noqa: F821
    """Every image file in the folder (sorted by name) → uint8 [N, C, H, W], N ≥ 1, H = W =
    ``size`` (None: the images' own size, which must be square and shared): one channel when
    every image is gray-valued (gray, 16-bit gray, gray + alpha, or colour/palette images whose
    three channels are equal), else RGB. Raises SganError naming the folder or the file.

    Memory: the headers are read first, and what loading needs — the images kept (at their
    final size) plus the largest one decoded at full size — is checked before any pixel is
    decoded; then the images are decoded one at a time and resized at once, so twelve
    4096×4096 photos loaded at --image-size 8 never sit in memory together."""
    import numpy as np
    import torch
    from PIL import Image

    remove_stale_temps(folder)  # what a killed writer left (hidden: never read as images anyway)
    files = _image_files(folder)
    if not files:
        raise SganError(
            f"the folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})",
            where=str(folder),
            fix="give a folder of image files, e.g. the one `sgan sample` wrote",
        )
    headers = [read_header(f) for f in files]
    sizes = {(h.width, h.height) for h in headers}
    if size is None and len(sizes) > 1:
        raise SganError(
            f"the images in {folder} have different sizes ({', '.join(f'{w}×{h}' for w, h in sorted(sizes)[:4])}…)",
            where=str(folder),
            fix="pass --image-size N to resize them all to N×N",
        )
    w0, h0 = headers[0].width, headers[0].height
    if size is None and w0 != h0:  # every net, dictionary and metric here works on square images
        raise SganError(
            f"the images in {folder} are {w0}×{h0}, not square",
            where=str(folder),
            fix="pass --image-size N to resize them to N×N",
        )
    target = (size, size) if size is not None else (w0, h0)

    largest = max(headers, key=lambda h: h.decoded_bytes)
    kept = len(files) * 3 * target[0] * target[1]  # colour until every image proves gray
    check_memory(
        2 * kept + largest.decoded_bytes + 4 * largest.width * largest.height,  # + the copy np.stack makes; a resize
        f"{len(files)} images of {target[0]}×{target[1]} (decoded one at a time, the largest "
        f"{largest.width}×{largest.height} at full size)",
        str(folder),
        "pass a smaller --image-size, use fewer or smaller images",
    )
    out, gray_flags = [], []
    for f in files:
        a = decode_image(f)  # full size, only this one in memory
        gray_flags.append(_is_gray(a))
        if (a.shape[1], a.shape[0]) != target:
            a = np.asarray(Image.fromarray(a).resize(target, Image.BILINEAR), dtype=np.uint8)
        out.append(a)
    gray = all(gray_flags)
    if gray:
        out = [a if a.ndim == 2 else np.ascontiguousarray(a[..., 0]) for a in out]
        images = torch.from_numpy(np.stack(out)[:, None])
    else:
        out = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in out]
        images = torch.from_numpy(np.stack(out).transpose(0, 3, 1, 2).copy())
    return images
