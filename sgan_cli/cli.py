"""The ``sgan`` Typer app. Importing it must stay cheap: no torch here (``sgan --help``)."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated

import typer

from .commands import classifier, data, encode, learn_dict, plot, sample, score, train
from .commands._common import SganCommand, SganGroup
from .version import __version__

app = typer.Typer(
    name="sgan",
    cls=SganGroup,
    help="Sparse GANs from the command line: get data, learn a dictionary, train, sample, encode, score.",
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


app.command("data", cls=SganCommand)(data.data)
app.command("learn-dict", cls=SganCommand)(learn_dict.learn_dict)
app.command("train", cls=train.TrainCommand)(train.train)
app.command("sample", cls=SganCommand)(sample.sample)
app.command("encode", cls=SganCommand)(encode.encode)
app.command("score", cls=SganCommand)(score.score)
app.command("classifier", cls=SganCommand)(classifier.classifier)
app.command("plot", cls=SganCommand)(plot.plot)


# GNU OpenMP spins this many times after a parallel region before its threads sleep (libgomp's
# own default is 300,000; OMP_WAIT_POLICY=PASSIVE is 0). Chosen by benchmarks/bench_wait_policy.py
# (docs/benchmarks.md): near the spinning default on a quiet machine, near PASSIVE beside a busy one.
SPIN_COUNT = 2_000


def openmp_environment(env: dict[str, str], others_running: int = 0) -> dict[str, str]:
    """The OpenMP variables sgan sets for this process (before torch loads libgomp).

    ``others_running``: how many other processes were running on this machine's CPUs when sgan
    started (:func:`others_running`). A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins, and
    SGAN_OPENMP=keep leaves OpenMP's defaults alone. Several torchrun ranks on one host, or one
    process beside other running ones, wait passively (a spinning thread would hold a core that
    another thread of the same parallel region, or the other process, needs); one process on
    an otherwise idle machine gets a bounded spin (``SPIN_COUNT``), which saves the wake-up.
    The thread count is left alone: it changes floating-point sums, so a resumed run would not
    be bit-exact."""
    if env.get("SGAN_OPENMP") == "keep" or "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        return {}
    if _ranks_on_this_host(env) > 1 or others_running > 0:
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {"GOMP_SPINCOUNT": str(SPIN_COUNT)}


def others_running(samples: int = 5, gap_s: float = 0.001, stat: str = "/proc/loadavg") -> int:
    """Other processes running (or ready to run) on the CPUs now: the fewest over ``samples``
    reads of the kernel's count ``gap_s`` apart, less this process (a busy job is counted in
    every read, a short-lived one in few). 0 where the count cannot be read (not Linux)."""
    counts = []
    for i in range(samples):
        try:
            with open(stat, encoding="ascii") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(running - 1)
        if i + 1 < samples:
            time.sleep(gap_s)
    return max(0, min(counts))


def main() -> None:
    # before torch loads OpenMP: spinning threads beside other busy processes made every small op
    # stall (3–28× slower commands, docs/benchmarks.md)
    os.environ.update(openmp_environment(dict(os.environ), others_running()))
    # a path that is not UTF-8 (its bytes held as surrogates) is printed as its bytes, as ls
    # would, instead of failing at the end of the work (stdout's default handler is strict
    # under a UTF-8 locale; stderr's already writes \xNN)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
    app()


def _ranks_on_this_host(env: dict[str, str]) -> int:
    """torchrun's LOCAL_WORLD_SIZE (else WORLD_SIZE); 1 outside torchrun or when unreadable
    (sgan_cli.distributed reports malformed values)."""
    for name in ("LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        value = env.get(name, "")
        if value.isdigit():
            return int(value)
    return 1
