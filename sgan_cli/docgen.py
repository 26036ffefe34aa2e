"""The command reference ``docs/cli.md``, rendered from the Typer app's own click objects.

Every command's usage line, description and options come from the same objects ``--help``
prints, as plain Markdown (no Rich boxes, no terminal width), so the page cannot drift from
the CLI: ``tests/test_docs.py`` regenerates it in memory and compares. To update the page::

    python -m sgan_cli.docgen > docs/cli.md
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from typing import Any

import typer.main

from .cli import app

PROG = "sgan"
REGENERATE = "python -m sgan_cli.docgen > docs/cli.md"

# value placeholders of options without a metavar, by click type name or Python annotation
_TYPE_NAMES = {"integer": "INT", "int": "INT", "float": "FLOAT", "text": "TEXT", "str": "TEXT", "path": "PATH"}


def cli_markdown() -> str:
    """``docs/cli.md``: the ``sgan`` group, then one section per command, in the app's order."""
    group = typer.main.get_command(app)
    root = group.context_class(group, info_name=PROG)
    commands = [(name, cmd) for name, cmd in group.commands.items() if not getattr(cmd, "hidden", False)]
    lines = [
        "# Command reference",
        "",
        f"<!-- Generated from the Typer app by `{REGENERATE}`; do not edit by hand. -->",
        "",
        f"`{PROG} COMMAND --help` prints the same text in the terminal.",
        "",
        "```text",
        f"Usage: {PROG} {' '.join(group.collect_usage_pieces(root))}",
        "```",
        "",
        *_description(group.help or ""),
        "| command | what it does |",
        "|---|---|",
        *(f"| [`{PROG} {name}`](#{_anchor(name)}) | {_cell(_summary(cmd.help or ''))} |" for name, cmd in commands),
        "",
        *_options(group.get_params(root)),
    ]
    for name, cmd in commands:
        ctx = cmd.context_class(cmd, info_name=name, parent=root)
        lines += [
            f"## {PROG} {name}",
            "",
            "```text",
            f"Usage: {PROG} {name} {' '.join(cmd.collect_usage_pieces(ctx))}",
            "```",
            "",
            *_description(cmd.help or ""),
            *_options(cmd.get_params(ctx)),
        ]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def _anchor(name: str) -> str:
    """GitHub's anchor of the heading ``sgan NAME``."""
    return f"{PROG}-{name}".lower().replace(" ", "-")


def _summary(help_text: str) -> str:
    """The first paragraph of a command's help, on one line."""
    first = inspect.cleandoc(help_text).split("\n\n", 1)[0]
    return " ".join(line.strip() for line in first.splitlines())


def _description(help_text: str) -> list[str]:
    """A help text as Markdown: paragraphs joined into lines; indented lines (examples) as a
    code block, with a paragraph's unindented first line ("Examples:") before it."""
    out: list[str] = []
    for block in inspect.cleandoc(help_text).split("\n\n"):
        rows = [row for row in block.splitlines() if row.strip()]
        if not rows:
            continue
        head = 0 if rows[0].startswith((" ", "\t")) else 1
        code = rows[head:]
        if code and all(row.startswith((" ", "\t")) for row in code):
            if head:
                out += [_text(rows[0]), ""]
            out += ["```text", *inspect.cleandoc("\n".join(code)).splitlines(), "```", ""]
        else:
            out += [_text(" ".join(row.strip() for row in rows)), ""]
    return out


def _options(params: list[Any]) -> list[str]:
    """The arguments and options of a command as a Markdown table."""
    rows = []
    for param in params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            name = param.metavar or (param.name or "").upper()
            if param.nargs != 1 and not name.endswith("..."):
                name += "..."
            names, value = f"`{name}`", "argument" if param.required else "argument (optional)"
        else:
            names = " / ".join(f"`{opt}`" for opt in (*param.opts, *param.secondary_opts))
            value = f"`{_placeholder(param)}`".replace("|", "\\|") if _placeholder(param) else ""
        rows.append(f"| {names} | {value} | {_cell(getattr(param, 'help', None) or '')} |")
    if not rows:
        return []
    return ["| argument / option | value | meaning |", "|---|---|---|", *rows, ""]


def _placeholder(param: Any) -> str:
    """What an option takes: its metavar, else its type (INT, FLOAT, TEXT); nothing for a flag."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if param.metavar:
        return param.metavar
    name = getattr(getattr(param, "type", None), "name", None)  # click
    if name is None:  # typer's own click port keeps the annotation instead
        annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
        args = typing.get_args(annotation)  # list[str] (a repeatable option): its element type
        name = getattr(args[0] if args else annotation, "__name__", "value")
    return _TYPE_NAMES.get(str(name).lower(), str(name).upper())


def _text(text: str) -> str:
    """Help text in running Markdown: outside `code spans`, the characters Markdown would read
    as markup (backslash, ``*``, ``<``, and ``_`` at the edge of a word) escaped. A ``\\[``
    (a bracket escaped from Rich markup, as in ``sgan\\[plots]``) is a plain bracket here."""
    parts = text.replace("\\[", "[").split("`")
    for i in range(0, len(parts), 2):  # even pieces lie outside code spans
        piece = parts[i].replace("\\", "\\\\").replace("*", "\\*").replace("<", "\\<")
        parts[i] = re.sub(r"(?<!\w)_|_(?!\w)", r"\\_", piece)
    return "`".join(parts)


def _cell(text: str) -> str:
    """Help text inside a table cell: as running text, and ``|`` escaped."""
    return _text(" ".join(text.split())).replace("|", "\\|")


if __name__ == "__main__":
    sys.stdout.buffer.write(cli_markdown().encode("utf-8"))
