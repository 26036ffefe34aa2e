"""The one exception type a user can cause. The CLI turns it into a message and exit code 2."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` safe to write as UTF-8 (metadata, pictures' titles, the terminal).

    A file name that is not UTF-8 (legal on Linux: any bytes but ``/`` and NUL) reaches Python
    as a str holding lone surrogates (PEP 383), which UTF-8 cannot encode; its bytes are
    written here as ``\\xNN`` instead, so ``données`` stays ``données`` and the bytes FF FE
    read ``\\xff\\xfe``. The form is for people and records; the OS path itself stays as it is.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name byte gives
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


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
        return printable(" ".join(parts))
