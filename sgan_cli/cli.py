"""The ``sgan`` Typer app. Importing it must stay cheap: no torch here (``sgan --help``)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import __version__
from .commands import classifier, encode, learn_dict, sample, score, train

app = typer.Typer(
    name="sgan",
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
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Sparse GANs: generators that emit sparse codes over a dictionary learned from the data."""


app.command("learn-dict")(learn_dict.learn_dict)
app.command("train", cls=train.TrainCommand)(train.train)
app.command("sample")(sample.sample)
app.command("encode")(encode.encode)
app.command("score")(score.score)
app.command("classifier")(classifier.classifier)


def main() -> None:
    app()
