"""A progress line for the local engine: rows done, rows/s over this run, time left."""

from __future__ import annotations

import sys
import time
from typing import IO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """``update(n)`` after each batch. On a terminal the line is redrawn in place (at most ten
    times a second); elsewhere (a log file) one line is printed every ``every_s`` seconds."""

    def __init__(self, total: int, done: int = 0, *, stream: IO[str] | None = None, enabled: bool = True,
                 every_s: float = 30.0, clock=time.monotonic):  # fmt: skip
        self.total = total
        self.done = done
        self.start_done = done
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = 0.1 if self.tty else every_s
        self.clock = clock
        self.started = clock()
        self.last = float("-inf")
        self.shown = -1  # rows done when the line was last shown

    @property
    def rate(self) -> float:
        elapsed = self.clock() - self.started
        return (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.rate
        eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
        return f"batch: {self.done}/{self.total} rows ({pct:.0f}%) | {rate:.2f} rows/s | ETA {eta}"

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if self.enabled and now - self.last >= self.every_s:
            self.last = now
            self._show()

    def _show(self) -> None:
        self.shown = self.done
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.shown != self.done:
            self._show()
        if self.tty and self.shown >= 0:
            self.stream.write("\n")
            self.stream.flush()
