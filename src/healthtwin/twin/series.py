"""Time series from the record, for the twin's detectors, forecasters and scenarios (docs/twin.md, "Time series").

Everything here reads what the analytics refresh keeps current (analytics/materialize.py, cube_delta.py):

* case counts per syndrome / notifiable disease / ICD-10 chapter come from the `syndrome_cases` indicator's
  numerator table (day × region × district × sex × single year of age × group), summed here into days, ISO
  weeks or months per region or district;
* the bed census per hospital per day comes from the `bed_occupancy` indicator's table, the beds from the
  hospitals' Locations (`base_hospital`);
* admissions per day (all causes, or those with a diagnosis in a group) come from the `inpatient_stay` and
  `diagnosis` views themselves, so they are there only in the process that holds the analytics database.

These are aggregates for methods that run inside the server; nothing here is released to a caller (the
`/analytics` API applies small-cell suppression to what it answers). Every series is regular: one value per
bucket from its first to its last, zeros included; by default only whole buckets inside the record's days.

    from healthtwin.twin.series import weekly_counts
    for s in weekly_counts("/data", "ili", level="region"):
        print(s.key, s.periods[-3:], s.counts[-3:])
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import duckdb

from ..analytics.indicators import load_indicators
from ..analytics.periods import bucket_start, label, next_bucket
from ..analytics.snapshot import SnapshotReader

LEVELS = {"national": (), "region": ("region",), "district": ("region", "district")}
HOSPITAL_LEVELS = {"national": (), "region": ("region",), "district": ("region", "district"),
                   "hospital": ("region", "district", "hospital")}


class SeriesError(ValueError):
    """A request the series cannot answer (unknown group, level or interval; nothing computed yet)."""


@dataclass(frozen=True)
class Series:
    """One regular count series. `key` names the place: () national, (region,), or (region, district)."""
    key: tuple[str, ...]
    syndrome: str
    interval: str  # day | week | month | year
    dates: list[dt.date]  # the first day of each bucket
    counts: list[int]

    @property
    def periods(self) -> list[str]:
        """The bucket labels: 2024-01-15, 2024-W03, 2024-01."""
        return [label(d, self.interval) for d in self.dates]


@dataclass(frozen=True)
class Occupancy:
    """The midnight bed census of a hospital (or of all hospitals of a district, a region, the country)."""
    key: tuple[str, ...]  # (region, district, hospital name) down to () national
    name: str  # the hospital's (its Location's name), or the place's
    beds: float  # capacity: the Locations' bed counts × bed_scale
    dates: list[dt.date]
    census: list[int]

    @property
    def occupancy(self) -> list[float | None]:
        return [c / self.beds if self.beds else None for c in self.census]


def open_analytics(analytics_dir: str | Path) -> duckdb.DuckDBPyConnection:
    """A connection to the analytics database of `analytics_dir`. In the process that holds it (a server's
    analytics owner) this shares its database; elsewhere it is the newest snapshot, read-only."""
    path = Path(analytics_dir) / "analytics.duckdb"
    if path.exists():
        try:
            return duckdb.connect(str(path))
        except duckdb.Error:  # another process holds it: read its snapshot
            pass
    con = SnapshotReader(Path(analytics_dir)).connection()
    if con is None:
        raise SeriesError(f"no analytics database in {analytics_dir}: run a refresh (healthtwin views materialize)")
    return con


def _con(source: Any) -> duckdb.DuckDBPyConnection:
    return source if isinstance(source, duckdb.DuckDBPyConnection) else open_analytics(source)


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    cur = con.cursor()
    try:
        return cur.execute(sql, params).fetchall()
    except duckdb.CatalogException:
        raise SeriesError("the series have not been computed yet: run a refresh (healthtwin views materialize)") \
            from None
    finally:
        cur.close()


def syndromes(source: Any) -> list[dict[str, str]]:
    """The groups a series can count: syndrome, kind (syndrome | notifiable | chapter), title, ICD-10 range."""
    rows = _fetch(_con(source), "SELECT syndrome, kind, title, low, high FROM base_syndrome ORDER BY kind, syndrome", [])
    return [dict(zip(("syndrome", "kind", "title", "low", "high"), r)) for r in rows]


def record_days(source: Any) -> tuple[dt.date, dt.date] | None:
    """The first and last day with a diagnosis in the record."""
    table = load_indicators()["syndrome_cases"].table("num")
    row = _fetch(_con(source), f"SELECT min(period), max(period) FROM {table}", [])[0]
    return (row[0], row[1]) if row[0] is not None else None


def _buckets(first: dt.date, last: dt.date, interval: str, whole: bool) -> list[dt.date]:
    """Bucket starts covering [first, last]; with `whole`, only buckets entirely inside it."""
    out, b = [], bucket_start(first, interval)
    while b <= last:
        nxt = next_bucket(b, interval)
        if not whole or (b >= first and nxt - dt.timedelta(days=1) <= last):
            out.append(b)
        b = nxt
    return out


def _regular(rows: dict[tuple[str, ...], dict[dt.date, float]], starts: list[dt.date]) -> dict[tuple[str, ...], list]:
    return {key: [values.get(b, 0) for b in starts] for key, values in sorted(rows.items())}


def counts(source: Any, syndrome: str, level: str = "region", interval: str = "week",
           start: dt.date | None = None, end: dt.date | None = None, *, sex: str | None = None,
           age: tuple[int, int] | None = None, whole: bool = True) -> list[Series]:
    """Cases of `syndrome` (a group of `syndromes()`, e.g. "ili", "measles", "chapter-X") per place and bucket.

    `level`: national, region or district. `interval`: day, week (ISO, Monday first), month or year.
    `start`/`end` (inclusive) default to the record's first and last day; `whole` keeps only buckets that
    lie entirely between them (a week cut by the record's end would look like a fall). `sex` and `age`
    (inclusive years, age on 1 July of the year of onset) filter. Places with no case at all have no series."""
    if level not in LEVELS:
        raise SeriesError(f"level '{level}': use {', '.join(LEVELS)}")
    if interval not in ("day", "week", "month", "year"):
        raise SeriesError(f"interval '{interval}': use day, week, month or year")
    con = _con(source)
    if syndrome not in {s["syndrome"] for s in syndromes(con)}:
        raise SeriesError(f"no group '{syndrome}'; see syndromes()")
    span = record_days(con)
    if span is None:
        return []
    first, last = start or span[0], end or span[1]
    starts = _buckets(first, last, interval, whole)
    if not starts:
        return []
    keys = LEVELS[level]
    cols = "".join(f"{k}, " for k in keys)
    where, params = ["syndrome = ?", "period BETWEEN ? AND ?"], [syndrome, starts[0],
                                                                 next_bucket(starts[-1], interval) - dt.timedelta(days=1)]
    if sex is not None:
        where.append("sex = ?")
        params.append(sex)
    if age is not None:
        where.append("age BETWEEN ? AND ?")
        params += list(age)
    table = load_indicators()["syndrome_cases"].table("num")
    rows = _fetch(con, f"SELECT {cols}period, sum(numerator) FROM {table} WHERE {' AND '.join(where)} "
                       f"GROUP BY ALL", params)
    grouped: dict[tuple[str, ...], dict[dt.date, float]] = {}
    for row in rows:
        cell = grouped.setdefault(tuple(row[:len(keys)]), {})
        b = bucket_start(row[len(keys)], interval)
        cell[b] = cell.get(b, 0) + int(row[-1])
    return [Series(key, syndrome, interval, starts, [int(v) for v in vals])
            for key, vals in _regular(grouped, starts).items() if any(vals)]


def residents(source: Any, level: str = "region") -> dict[tuple[str, ...], float]:
    """Residents per place of `level` (the mid-year population of the record's latest year, the
    denominator of the case rates): what a forecaster needs to read counts as rates per 100,000."""
    if level not in LEVELS:
        raise SeriesError(f"level '{level}': use {', '.join(LEVELS)}")
    keys = LEVELS[level]
    cols = "".join(f"{k}, " for k in keys)
    table = load_indicators()["syndrome_cases"].table("den")
    rows = _fetch(_con(source), f"SELECT {cols}sum(denominator) FROM {table} GROUP BY ALL", [])
    return {tuple(row[:len(keys)]): float(row[-1]) for row in rows if row[-1]}


daily_counts = partial(counts, interval="day")
weekly_counts = partial(counts, interval="week")
monthly_counts = partial(counts, interval="month")


def occupancy(source: Any, level: str = "hospital", start: dt.date | None = None, end: dt.date | None = None,
              bed_scale: float = 1.0) -> list[Occupancy]:
    """The bed census per day of each hospital (or summed per district, region, or nationally) against its beds.

    `bed_scale` multiplies the Locations' bed counts: the generator writes national-scale beds, so a sample
    of n persons compares with beds × n / 10,180,770 (docs/twin.md)."""
    if level not in HOSPITAL_LEVELS:
        raise SeriesError(f"level '{level}': use {', '.join(HOSPITAL_LEVELS)}")
    con = _con(source)
    keys = HOSPITAL_LEVELS[level]
    cols = "".join(f"{k}, " for k in keys)
    hospitals = _fetch(con, f"SELECT {cols}sum(beds) FROM base_hospital GROUP BY ALL", [])
    table = load_indicators()["bed_occupancy"].table("num")
    span = _fetch(con, f"SELECT min(period), max(period) FROM {table}", [])[0]
    if span[0] is None or not hospitals:
        return []
    first, last = start or span[0], end or span[1]
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    rows = _fetch(con, f"SELECT {cols}period, sum(numerator) FROM {table} WHERE period BETWEEN ? AND ? GROUP BY ALL",
                  [first, last])
    grouped: dict[tuple[str, ...], dict[dt.date, float]] = {}
    for row in rows:
        grouped.setdefault(tuple(row[:len(keys)]), {})[row[len(keys)]] = int(row[-1])
    out = []
    for row in sorted(hospitals):
        key = tuple(row[:len(keys)])
        name = key[-1] if key else "national"
        census = grouped.get(key, {})
        out.append(Occupancy(key, name, float(row[-1]) * bed_scale, days, [int(census.get(d, 0)) for d in days]))
    return out


def admissions(source: Any, level: str = "region", interval: str = "day", syndrome: str | None = None,
               start: dt.date | None = None, end: dt.date | None = None, *, whole: bool = True) -> list[Series]:
    """Inpatient admissions per place (the patient's home region or district) and bucket: all of them, or
    those whose stay has a diagnosis in `syndrome`. Read from the views, so only where the analytics
    database is held (not from a snapshot)."""
    if level not in LEVELS:
        raise SeriesError(f"level '{level}': use {', '.join(LEVELS)}")
    con = _con(source)
    keys = LEVELS[level]
    cols = "".join(f"p.{k}, " for k in keys)
    join, params = "", []
    if syndrome is not None:
        join = ("JOIN (SELECT DISTINCT d.encounter FROM diagnosis d JOIN base_syndrome g ON d.icd10 >= g.low "
                "AND d.icd10 < g.high WHERE g.syndrome = ?) dx ON dx.encounter = s.id ")
        params.append(syndrome)
    rows = _fetch(con, f"SELECT {cols}ht_date(s.start) AS day, count(*) FROM inpatient_stay s "
                       f"JOIN base_person p ON p.id = s.patient {join}"
                       f"WHERE s.status IS DISTINCT FROM 'entered-in-error' AND ht_date(s.start) IS NOT NULL "
                       f"GROUP BY ALL", params)
    if not rows:
        return []
    span = record_days(con) or (min(r[len(keys)] for r in rows), max(r[len(keys)] for r in rows))
    starts = _buckets(start or span[0], end or span[1], interval, whole)
    grouped: dict[tuple[str, ...], dict[dt.date, float]] = {}
    for row in rows:
        cell = grouped.setdefault(tuple(row[:len(keys)]), {})
        b = bucket_start(row[len(keys)], interval)
        cell[b] = cell.get(b, 0) + int(row[-1])
    name = syndrome or "admissions"
    return [Series(key, name, interval, starts, [int(v) for v in vals])
            for key, vals in _regular(grouped, starts).items() if any(vals)]


__all__ = ["Occupancy", "Series", "SeriesError", "admissions", "counts", "daily_counts", "monthly_counts",
           "occupancy", "open_analytics", "record_days", "syndromes", "weekly_counts"]
