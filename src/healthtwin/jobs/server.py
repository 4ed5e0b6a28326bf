"""The jobs inside a server: a thread that, once a minute, runs the due jobs (runner.run_due). With several
worker processes only the one that holds the analytics database ticks (analytics/snapshot.py's lock): the
others would read snapshots, and one process running the nightly work is enough. The claim in the store
still keeps a cron `healthtwin jobs run-due` beside it from running a job twice."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from ..api.plugins import Contribution
from .book import JobBook
from .catalogue import JOBS, Context, Job
from .runner import run_due, utcnow

log = logging.getLogger("healthtwin.jobs")


class Ticker:
    def __init__(self, ctx: Context, jobs: Iterable[Job] = JOBS, seconds: float = 60.0,
                 clock: Callable[[], Any] = utcnow) -> None:
        self.ctx, self.jobs, self.seconds, self.clock = ctx, tuple(jobs), seconds, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.book: JobBook | None = None

    def start(self) -> None:
        from ..analytics.snapshot import try_own
        if self.ctx.analytics_dir is not None and not try_own(self.ctx.analytics_dir):
            log.info("jobs: another worker holds the analytics database and runs the schedule")
            return
        self.book = JobBook(self.ctx.services.store)
        self.book.register([(j.name, j.cadence) for j in self.jobs], self.clock())
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="scheduled-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def tick(self) -> list[dict[str, Any]]:
        assert self.book is not None
        return run_due(self.book, self.jobs, self.ctx, self.clock(), clock=self.clock)

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.tick()
            except Exception:  # the store away: try again at the next tick
                log.exception("scheduled jobs: tick failed")


def contribution(services: Any, data_dir: Path | None, analytics_dir: Path | None, database: str | None = None,
                 seconds: float = 60.0) -> Contribution | None:
    if data_dir is None or analytics_dir is None:
        return None
    ticker = Ticker(Context(services, Path(data_dir), Path(analytics_dir), database), seconds=seconds)
    return Contribution("jobs", start=ticker.start, stop=ticker.stop)
