"""Shared CLI plumbing: consoles, the command classes, error reporting (text or JSON),
config resolution, JSON output, options spelled once. Progress is :mod:`sgan_cli.commands._progress`."""

from __future__ import annotations

import functools
import json
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from ..errors import SganError, printable

try:  # typer ≥ 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # older typer runs on click itself
    from click.exceptions import ClickException, UsageError  # type: ignore[no-redef]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _Console(Console):
    """A Rich console whose text never fails to encode: a path that is not UTF-8 (its bytes
    held as surrogates) shows its bytes as \\xNN (:func:`sgan_cli.errors.printable`)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(printable(o) if isinstance(o, str) else o for o in objects), **kwargs)


out = _Console()  # results (stdout)
err = _Console(stderr=True)  # progress and messages (stderr)

# words a user may type after a flag, meaning it as the flag's value (`--json true`)
BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0", "y", "n", "t", "f"})


# --- errors -------------------------------------------------------------------------------------


def error_payload(
    message: str,
    *,
    what: str | None = None,
    where: str | None = None,
    fix: str | None = None,
    exit_code: int = EXIT_USER_ERROR,
) -> dict[str, Any]:
    """The JSON form of an error (``--json``): one object on stdout, the same exit code."""
    return {
        "error": message,
        "what": what if what is not None else message,
        "where": where,
        "fix": fix,
        "exit_code": exit_code,
    }


def report_error(exc: SganError, json_mode: bool) -> None:
    """The one way a user error is shown: a paragraph on stderr and, with ``--json``, also
    one JSON object on stdout (message, what, where, fix, exit code)."""
    err.print(f"[bold red]Error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
    if json_mode:
        print_json(error_payload(exc.message, what=exc.what, where=exc.where, fix=exc.fix))


def report_usage_error(exc: ClickException) -> None:
    """A command-line parse error (unknown option, missing argument, …) as one JSON object."""
    ctx = getattr(exc, "ctx", None)
    cmd = ctx.command_path if ctx is not None else "sgan"
    message = exc.format_message()
    what, _, fix = message.partition(" Fix: ")
    print_json(error_payload(message, what=what, where=cmd, fix=fix or f"see {cmd} --help", exit_code=exc.exit_code))


def handle_errors(fn: F) -> F:
    """Check every int/float option (finite, in its range: :mod:`sgan_cli.validation`), then
    run; turn an SganError into one message (see :func:`report_error`) and exit code 2;
    Ctrl-C into exit 130. A command's ``json_out`` parameter turns on JSON errors."""

    names: dict[str, str] = {}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..validation import check_options, option_names

        json_mode = bool(kwargs.get("json_out"))
        try:
            if not names:
                names.update(option_names(fn))
            check_options(fn.__name__, kwargs, names)  # every number the user gave, before any work
            return fn(*args, **kwargs)
        except SganError as exc:
            exc.where = cli_where(exc.where, names)  # the library names arguments and keys; say the option
            if rank0():  # under torchrun every rank meets the same error: rank 0 says it once
                report_error(exc, json_mode)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            if rank0():
                err.print("[yellow]Interrupted.[/]")
                if json_mode:
                    print_json(error_payload("interrupted (Ctrl-C)", exit_code=EXIT_INTERRUPTED))
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def rank0() -> bool:
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
            fix=(
                f"run `sgan {command} …` without torchrun (add --device cuda "
                "for a GPU); train, sample and score run under torchrun"
            ),
        )


# --- the command classes ------------------------------------------------------------------------


# the value placeholder an option shows in --help when its declaration names none, by type
_TYPE_METAVARS = {int: "N", float: "FLOAT", Path: "PATH", str: "NAME"}


def tidy_params(params: Sequence[Any]) -> None:
    """One metavar style in every help page: a flag shows no value (not ``<bool>``), a value
    its placeholder (``N``, ``FLOAT``, ``PATH``, ``NAME``, or the one its declaration names,
    such as ``FILE``), an argument its name alone (not ``<str>`` or ``<list[Path]>``)."""
    for param in params:
        param.show_default = False
        if param.param_type_name == "argument":
            param.display_type_rich = lambda ctx: None  # the name column already shows its metavar
        elif getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None:
            annotation = param.type_descriptor.annotation
            args = typing.get_args(annotation)
            element = args[0] if typing.get_origin(annotation) is list and args else annotation
            param.metavar = _TYPE_METAVARS.get(element, "VALUE")


class SganGroup(TyperGroup):
    """The ``sgan`` group. With ``--json`` anywhere on the command line, a parse error (unknown
    option, missing argument, a flag given a value) is one JSON object on stdout as well,
    with the same exit code (errors raised while a command runs go through handle_errors).
    Its own options (``--version``, ``--help``) read as flags."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tidy_params(self.params)

    def get_help_option(self, ctx: typer.Context) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv or not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(argv, prog_name, complete_var, False, **extra)
        except ClickException as exc:
            from typer import rich_utils

            rich_utils.rich_format_error(exc)
            report_usage_error(exc)
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


class SganCommand(TyperCommand):
    """Every subcommand's click command: flags are shown as flags (no ``<bool>`` value), values
    with one placeholder style (:func:`tidy_params`), one default style (``(default: …)`` in
    the help text), and a flag followed by a value such as ``--json true`` is an error
    instead of a silently misread argument."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tidy_params(self.params)

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        """The usage line in the usual convention: ``[OPTIONS] NAME`` for a required argument,
        ``[NAME]`` for an optional one, ``NAME...`` for several (not typer's ``{name}``)."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                pieces.extend(param.get_usage_pieces(ctx))
                continue
            name = param.metavar or (param.name or "").upper()
            if param.nargs != 1 and not name.endswith("..."):
                name += "..."
            pieces.append(name if param.required else f"[{name}]")
        return pieces

    def get_help_option(self, ctx: typer.Context) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    def flag_opts(self) -> set[str]:
        return {
            o
            for p in self.params
            if p.param_type_name == "option" and getattr(p, "is_flag", False)
            for o in (*p.opts, *p.secondary_opts)
        }

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        flags = self.flag_opts()
        for i, arg in enumerate(args[:-1]):
            if arg == "--":
                break
            if arg in flags and args[i + 1].lower() in BOOL_WORDS:
                raise UsageError(
                    f"{arg} is a flag and takes no value, so {args[i + 1]!r} "
                    "after it would be read as another argument."
                    f" Fix: write {arg} alone to turn it on, or leave it out",
                    ctx=ctx,
                )
        return super().parse_args(ctx, args)


def print_fields(title: str, rows: list[tuple[str, str]]) -> None:
    """A two-column field/value table on stdout: every command's human-readable summary."""
    from rich.table import Table

    table = Table(title=printable(title), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for field, value in rows:
        table.add_row(field, printable(value))  # a path that is not UTF-8 shows its bytes as \xNN
    out.print(table)


def print_json(payload: dict[str, Any]) -> None:
    """One JSON object on stdout, nothing else."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


# config keys whose command-line option is not --KEY (the default spelling in flag_name)
_FLAG_NAMES = {
    "gan.objective": "--gan",
    "train.dict": "--dict",
    "data.name": "the DATA argument / --data",
    "data.root": "--data-root",
    "recon.mode": "--recon",
}


def flag_name(key: str) -> str:
    """The option that sets config ``key``: 'gan.objective' → '--gan', 'train.batch_size' → '--batch-size'."""
    return _FLAG_NAMES.get(key, "--" + key.split(".", 1)[1].replace("_", "-"))


def cli_where(where: str | None, names: dict[str, str]) -> str | None:
    """A library error's ``where`` in the command's terms: an argument that is one of the
    command's options (``nonzeros``) becomes the option (``--nonzeros``); a configuration key
    that one of its options sets (``dict.patch``) gains it (``dict.patch / --patch``)."""
    if where is None:
        return None
    if where in names:
        return names[where]
    if "." in where and " " not in where and flag_name(where) in names.values():
        return f"{where} / {flag_name(where)}"
    return where


def resolve_config(recipe: str | None, sets: list[str] | None, flags: dict[str, Any]) -> Any:
    """Defaults → recipe → --set → explicit flags (only those the user gave, i.e. not None)."""
    from ..config import load_config, set_value

    cfg = load_config(recipe, sets)
    for key, value in flags.items():
        if value is not None:
            set_value(cfg, key, value, flag_name(key))
    return cfg


# options shared by several subcommands, spelled once

SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed. (default: 0)", show_default=False)]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto, cpu or cuda. (default: auto)", show_default=False)
]
DataRootOpt = Annotated[
    str | None,
    typer.Option(
        "--data-root",
        metavar="DIR",
        help=(
            "Folder of torchvision data sets (the one holding MNIST/, "
            "cifar-10-batches-py/, …). (default: $SGAN_DATA or ~/.cache/sgan/data)"
        ),
        show_default=False,
    ),
]
SplitOpt = Annotated[str | None, typer.Option("--split", help="train or test. (default: train)", show_default=False)]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", metavar="N", help="Use only the first N images.", show_default=False)
]
ImageSizeOpt = Annotated[
    int | None, typer.Option("--image-size", metavar="N", help="Resize images to N×N.", show_default=False)
]
RecipeOpt = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        metavar="FILE",
        help="YAML recipe: sections data, dict, model, gan, train (see recipes/).",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout instead of a table (errors too).")
]


# --set with an example of a key the command reads (learn-dict reads data and dict, train the rest)
_SET_HELP = "Override a config key, e.g. --set {} (repeatable)."
DictSetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help=_SET_HELP.format("dict.atoms=100 or --set dict.solver=online"),
        show_default=False,
    ),
]
TrainSetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help=_SET_HELP.format("gan.lr_g=2e-4 or --set model.threshold=1"),
        show_default=False,
    ),
]


def coders_text(summary: dict) -> str:
    """The ``engine``/``engine_note`` of a summary (sgan_cli.native.engine) in words."""
    return "compiled CPU kernels" if summary["engine"] == "compiled" else f"torch ({summary['engine_note']})"
