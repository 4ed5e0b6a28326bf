"""What the platform runs on a schedule, and when by default (UTC; each an operator may move or disable with
`healthtwin jobs set`). The jobs live in the packages that own them; this module only names and calls them,
which is why it sits above the registries and the twin (docs/architecture.md).

    immunization-refresh  daily 01:30     every child's forecast and ImmunizationRecommendation (registries)
    forecast-warm         daily 03:00     every stale syndrome x level forecast stored for the route (twin)
    detection             weekly mon 06:00 the twin detector over every district series, alerts stored (twin)

The analytics refresh the last two read keeps its own schedule in the server that holds the analytics database
(HEALTHTWIN_ANALYTICS_REFRESH_MINUTES), or `healthtwin views materialize` before `healthtwin jobs run-due`."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class Context:
    """What a job may use: the server's (or the command's) services, and where the data lives."""
    services: Any
    data_dir: Path
    analytics_dir: Path | None
    database: str | None = None
    workers: int = 2


@dataclass(frozen=True)
class Job:
    name: str
    cadence: str
    run: Callable[[Context, dt.datetime], Any]  # returns the run's summary (JSON-able); raises on failure
    what: str


class JobFailed(Exception):
    """A job that ran but did not do all it should: the detail is recorded with the failure."""

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.detail = detail


def _analytics(ctx: Context) -> Path:
    if ctx.analytics_dir is None:
        raise JobFailed("no analytics folder: this job reads the analytics tables")
    return Path(ctx.analytics_dir)


def immunization_refresh(ctx: Context, now: dt.datetime) -> Any:
    from ..registries.immunization.refresh import refresh_all
    return vars(refresh_all(ctx.database, Path(ctx.data_dir), now.date(), ctx.workers))


def forecast_warm(ctx: Context, now: dt.datetime) -> Any:
    from ..twin.forecasting.stored import warm
    report = vars(warm(_analytics(ctx)))
    if report["failed"]:
        raise JobFailed(f"{len(report['failed'])} syndrome x level forecasts failed", report)
    return report


def detection(ctx: Context, now: dt.datetime) -> Any:
    from ..twin.surveillance.schedule import run_once
    return run_once(_analytics(ctx), now, ctx.services)


JOBS: tuple[Job, ...] = (
    Job("immunization-refresh", "daily 01:30", immunization_refresh,
        "re-forecast every child and rewrite their ImmunizationRecommendation"),
    Job("forecast-warm", "daily 03:00", forecast_warm, "fit and store every stale syndrome x level forecast"),
    Job("detection", "weekly mon 06:00", detection,
        "the twin detector over every district series; alerts to the district epidemiologists"),
)
