"""The command reference docs/cli.md is generated from the Typer app and must stay in step
with it; the generator renders what ``--help`` shows, as Markdown."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import invoke

from sgan_cli.docgen import REGENERATE, _text, cli_markdown

CLI_MD = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
COMMANDS = ["data", "learn-dict", "train", "sample", "encode", "score", "classifier", "plot"]


def _sections(markdown: str) -> dict[str, str]:
    """``## sgan NAME`` section bodies by command name."""
    parts = re.split(r"^## sgan (\S+)\n", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_docs_cli_md_is_up_to_date():
    assert CLI_MD.is_file(), f"docs/cli.md is missing: run `{REGENERATE}` in the repository root"
    assert CLI_MD.read_text(encoding="utf-8") == cli_markdown(), (
        f"docs/cli.md is out of date with the CLI: run `{REGENERATE}` in the repository root to update it"
    )


def test_every_option_that_help_shows_is_in_its_section(runner):
    """Independent of the generator's own traversal: every option spelled in ``sgan NAME --help``
    (Typer's Rich rendering) appears in that command's section, with the usage line."""
    sections = _sections(cli_markdown())
    assert sorted(sections) == sorted(COMMANDS)
    for name in COMMANDS:
        res = invoke(runner, [name, "--help"])
        assert res.exit_code == 0, res.output
        shown = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", res.output))
        assert shown, res.output
        body = sections[name]
        missing = sorted(opt for opt in shown if opt not in body)
        assert not missing, f"sgan {name}: {missing} shown by --help but not in its docs/cli.md section"
        usage = re.search(r"Usage: (?:python -m sgan_cli|\S+) (.*\S)", res.output).group(1)
        assert f"Usage: sgan {usage}\n" in body


def test_help_text_is_escaped_outside_code_spans_only():
    assert _text("a <int> *b* c_d _e_ `f_g *h*`") == r"a \<int> \*b\* c_d \_e\_ `f_g *h*`"
    assert _text("back\\slash") == "back\\\\slash"
