"""Progress of long commands (generate, load, demo) as a person expects it.

On a terminal: one line redrawn in place, with a bar, the percentage, done/total and the time left
(`generating [########------------]  40%  2,000/5,000 citizens  0:12 left`). Elsewhere (a log file, CI, a
pipe): a plain log line every few seconds, and one at the end, so logs stay readable.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import IO

log = logging.getLogger("healthtwin")

WIDTH = 24  # characters of the bar
LOG_EVERY = 5.0  # seconds between log lines when not on a terminal


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Bar:
    """`bar(done)` reports `done` of `total` `unit`s; `total` may be unknown (None): then counts and rate."""

    def __init__(self, verb: str, total: int | None, unit: str, stream: IO[str] | None = None,
                 tty: bool | None = None, clock=time.monotonic) -> None:
        self.verb, self.total, self.unit = verb, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.started = clock()
        self.last_log = self.started
        self.done = 0
        self.note = ""

    def line(self) -> str:
        elapsed = self.clock() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if not self.total:
            return f"{self.verb} {self.done:,} {self.unit} ({rate:,.0f}/s){self.note}"
        share = min(1.0, self.done / self.total)
        filled = int(share * WIDTH)
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = "done" if share >= 1.0 else (f"{_clock(left)} left" if left is not None else "estimating")
        if not self.tty:
            return f"{self.verb}: {self.done:,}/{self.total:,} {self.unit} ({share:.0%}), {eta}{self.note}"
        return (f"{self.verb} [{'#' * filled}{'-' * (WIDTH - filled)}] {share:4.0%}  "
                f"{self.done:,}/{self.total:,} {self.unit}  {eta}{self.note}")

    def __call__(self, done: int, note: str = "") -> None:
        self.done, self.note = done, note
        if self.tty:
            self.stream.write("\r  " + self.line() + "   ")
            self.stream.flush()
            return
        now = self.clock()
        if now - self.last_log >= LOG_EVERY:
            self.last_log = now
            log.info("%s", self.line())

    def close(self) -> None:
        """Ends the line on a terminal; elsewhere logs the final count."""
        if self.tty:
            self.stream.write("\r  " + self.line() + "   \n")
            self.stream.flush()
        else:
            log.info("%s", self.line())
