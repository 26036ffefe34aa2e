"""``sgan plot RUN [RUN …]``: the training curves of several runs, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import JsonOpt, handle_errors, print_fields, print_json


@handle_errors
def plot(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN...",
            help="Run folders written by sgan train (or their metrics.jsonl files).",
            show_default=False,
        ),
    ],
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", metavar="FILE", help="Output PNG. (default: curves-compare.png)", show_default=False
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Draw the training curves of one or more runs side by side.

    One column per run, one row per quantity (losses, gradient penalty, support fraction and
    its target, λ, the third player's losses, images/s), rows sharing their y axis. Needs
    matplotlib (pip install 'sgan\\[plots]').

    Examples:
      sgan plot runs/quickstart
      sgan plot runs/dense runs/sparse --out compare.png
    """
    from ..contracts import check_writable
    from ..curves import plot_runs

    path = out_path if out_path is not None else Path("curves-compare.png")
    check_writable(path, force)
    entries = plot_runs(runs, path)
    summary = {"out": str(path), "runs": [str(r) for r in runs], "entries": entries}
    if json_out:
        print_json(summary)
        return
    print_fields(
        f"Curves {path}",
        [
            ("runs", ", ".join(summary["runs"])),
            ("entries", ", ".join(map(str, summary["entries"]))),
            ("file", str(path)),
        ],
    )
