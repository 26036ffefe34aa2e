"""Shared CLI plumbing: consoles, error reporting, progress, config resolution, JSON output."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console

from ..errors import SganError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USER_ERROR = 2

out = Console()  # results (stdout)
err = Console(stderr=True)  # progress and messages (stderr)


def handle_errors(fn: F) -> F:
    """Check every int/float option (finite, in its range: :mod:`sgan_cli.validation`), then
    run; turn an SganError into one message on stderr and exit code 2; Ctrl-C into exit 130."""

    names: dict[str, str] = {}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..validation import check_options, option_names

        try:
            if not names:
                names.update(option_names(fn))
            check_options(fn.__name__, kwargs, names)  # every number the user gave, before any work
            return fn(*args, **kwargs)
        except SganError as exc:
            if not _rank0():  # under torchrun every rank meets the same error: rank 0 says it once
                raise typer.Exit(EXIT_USER_ERROR) from None
            from rich.markup import escape  # a message may quote text with [brackets] (paths, backend errors)

            err.print(f"[bold red]Error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            if _rank0():
                err.print("[yellow]Interrupted.[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _rank0() -> bool:
    """Rank 0 under torchrun, or the only process (read from the environment: no torch import)."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")


def refuse_torchrun(command: str) -> None:
    """Commands that run in one process (``learn-dict``, ``encode``, ``classifier``) refuse to
    start as several torchrun ranks: N copies would each do all the work and race to write
    the same file. One process still uses one GPU (``--device cuda``)."""
    import os

    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        raise SganError(
            f"sgan {command} runs in one process, and this is one of {os.environ['WORLD_SIZE']} torchrun ranks",
            where="torchrun",
            fix=f"run `sgan {command} …` without torchrun (add --device cuda for a GPU); train, sample and score run under torchrun",
        )


def print_fields(title: str, rows: list[tuple[str, str]]) -> None:
    """A two-column field/value table on stdout: every command's human-readable summary."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for field, value in rows:
        table.add_row(field, value)
    out.print(table)


def print_json(payload: dict[str, Any]) -> None:
    """One JSON object on stdout, nothing else."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int, int, dict[str, float]], None]]:
    """A Rich progress bar on stderr; yields a ``(done, total, info)`` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if not enabled:
        yield lambda done, total, info: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=None, info="")

        def update(done: int, total: int, info: dict[str, float]) -> None:
            shown = {k: v for k, v in info.items() if not (isinstance(v, float) and math.isnan(v))}
            text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
            progress.update(task, completed=done, total=total, info=text)

        yield update


# config keys whose command-line option is not --KEY (the default spelling in flag_name)
_FLAG_NAMES = {"gan.objective": "--gan", "train.dict": "--dict", "data.name": "the DATA argument / --data", "data.root": "--data-root", "recon.mode": "--recon"}


def flag_name(key: str) -> str:
    """The option that sets config ``key``: 'gan.objective' → '--gan', 'train.batch_size' → '--batch-size'."""
    return _FLAG_NAMES.get(key, "--" + key.split(".", 1)[1].replace("_", "-"))


def resolve_config(recipe: str | None, sets: list[str] | None, flags: dict[str, Any]) -> Any:
    """Defaults → recipe → --set → explicit flags (only those the user gave, i.e. not None)."""
    from ..config import load_config, set_value

    cfg = load_config(recipe, sets)
    for key, value in flags.items():
        if value is not None:
            set_value(cfg, key, value, flag_name(key))
    return cfg


# options shared by several subcommands, spelled once

SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed. (default: 0)", show_default=False)]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu or cuda. (default: auto)", show_default=False)]
DataRootOpt = Annotated[Optional[str], typer.Option("--data-root", help="Folder of torchvision data sets. Default: $SGAN_DATA or ~/.cache/sgan/data.", show_default=False)]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", help="Use only the first N images.", show_default=False)]
RecipeOpt = Annotated[Optional[str], typer.Option("--recipe", help="YAML recipe: sections data, dict, model, gan, train (see recipes/).", show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a config key, e.g. --set dict.atoms=100 or --set gan.lr_g=2e-4 (repeatable).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a table.")]
