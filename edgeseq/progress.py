"""One progress display for every long step: training epochs, conversions, verify, bench, webcam frames.

On a terminal it is a rich bar (count, rate, elapsed, ETA) on stderr; when stderr is not a terminal (CI
logs, pipes) it is one plain line per step, ``verify [3/8] tflite-int8 (2.1 s, 1.4/s, ETA 3.6 s)``, at
most one every ``every`` seconds for fast steps; ``quiet`` shows nothing. Library code takes a plain
callback; the CLI builds a :class:`Progress` and hands its :meth:`advance` down.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class Progress:
    def __init__(self, what: str, total: Optional[int] = None, *, quiet: bool = False, unit: str = "",
                 stream: Optional[TextIO] = None, terminal: Optional[bool] = None, every: float = 0.0):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.done = 0
        self._started = time.perf_counter()
        self._last_line = float("-inf")
        self._bar = self._task = None
        if not quiet and self.terminal:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            console = Console(file=self.stream, force_terminal=True)
            self._bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                     TextColumn("{task.fields[label]}"), console=console, transient=False)
            self._task = self._bar.add_task(what, total=total, rate="", label="")
            self._bar.start()

    def start(self, total: int) -> None:
        """Set the total once it is known (e.g. after a model has loaded)."""
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def advance(self, label: str = "", steps: int = 1) -> None:
        self.done += steps
        elapsed = time.perf_counter() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        rate_text = f"{rate:.1f}{self.unit}/s" if rate else "-"
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, rate=rate_text, label=label)
            return
        if self.quiet:
            return
        last = self.total is not None and self.done >= self.total
        if not last and elapsed - self._last_line < self.every:
            return
        self._last_line = elapsed
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        eta = f", ETA {(self.total - self.done) / rate:.1f} s" if self.total and rate and not last else ""
        text = f"{self.what} [{count}]" + (f" {label}" if label else "") + f" ({elapsed:.1f} s, {rate_text}{eta})"
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
