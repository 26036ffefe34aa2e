"""``sgan data NAME``: download a data set into the data root, or say what is already there."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import DataRootOpt, JsonOpt, handle_errors, print_fields, print_json, refuse_torchrun


@handle_errors
def data(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="Data set: mnist, fashion-mnist, cifar10, celeba, stacked-mnist (from mnist) or digits (bundled).",
            show_default=False,
        ),
    ],
    data_root: DataRootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Download a data set into --data-root, or show what is there: files and images per split.

    Offline, it names the files the data set needs and the folder to put them in. Every
    command that reads data downloads what is missing too; this one does it up front.

    Examples:
      sgan data mnist
      sgan data cifar10 --data-root ~/data
    """
    refuse_torchrun("data")
    from ..data_fetch import fetch_data

    report = fetch_data(name, data_root)
    summary = {
        "name": report.name,
        "folder": None if report.folder is None else str(report.folder),
        "data_root": None if report.root is None else str(report.root),
        "files": [{"name": f, "size": size} for f, size in report.files],
        "images": report.images,
        "downloaded": report.downloaded,
        "note": report.note,
    }
    if json_out:
        print_json(summary)
        return
    rows = [("images", ", ".join(f"{n:,} {split}" for split, n in report.images.items()))]
    if report.folder is not None:
        rows.insert(0, ("folder", f"{report.folder} ({'downloaded now' if report.downloaded else 'already there'})"))
        rows.append(("--data-root", str(report.root)))
        rows += [
            ("files" if i == 0 else "", f"{f}  ({size:,} entries)" if f.endswith("/") else f"{f}  ({_size(size)})")
            for i, (f, size) in enumerate(report.files)
        ]
    if report.note:
        rows.append(("note", report.note))
    print_fields(f"Data set {report.name}", rows)


def _size(n: int) -> str:
    """Bytes in words: 9,912,422 → '9.9 MB'."""
    if n < 1000:
        return f"{n:,} bytes"
    value = n / 1000
    for unit in ("KB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
