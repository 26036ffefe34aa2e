"""The one exception type a user can cause. The CLI turns it into a message and exit code 2."""

from __future__ import annotations


class SganError(Exception):
    """A user-facing error: what went wrong, where, and how to fix it.

    Library code raises it; only the CLI layer prints it (one paragraph on stderr, no
    traceback) and exits non-zero.
    """

    def __init__(self, what: str, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what.rstrip(".") + "."]
        if self.where:
            parts.append(f"Where: {self.where}.")
        if self.fix:
            parts.append(f"Fix: {self.fix.rstrip('.')}.")
        return " ".join(parts)
