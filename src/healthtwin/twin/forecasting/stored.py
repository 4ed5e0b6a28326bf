"""Forecasts fitted ahead of their readers and kept beside the analytics database, so that
`GET /analytics/forecasts` answers from a stored fit instead of fitting on the request (10-22 s on a
3,000-person twin).

A fit is stored per syndrome and level in `<analytics>/forecasts/<syndrome>.<level>.json` with the digest of
what it was fitted on: the weekly series themselves (places, weeks, counts) and the forecasting code. A stored
fit answers whenever the digest of the series read now is the same, whichever process wrote it and however
many refreshes ran since; a refresh that changed a syndrome's counts changes its digest, and only that
syndrome is fitted again. Reading the series is one DuckDB query (milliseconds); the fit is the cost.

`warm(analytics_dir)` fits every syndrome × level whose stored fit is missing or stale: the nightly run,
`healthtwin forecast warm --analytics DIR` (the server's own warm-up thread, web.py, fits the groups its
dashboard shows after each refresh it sees, through the same stored fits). Files are written whole (a temporary file renamed), so a reader sees the old fit or the new one.
What is stored is what the route shows: observed counts small-cell suppressed, quantiles rounded.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..series import SeriesError, open_analytics, residents, syndromes, weekly_counts
from ..surveillance import suppression
from .levels import QUANTILE_LEVELS
from .twin_series import forecast_weekly

log = logging.getLogger("healthtwin.twin")
FOLDER = "forecasts"
LEVELS = ("national", "region", "district")
SHOWN_LEVELS = (0.025, 0.25, 0.5, 0.75, 0.975)  # the 95% and 50% bands and the median
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_CODE = ("ensemble.py", "growth.py", "quantreg.py", "models.py", "gbqr.py", "baseline.py", "levels.py", "twin_series.py", "stored.py")


def code_digest() -> str:
    """SHA-256 of the forecasting modules: a stored fit made by other code is not reused."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _CODE:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    return h.hexdigest()


def series_digest(found: Sequence[Any], code: str, population: dict[tuple[str, ...], float] | None = None) -> str:
    h = hashlib.sha256(code.encode())
    for s in found:
        h.update(orjson.dumps(["/".join(s.key), s.dates[0].isoformat() if s.dates else "", list(s.counts),
                               (population or {}).get(tuple(s.key))]))
    return h.hexdigest()


def path_for(analytics_dir: Path, syndrome: str, level: str) -> Path:
    return Path(analytics_dir) / FOLDER / f"{_SAFE.sub('_', syndrome)}.{level}.json"


def view(series: Any, forecast: Any) -> dict[str, Any]:
    """One series as the route shows it: the observed weeks (suppressed) and horizons 0-3 at SHOWN_LEVELS."""
    columns = [QUANTILE_LEVELS.index(q) for q in SHOWN_LEVELS]
    rows = forecast.quantiles[:, columns]
    return {"key": list(series.key), "place": "/".join(series.key) or "national",
            "observed": {"weeks": series.periods, "counts": suppression.counts(series.counts)},
            "forecast": [{"horizon": h, "week_start": week.isoformat(),
                          "quantiles": {str(q): round(float(v), 1) for q, v in zip(SHOWN_LEVELS, row)}}
                         for h, (week, row) in enumerate(zip(forecast.weeks, rows))]}


def fit(found: Sequence[Any], population: dict[tuple[str, ...], float] | None = None) -> list[dict[str, Any]]:
    """The route's view of every series, fitted now (one panel per syndrome, as twin_series does)."""
    by_key = {f.key: f for f in forecast_weekly(found, residents=population)}
    return [view(s, by_key[tuple(s.key)]) for s in found]


def load(analytics_dir: Path, syndrome: str, level: str, digest: str) -> list[dict[str, Any]] | None:
    """The stored fit of (syndrome, level) if it was made from series with this digest, else None."""
    try:
        body = orjson.loads(path_for(analytics_dir, syndrome, level).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return body.get("series") if body.get("digest") == digest else None


def save(analytics_dir: Path, syndrome: str, level: str, digest: str, series: list[dict[str, Any]]) -> None:
    path = path_for(analytics_dir, syndrome, level)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_bytes(orjson.dumps({"syndrome": syndrome, "level": level, "digest": digest,
                                  "fitted_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                  "series": series}))
    tmp.replace(path)


def answer(con: Any, analytics_dir: Path, syndrome: str, level: str, code: str | None = None
           ) -> tuple[list[dict[str, Any]], bool]:
    """(the views, whether they came from a stored fit): stored if current, else fitted now and stored."""
    found = weekly_counts(con, syndrome, level=level)
    population = residents(con, level)
    digest = series_digest(found, code or code_digest(), population)
    kept = load(analytics_dir, syndrome, level, digest)
    if kept is not None:
        return kept, True
    out = fit(found, population)
    save(analytics_dir, syndrome, level, digest, out)
    return out, False


@dataclass
class WarmReport:
    fitted: int = 0  # syndrome x level panels fitted now
    current: int = 0  # panels whose stored fit was still current
    series: int = 0  # series fitted now
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)


def warm(analytics_dir: Path, groups: Iterable[str] | None = None, levels: Sequence[str] = LEVELS,
         con: Any = None, should_stop: Callable[[], bool] = lambda: False) -> WarmReport:
    """Fit and store every syndrome × level whose stored fit is missing or stale."""
    started = time.perf_counter()
    report = WarmReport()
    own = con is None
    con = open_analytics(analytics_dir) if own else con
    try:
        names = list(groups) if groups is not None else [s["syndrome"] for s in syndromes(con)]
        code = code_digest()
        by_level: dict[str, dict[tuple[str, ...], float]] = {}  # residents per place, read once a level
        for name in names:
            for level in levels:
                if should_stop():
                    return report
                try:
                    found = weekly_counts(con, name, level=level)
                    population = by_level.setdefault(level, residents(con, level))
                    digest = series_digest(found, code, population)
                    if load(analytics_dir, name, level, digest) is not None:
                        report.current += 1
                        continue
                    save(analytics_dir, name, level, digest, fit(found, population))
                    report.fitted += 1
                    report.series += len(found)
                except (SeriesError, ValueError) as exc:
                    report.failed[f"{name}/{level}"] = str(exc)
    finally:
        if own:
            con.close()
        report.seconds = time.perf_counter() - started
    return report
