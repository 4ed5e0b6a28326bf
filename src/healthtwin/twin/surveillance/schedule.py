"""The detection run on a schedule inside the server: once a week (by default on Monday at 06:00 UTC,
after the weekend's refresh), every weekly district series of every group through job.run, the raised
Communications and the run's summary written beside the analytics database:

    <analytics>/surveillance/<YYYY-MM-DD>.ndjson   the Communications of that run, one per line
    <analytics>/surveillance/<YYYY-MM-DD>.json     its summary (series, signals, groups, raised, held back)

Inside a server (`services` given) the Communications are also stored in its FHIR store, addressed to each
district's epidemiologist, in one transaction per run (alerts.py: a re-run of the week duplicates nothing);
`GET /analytics/alerts` lists them (web.py). `healthtwin surveillance scan` runs the detection from the
command line.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from . import job

log = logging.getLogger("healthtwin.twin")


def next_run(now: dt.datetime, weekday: int = 0, hour: int = 6) -> dt.datetime:
    """The next `weekday` (0 = Monday) at `hour`:00 UTC strictly after now."""
    base = now.astimezone(dt.timezone.utc).replace(hour=hour, minute=0, second=0, microsecond=0)
    days = (weekday - base.weekday()) % 7
    at = base + dt.timedelta(days=days)
    return at if at > now else at + dt.timedelta(days=7)


def run_once(analytics_dir: Path, now: dt.datetime | None = None, services: Any = None) -> dict:
    now = now or dt.datetime.now(dt.timezone.utc)
    from ..series import open_analytics
    try:
        con = open_analytics(analytics_dir)
    except Exception as exc:  # no database yet
        raise ValueError(f"no analytics database in {analytics_dir}: {exc}") from None
    try:
        series = job.series_from_analytics(con, None, level="district")
    finally:
        con.close()
    recipient_for = job.district_epidemiologist
    if services is not None:
        from .alerts import recipients
        recipient_for = recipients(services.store, services.registry)
    summary = job.run(series, recipient_for, now=now)
    out = Path(analytics_dir) / "surveillance"
    out.mkdir(parents=True, exist_ok=True)
    stem = now.date().isoformat()
    tmp = out / f".{stem}.ndjson"
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in summary.resources))
    tmp.replace(out / f"{stem}.ndjson")
    record = {"ran_at": now.isoformat(timespec="seconds"), "series": summary.series, "signals": summary.signals,
              "groups": summary.groups, "raised": summary.raised, "held_back": summary.held_back}
    if services is not None:
        from .alerts import store_alerts
        stored = store_alerts(services.store, summary.resources)
        record["stored"] = vars(stored)
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1))
    return record


class WeeklyDetection:
    """A daemon thread that sleeps until the next run, runs, and repeats; stop() wakes and ends it."""

    def __init__(self, analytics_dir: Path, clock: Callable[[], dt.datetime] | None = None,
                 weekday: int = 0, hour: int = 6, services: Any = None) -> None:
        self.analytics_dir = Path(analytics_dir)
        self.services = services
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.weekday, self.hour = weekday, hour
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="weekly-detection", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            wait = (next_run(now, self.weekday, self.hour) - now).total_seconds()
            if self._stop.wait(max(0.0, wait)):
                return
            try:
                record = run_once(self.analytics_dir, self.clock(), self.services)
                log.info("weekly detection: %(series)s series, %(raised)s alerts raised", record)
            except ValueError as exc:  # no series yet (no refresh has run): try again next week
                log.warning("weekly detection skipped: %s", exc)
            except Exception:
                log.exception("weekly detection failed")
