"""Ctrl-C as a stop request: long loops finish the iteration they are in, save, and stop.

The first SIGINT (Ctrl-C) or SIGTERM sets a flag that the training loop reads at each
iteration boundary (``train_steps(should_stop=...)``), so the checkpoint it then writes holds
a state the uninterrupted run also passed through and ``--resume`` continues bit for bit. The
first signal also restores the previous handlers, so a second Ctrl-C interrupts at once
(KeyboardInterrupt: nothing is saved from the half-done iteration; the last checkpoint stays).

The flag is a plain callable, so a distributed run can combine the ranks' flags (an
all-reduce of ``bool(stop())``) before acting on it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class StopRequest:
    """Context manager installing the handlers; call the object to ask whether a stop was requested."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.requested

    def request(self, name: str = "request") -> None:
        """Ask the loop to stop at its next iteration boundary (what the signal handler does)."""
        self.requested = True
        self.signal_name = self.signal_name or name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.request(signal.Signals(signum).name)
        self._restore()  # a second signal acts at once

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()
