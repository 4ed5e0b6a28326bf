"""Running the due jobs: each claimed in the store, run, and its end recorded (book.py). A job that fails is
recorded `failed` with its error and the next one still runs; an interrupt (Ctrl-C, the server stopping) is
recorded `failed` too, then passed on."""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Callable, Iterable

from .book import JobBook
from .catalogue import Context, Job, JobFailed

log = logging.getLogger("healthtwin.jobs")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def run_job(book: JobBook, job: Job, ctx: Context, now: dt.datetime, force: bool = False,
            clock: Callable[[], dt.datetime] = utcnow) -> dict[str, Any] | None:
    """Runs `job` if it is due (or `force`d) and nobody runs it; its run's record, or None if not run."""
    claim = book.claim(job.name, now, force)
    if claim is None:
        return None
    log.info("job %s started (run %s)", job.name, claim.run_id)
    try:
        detail, outcome = job.run(ctx, now), "ok"
    except JobFailed as exc:
        detail, outcome = {"error": str(exc), "detail": exc.detail}, "failed"
    except Exception as exc:  # any failure of one job is its record's, not the schedule's
        log.exception("job %s failed", job.name)
        detail, outcome = {"error": f"{type(exc).__name__}: {exc}"}, "failed"
    except BaseException as exc:
        book.finish(claim, "failed", {"error": f"interrupted ({type(exc).__name__})"}, clock())
        raise
    book.finish(claim, outcome, detail, clock())
    log.info("job %s %s", job.name, outcome)
    return {"id": claim.run_id, "job": job.name, "outcome": outcome, "detail": detail}


def run_due(book: JobBook, jobs: Iterable[Job], ctx: Context, now: dt.datetime | None = None,
            clock: Callable[[], dt.datetime] = utcnow) -> list[dict[str, Any]]:
    """Every job of `jobs` that is due at `now`, one after another (they share the machine's cores)."""
    jobs = list(jobs)
    now = now or clock()
    book.register([(j.name, j.cadence) for j in jobs], now)
    done = []
    for job in jobs:
        record = run_job(book, job, ctx, now, clock=clock)
        if record is not None:
            done.append(record)
    return done
