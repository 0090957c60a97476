"""A dependency-free progress bar on stderr: redrawn in place on a terminal, one line per update otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, done: int = 0, enabled: bool = True, stream=None, width: int = 24):
        self.total = max(total, 1)
        self.done = done
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.perf_counter()
        self._interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._drawn = False

    def update(self, done: int, status: str = "") -> None:
        self.done = done
        if not self.enabled:
            return
        filled = int(self.width * min(done / self.total, 1.0))
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.started
        line = f"[{bar}] {done}/{self.total} trials {elapsed:5.0f}s  {status}"
        if self._interactive:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._interactive and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def format_seconds(seconds: float) -> str:
    """Microseconds below 0.1 ms (three significant digits, so a tiny kernel never shows as 0.0), else ms."""
    return f"{seconds * 1e6:.3g} us" if seconds < 1e-4 else f"{seconds * 1e3:.3f} ms"
