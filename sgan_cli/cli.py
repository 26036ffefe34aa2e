"""The ``sgan`` Typer app. Importing it must stay cheap: no torch here (``sgan --help``)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from . import __version__
from .commands import classifier, encode, learn_dict, plot, sample, score, train
from .commands._common import SganCommand, SganGroup

app = typer.Typer(
    name="sgan",
    cls=SganGroup,
    help="Sparse GANs from the command line: learn a dictionary, train, sample, encode, score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sgan {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Sparse GANs: generators that emit sparse codes over a dictionary learned from the data."""


app.command("learn-dict", cls=SganCommand)(learn_dict.learn_dict)
app.command("train", cls=train.TrainCommand)(train.train)
app.command("sample", cls=SganCommand)(sample.sample)
app.command("encode", cls=SganCommand)(encode.encode)
app.command("score", cls=SganCommand)(score.score)
app.command("classifier", cls=SganCommand)(classifier.classifier)
app.command("plot", cls=SganCommand)(plot.plot)


def main() -> None:
    # Before torch loads OpenMP. Several ranks on one host share its cores, and spinning
    # OpenMP threads then stall each other (a shared 2-core CPU at load ≈ 10: 130–210 images/s
    # against 2,540 with passive waiting), so torchrun's ranks wait passively. One process
    # keeps OpenMP's default: on a quiet 2-core CPU passive waiting trained the demo 1.75×
    # slower (README, Multiple processes). An OMP_WAIT_POLICY the user set wins.
    if _ranks_on_this_host() > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()


def _ranks_on_this_host() -> int:
    """torchrun's LOCAL_WORLD_SIZE (else WORLD_SIZE); 1 outside torchrun or when unreadable
    (sgan_cli.distributed reports malformed values)."""
    for name in ("LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1
