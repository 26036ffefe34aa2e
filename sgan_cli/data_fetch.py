"""Getting a data set before using it (``sgan data NAME``): download a torchvision data set
into the data root when it is missing and the network is there, and say what is on disk.

Offline, the error is :func:`sgan_cli.data.load_data`'s: it names the files expected and the
folder they go in. The bundled ``digits`` needs nothing; ``stacked-mnist`` is made from MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .data import (
    _TORCHVISION,
    DATASET_NAMES,
    _has_files,
    _load_digits,
    default_root,
    locate_root,
    open_torchvision,
)
from .errors import SganError

SPLITS = ("train", "test")


@dataclass
class DataReport:
    """What ``sgan data`` found (or fetched) for one data set."""

    name: str
    folder: Path | None  # where its files are; None for the bundled digits
    root: Path | None  # the data root (--data-root) the folder is in
    files: list[tuple[str, int]] = field(default_factory=list)  # (name, bytes; files inside for a folder/)
    images: dict[str, int] = field(default_factory=dict)  # split → number of images
    downloaded: bool = False  # fetched by this call (it was not on disk before)
    note: str = ""  # how the data set is made, where that needs saying


def fetch_data(name: str, root: str | Path | None = None, download: bool = True) -> DataReport:
    """Make the data set ``name`` available under ``root`` (default: $SGAN_DATA or
    ~/.cache/sgan/data) and report its files and image counts per split."""
    if name == "digits":
        return DataReport(
            name,
            None,
            None,
            images={split: len(_load_digits(split)) for split in SPLITS},
            note="bundled with scikit-learn: nothing to download",
        )
    source = "mnist" if name == "stacked-mnist" else name
    if source not in _TORCHVISION:
        known = ", ".join(n for n in DATASET_NAMES if n != "digits")
        raise SganError(
            f"sgan data fetches the named data sets ({known}); {name!r} is not one of them",
            where=name,
            fix="give one of those names; a folder of images or a samples.safetensors file is read as it is",
        )
    base = Path(root).expanduser() if root else default_root()
    _, sub, expected = _TORCHVISION[source]
    located = locate_root(source, base)  # a folder holding the files in the wrong layout: an error naming it
    present = _has_files(located / sub, expected)
    images = {}
    folder = located / sub
    for split in SPLITS:
        ds, folder = open_torchvision(source, located, split, download)
        images[split] = len(ds)  # type: ignore[arg-type]
    note = "three MNIST digits per image, drawn from the MNIST files below" if name == "stacked-mnist" else ""
    return DataReport(name, folder, located, _listing(folder), images, downloaded=not present, note=note)


def _listing(folder: Path) -> list[tuple[str, int]]:
    """The entries of ``folder``, sorted: files with their size in bytes, sub-folders (named
    with a trailing '/') with the number of entries in them."""
    rows = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            rows.append((entry.name + "/", sum(1 for _ in entry.iterdir())))
        elif entry.is_file():
            rows.append((entry.name, entry.stat().st_size))
    return rows
