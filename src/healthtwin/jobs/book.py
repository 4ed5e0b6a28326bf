"""The jobs table and the run record, in the FHIR store (SQLite or PostgreSQL), so that every process that
runs jobs — a server's tick, a cron or systemd timer calling `healthtwin jobs run-due` — sees one schedule:

    ht_jobs      name, cadence (cadence.py), enabled, next_due, and the run holding it (running, running_since)
    ht_job_runs  one row per run: job, started, finished, outcome (running, ok, failed, abandoned), detail, by

A run is *claimed* in one store transaction (the job's row locked on PostgreSQL; SQLite's writes are serial):
a job whose row names a running run is not started again, so two processes calling run-due at once run each
due job once. A claim older than `STALE` (its process died or hangs) is given up, its run recorded `abandoned`.
Times are ISO 8601 UTC text, which sorts as it reads. The two tables are the store's schema migration 6
(store/schema.py), made when the store is opened, not by this module."""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from ..store import Store
from .cadence import parse

STALE = dt.timedelta(hours=12)  # longer than any nightly job has taken (docs/twin.md, docs/registries.md)


def stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Claim:
    run_id: str
    job: str
    started: str


class JobBook:
    def __init__(self, store: Store) -> None:
        self.store = store  # its tables are the store's migration 6 (store/schema.py), there once it is opened

    def register(self, defaults: Iterable[tuple[str, str]], now: dt.datetime) -> None:
        """Adds the jobs the table does not have yet, first due at their cadence's next time after `now`
        (a new installation does not run every job at its first start). Existing rows keep what an operator set."""
        with self.store.transaction() as tx:
            tx.lock("jobs:table")
            have = {r[0] for r in tx.execute("SELECT name FROM ht_jobs")}
            for name, cadence in defaults:
                if name not in have:
                    tx.execute("INSERT INTO ht_jobs (name, cadence, enabled, next_due) VALUES (?, ?, 1, ?)",
                               (name, cadence, stamp(parse(cadence).next_after(now))))

    def configure(self, name: str, cadence: str | None = None, enabled: bool | None = None,
                  now: dt.datetime | None = None) -> None:
        now = now or dt.datetime.now(dt.timezone.utc)
        with self.store.transaction() as tx:
            tx.lock(f"jobs:{name}")
            if not tx.execute("SELECT 1 FROM ht_jobs WHERE name = ?", (name,)):
                raise ValueError(f"no job {name!r} (healthtwin jobs list)")
            if cadence is not None:
                tx.execute("UPDATE ht_jobs SET cadence = ?, next_due = ? WHERE name = ?",
                           (parse(cadence).text, stamp(parse(cadence).next_after(now)), name))
            if enabled is not None:
                tx.execute("UPDATE ht_jobs SET enabled = ? WHERE name = ?", (1 if enabled else 0, name))

    def claim(self, name: str, now: dt.datetime, force: bool = False) -> Claim | None:
        """Starts a run of `name` if it is due (or `force`), enabled and not running; None otherwise."""
        with self.store.transaction() as tx:
            tx.lock(f"jobs:{name}")
            rows = tx.execute("SELECT enabled, next_due, running, running_since FROM ht_jobs WHERE name = ?", (name,))
            if not rows:
                raise ValueError(f"no job {name!r} (healthtwin jobs list)")
            enabled, next_due, running, since = rows[0]
            if running is not None:
                if since > stamp(now - STALE):
                    return None
                tx.execute("UPDATE ht_job_runs SET outcome = 'abandoned', finished = ? WHERE id = ?", (stamp(now), running))
            if not force and (not enabled or next_due > stamp(now)):
                return None
            run = Claim(uuid.uuid4().hex, name, stamp(now))
            tx.execute("INSERT INTO ht_job_runs (id, job, started, outcome, ran_by) VALUES (?, ?, ?, 'running', ?)",
                       (run.run_id, name, run.started, f"{socket.gethostname()}:{os.getpid()}"))
            tx.execute("UPDATE ht_jobs SET running = ?, running_since = ? WHERE name = ?", (run.run_id, run.started, name))
            return run

    def finish(self, run: Claim, outcome: str, detail: Any, now: dt.datetime) -> None:
        """Records the run's end and makes the job due at its cadence's next time after it."""
        text = detail if isinstance(detail, str) else json.dumps(detail, default=str, ensure_ascii=False)
        with self.store.transaction() as tx:
            tx.lock(f"jobs:{run.job}")
            tx.execute("UPDATE ht_job_runs SET finished = ?, outcome = ?, detail = ? WHERE id = ?",
                       (stamp(now), outcome, text, run.run_id))
            cadence = tx.execute("SELECT cadence FROM ht_jobs WHERE name = ?", (run.job,))[0][0]
            tx.execute("UPDATE ht_jobs SET running = NULL, running_since = NULL, next_due = ? WHERE name = ? "
                       "AND running = ?", (stamp(parse(cadence).next_after(now)), run.job, run.run_id))

    def jobs(self) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT j.name, j.cadence, j.enabled, j.next_due, j.running, r.started, r.finished, "
                                "r.outcome FROM ht_jobs j LEFT JOIN ht_job_runs r ON r.id = (SELECT id FROM "
                                "ht_job_runs x WHERE x.job = j.name ORDER BY x.started DESC, x.id LIMIT 1) "
                                "ORDER BY j.name", [])
        return [{"name": n, "cadence": c, "enabled": bool(e), "next_due": d, "running": bool(run),
                 "last_started": s, "last_finished": f, "last_outcome": o} for n, c, e, d, run, s, f, o in rows]

    def runs(self, job: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, params = ("WHERE job = ? ", [job]) if job else ("", [])
        rows = self.store.query(f"SELECT id, job, started, finished, outcome, detail, ran_by FROM ht_job_runs {where}"
                                "ORDER BY started DESC, id LIMIT ?", [*params, int(limit)])
        return [{"id": i, "job": j, "started": s, "finished": f, "outcome": o, "detail": d, "ran_by": b}
                for i, j, s, f, o, d, b in rows]
