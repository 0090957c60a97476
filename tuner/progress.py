"""A dependency-free progress bar on stderr: redrawn in place on a terminal, one line per update otherwise.

It counts what the budget is in: elapsed/total time for a time budget, trials
for a trial budget, both when both are given.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, trials: int | None = None, seconds: float | None = None, done: int = 0,
                 enabled: bool = True, stream=None, width: int = 24):
        self.trials = trials
        self.seconds = seconds
        self.done = done
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.perf_counter()
        self._interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._drawn = False

    def write(self, line: str) -> None:
        """A line of its own above the bar."""
        if self.enabled:
            self.stream.write(line + "\n")
            self.stream.flush()

    def line(self, done: int, elapsed_s: float, status: str = "") -> str:
        fractions = [done / max(self.trials, 1)] if self.trials is not None else []
        if self.seconds is not None:
            fractions.append(elapsed_s / self.seconds)
        filled = int(self.width * min(max(fractions, default=0.0), 1.0))
        counts = []
        if self.seconds is not None:
            counts.append(f"{format_duration(elapsed_s)}/{format_duration(self.seconds)}")
        counts.append(f"{done}/{self.trials} trials" if self.trials is not None else f"{done} trials")
        if self.seconds is None:
            counts.append(f"{elapsed_s:.0f}s")
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {' '.join(counts)}  {status}".rstrip()

    def update(self, done: int, status: str = "") -> None:
        self.done = done
        if not self.enabled:
            return
        line = self.line(done, time.perf_counter() - self.started, status)
        self.stream.write("\r\033[K" + line if self._interactive else line + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._interactive and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def format_seconds(seconds: float) -> str:
    """Microseconds below 0.1 ms (three significant digits, so a tiny kernel never shows as 0.0), else ms."""
    return f"{seconds * 1e6:.3g} us" if seconds < 1e-4 else f"{seconds * 1e3:.3f} ms"


def format_duration(seconds: float) -> str:
    """A wall-clock duration: '45s', '7m05s', '1h02m'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
