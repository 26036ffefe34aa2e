"""Progress on stderr for the commands: a Rich bar on a terminal, plain timed lines elsewhere
(logs, pipes), and one early estimate of the time left once the first steps are timed."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._common import err


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int, int, dict[str, float]], None]]:
    """Progress on stderr; yields a ``(done, total, info)`` callback.

    On a terminal: a Rich bar, started at the first update (so an error raised before any
    work shows no empty bar). Elsewhere (a log file, a pipe): plain lines, at most one every
    :data:`PLAIN_EVERY_S` seconds, plus the last. Either way one early estimate of the time
    left is printed once the first steps are timed (see :class:`Estimate`)."""
    if not enabled:
        yield lambda done, total, info: None
        return
    if not err.is_terminal:
        yield PlainProgress(description, err.print)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err,
        transient=False,
    )
    task = progress.add_task(description, total=None, info="")
    estimate = Estimate(description)
    started = False

    def update(done: int, total: int, info: dict[str, float]) -> None:
        nonlocal started
        if not started:
            progress.start()
            started = True
        progress.update(task, completed=done, total=total, info=info_text(info))
        line = estimate.update(done, total)
        if line:
            progress.console.print(line, highlight=False, markup=False)

    try:
        yield update
    finally:
        if started:
            progress.stop()


PLAIN_EVERY_S = 10.0  # seconds between plain progress lines (stderr not a terminal)


def info_text(info: dict[str, Any]) -> str:
    """``k=v`` pairs of a progress update, NaNs left out."""
    shown = {k: v for k, v in info.items() if not (isinstance(v, float) and math.isnan(v))}
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def duration(seconds: float) -> str:
    """A time span in words: '48 s', '4 min 35 s', '3 h 05 min', '2 days 7 h'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} days {seconds % 86400 // 3600} h"


class Estimate:
    """One early line with the time left, once the first steps are timed: after at least
    ``min_done`` steps past the first update and ``min_seconds`` of them, measured from the
    first update (so start-up work is not counted as step time)."""

    def __init__(
        self,
        description: str,
        min_done: int = 3,
        min_seconds: float = 2.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.description, self.min_done, self.min_seconds, self.clock = description, min_done, min_seconds, clock
        self.first: tuple[int, float] | None = None
        self.done = False

    def update(self, done: int, total: int | None) -> str | None:
        now = self.clock()
        if self.first is None:
            self.first = (done, now)
            return None
        if self.done or not total or done >= total:
            return None
        steps, seconds = done - self.first[0], now - self.first[1]
        if steps < self.min_done or seconds < self.min_seconds:
            return None
        self.done = True
        left = (total - done) * seconds / steps
        return f"{self.description}: about {duration(left)} to go ({done}/{total} done, {seconds / steps:.3g} s each)"


class PlainProgress:
    """Progress as plain lines (for logs): the first update, then one line at most every
    ``every`` seconds, and the last; each with elapsed and remaining time, and the values
    (losses, …) when they changed since the line before."""

    def __init__(
        self,
        description: str,
        write: Callable[..., None],
        every: float = PLAIN_EVERY_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.description, self.write, self.every, self.clock = description, write, every, clock
        self.t0 = clock()
        self.first: tuple[int, float] | None = None  # (done, time) at the first update: the rate is timed from there
        self.last: float | None = None
        self.estimate = Estimate(description, clock=clock)
        self.finished = False
        self.shown = ""  # the values on the last line written

    def __call__(self, done: int, total: int, info: dict[str, Any]) -> None:
        now = self.clock()
        if self.first is None:
            self.first = (done, now)
        line = self.estimate.update(done, total)
        if line:
            self.write(line, highlight=False, markup=False, soft_wrap=True)
        final = bool(total) and done >= total
        if self.finished or not (self.last is None or final or now - self.last >= self.every):
            return
        self.last, self.finished = now, final
        elapsed = now - self.t0
        if total:
            steps, seconds = done - self.first[0], now - self.first[1]
            left = (
                f", {_clock((total - done) * seconds / steps)} left" if steps > 0 and seconds > 0 and not final else ""
            )
            head = f"{self.description} {done}/{total} ({100 * done / total:.0f}%) {_clock(elapsed)} elapsed{left}"
        else:
            head = f"{self.description} {done}/? {_clock(elapsed)} elapsed"
        text = info_text(info)
        if text == self.shown:  # values logged once (a loss logged every 50 steps) are not repeated
            text = ""
        else:
            self.shown = text
        self.write(head + (f"  {text}" if text else ""), highlight=False, markup=False, soft_wrap=True)
