"""Helpers shared by the CLI tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from sgan_cli.cli import app


def invoke(runner, args):
    """Run ``sgan ARGS`` in-process; exceptions propagate (a traceback is a test failure)."""
    return runner.invoke(app, args, catch_exceptions=False)


def error_text(res) -> str:
    """The one-line message of a user error: exit code 2, no traceback, whitespace joined."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    return " ".join(res.stderr.split())
