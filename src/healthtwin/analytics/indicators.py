"""National indicators: versioned definitions, the tables computed from the materialized views, and queries.

Definitions live in the folder `indicators/` next to this module (it has no `__init__.py`, so this module, not
the folder, is `healthtwin.analytics.indicators`):

* `<view>.view.json`: the SQL on FHIR ViewDefinitions that are materialized (see `materialize.py`);
* `_base.json`: DuckDB macros and base tables every indicator builds on (persons, mid-year population...);
* `<name>.indicator.json`: one indicator: a definition for a reader (numerator, denominator, period, source),
  its dimensions and measure, and two DuckDB queries over the materialized tables.

Why pre-aggregated tables: a drill-down must answer in milliseconds for a population of millions, but the
event tables hold tens of millions of rows. Each indicator's queries are therefore run at refresh time into
two small additive tables at the finest grain (`ind_<name>_num`, `ind_<name>_den`: region, district, sex,
single year of age, period and the indicator's own dimensions; a query several indicators have in common,
such as the mid-year population, is kept once: `_share_tables`). A request sums them along its filters and
breakdown, which touches at most a few hundred thousand rows.
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import orjson

from .cube_delta import FullRebuild, _sql, apply_journal, built, clear_journal, journal_views
from .materialize import _ident
from .periods import INTERVALS, LABEL_SQL, PeriodError, choose_interval, parse_period

log = logging.getLogger("healthtwin.analytics")

FOLDER = Path(__file__).with_name("indicators")
DEFAULT_THRESHOLD = 5
CUBE_STATE = "_ht_cube_state"
POPULATION_DIMS = ("region", "district", "sex", "age", "period")
# Values are multiplied by these to give the indicator's unit.
SCALE = {"count": None, "percent": 100.0, "per_1000": 1000.0, "per_100000": 100000.0, "ratio": 1.0}


class IndicatorError(ValueError):
    """A bad request for an indicator (unknown dimension, malformed filter); `location` names the parameter."""

    def __init__(self, message: str, location: str = "") -> None:
        super().__init__(message)
        self.location = location


@dataclass(frozen=True)
class Indicator:
    name: str
    version: str
    title: str
    description: str
    definition: dict[str, str]
    views: tuple[str, ...]
    dimensions: tuple[str, ...]
    denominator_dimensions: tuple[str, ...]
    required_by: tuple[str, ...]
    default_by: tuple[str, ...]
    measure: dict[str, str]
    suppress: tuple[str, ...]
    numerator_sql: str
    denominator_sql: str
    digest: str = field(compare=False)
    # per measure, the event view it is a row-by-row sum over (or None); None: not maintained incrementally
    incremental: dict[str, str | None] | None = field(default=None, compare=False)
    # the tables holding its numerator and denominator cells (see `_share_tables`)
    tables: tuple[str, str] = field(default=("", ""), compare=False)
    # "year": period is the calendar year (an integer); "day": a DATE, summed into the request's interval
    period_grain: str = "year"
    intervals: tuple[str, ...] = INTERVALS  # the intervals a day-grain indicator may be summed into

    def summary(self) -> dict[str, Any]:
        out = self._summary()
        out["period_grain"] = self.period_grain
        if self.period_grain == "day":
            out["intervals"] = list(self.intervals)
        return out

    def table(self, part: str) -> str:
        """The table of `part` ('num' or 'den')."""
        return self.tables[0 if part == "num" else 1]

    def _summary(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "title": self.title, "description": self.description,
                "definition": self.definition, "dimensions": list(self.dimensions), "default_by": list(self.default_by),
                "required_by": list(self.required_by), "measure": self.measure, "views": list(self.views)}


def load_indicators(folder: Path = FOLDER) -> dict[str, Indicator]:
    """The indicators of `folder`, their SQL with the settings of `_base.json` filled in (`settings`)."""
    return _load(folder, settings(folder))


def settings(folder: Path = FOLDER) -> tuple[tuple[str, str], ...]:
    """The placeholders `{{name}}` of the indicators' SQL and their text in this process, from `_base.json`
    "settings": each setting reads its environment variable (the default when unset) and gives its own name
    the chosen value, and each of that value's entries its text. The immunization indicators follow the
    schedule the live registry keeps this way (HEALTHTWIN_IMMUNIZATION_SCHEDULE: the recommendations' tag and
    the schedule's CVX table) without this layer importing the registry; an unknown value is refused with
    the allowed ones, as the server and the refresh refuse it."""
    out: list[tuple[str, str]] = []
    for name, setting in sorted((_base(folder).get("settings") or {}).items()):
        values = setting["values"]
        text = os.environ.get(setting["env"], "").strip().lower() or setting["default"]
        if text not in values:
            raise ValueError(f"{setting['env']} is one of {', '.join(sorted(values))}, not {text!r}")
        out.append((name, text))
        out.extend(sorted(values[text].items()))
    return tuple(out)


_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def _fill(sql: str, values: dict[str, str], file: str) -> str:
    def one(match: re.Match) -> str:
        if match.group(1) not in values:
            raise ValueError(f"{file}: {{{{{match.group(1)}}}}} is no setting of _base.json")
        return values[match.group(1)]
    return _PLACEHOLDER.sub(one, sql)


@lru_cache(maxsize=8)
def _load(folder: Path, chosen: tuple[tuple[str, str], ...]) -> dict[str, Indicator]:
    base = (folder / "_base.json").read_bytes()
    values = dict(chosen)
    out = {}
    for path in sorted(folder.glob("*.indicator.json")):
        raw = orjson.loads(path.read_bytes())
        numerator = _fill(_sql(raw["numerator_sql"]), values, path.name)
        denominator = _fill(_sql(raw["denominator_sql"]), values, path.name)
        # the SQL as run: a setting changed (another schedule) is another definition, rebuilt from scratch
        digest = hashlib.sha256(path.read_bytes() + base + orjson.dumps([numerator, denominator])).hexdigest()[:16]
        dims = tuple(raw["dimensions"])
        if "period" not in dims or not set(raw["denominator_dimensions"]) <= set(dims):
            raise ValueError(f"{path.name}: dimensions must include period and contain the denominator's")
        out[raw["name"]] = Indicator(
            raw["name"], raw["version"], raw["title"], raw["description"], raw["definition"], tuple(raw["views"]),
            dims, tuple(raw["denominator_dimensions"]), tuple(raw.get("required_by", ())),
            tuple(raw.get("default_by", ())), raw["measure"], tuple(raw.get("suppress", ("numerator", "denominator"))),
            numerator, denominator, digest, _incremental(path.name, raw),
            period_grain=raw.get("period_grain", "year"), intervals=tuple(raw.get("intervals", INTERVALS)))
        if out[raw["name"]].period_grain not in ("year", "day"):
            raise ValueError(f"{path.name}: period_grain is 'year' or 'day'")
    return _share_tables(out)


def _share_tables(indicators: dict[str, Indicator]) -> dict[str, Indicator]:
    """Names each indicator's two tables, `ind_<name>_num` and `ind_<name>_den`, except that parts with the
    same query and dimensions in several indicators (seven divide by the same mid-year population) share one
    table, `ind__shared_<part>_<hash of the query>`: it is built, updated and snapshotted once, not seven times."""
    keys: dict[str, list[tuple[str, str]]] = {}
    for ind in indicators.values():
        for part, sql, dims in (("num", ind.numerator_sql, ind.dimensions),
                                ("den", ind.denominator_sql, ind.denominator_dimensions)):
            key = hashlib.sha256(orjson.dumps([part, " ".join(sql.split()), dims])).hexdigest()[:12]
            keys.setdefault(key, []).append((ind.name, part))
    table = {}
    for key, users in keys.items():
        for name, part in users:
            table[name, part] = f"ind__shared_{part}_{key}" if len(users) > 1 else f"ind_{name}_{part}"
    return {name: replace(ind, tables=(table[name, "num"], table[name, "den"])) for name, ind in indicators.items()}


def _incremental(file: str, raw: dict[str, Any]) -> dict[str, str | None] | None:
    inc = raw.get("incremental")
    if inc is None:
        return None
    events = set((_base().get("incremental") or {}).get("event_views", ()))
    out = {m: inc.get(m) for m in ("numerator", "denominator")}
    for measure, view in out.items():
        if view is not None and view not in events:
            raise ValueError(f"{file}: incremental.{measure} names '{view}', which is not an event view of _base.json")
    return out


@lru_cache(maxsize=4)
def _base(folder: Path = FOLDER) -> dict[str, Any]:
    return orjson.loads((folder / "_base.json").read_bytes())


def indicator_views(folder: Path = FOLDER) -> list[dict[str, Any]]:
    """The ViewDefinitions the indicators read, as stored in the project."""
    return [orjson.loads(p.read_bytes()) for p in sorted(folder.glob("*.view.json"))]


# -- building the indicator tables ------------------------------------------------------------------------------
def build_cubes(con: duckdb.DuckDBPyConnection, force: bool = False,
                indicators: dict[str, Indicator] | None = None) -> dict[str, str]:
    """Brings the indicator tables up to date; returns {name: "built" | "updated" | "current" | "failed: …"}.

    Normally the changes the materializer journalled since the last call are applied as a delta
    (`cube_delta.py`: "updated"). Tables that are missing or of an older definition, `force`, or changes a
    delta cannot follow make a full rebuild ("built").
    """
    indicators = indicators if indicators is not None else load_indicators()
    con.execute(f"CREATE TABLE IF NOT EXISTS {CUBE_STATE} (name VARCHAR PRIMARY KEY, digest VARCHAR, "
                "version VARCHAR, built_at DOUBLE)")
    state = dict(con.execute(f"SELECT name, digest FROM {CUBE_STATE}").fetchall())
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    stale = [i for i in indicators.values()
             if force or state.get(i.name) != i.digest or not set(i.tables) <= tables]
    changed, _ = journal_views(con)
    if not stale:
        try:
            return apply_journal(con, indicators, _base())
        except FullRebuild as why:
            log.info("indicator tables rebuilt whole: %s", why)
        except duckdb.Error as exc:
            log.warning("the indicator tables could not follow the changes (%s); rebuilding them whole", exc)
        stale = list(indicators.values())
    elif changed:
        stale = list(indicators.values())  # the others' figures would miss the journalled changes
    return _build(con, stale, {i.name: "current" for i in indicators.values() if i not in stale}, indicators)


def _build(con: duckdb.DuckDBPyConnection, todo: list[Indicator], result: dict[str, str],
           indicators: dict[str, Indicator]) -> dict[str, str]:
    """Recomputes the base tables, then each indicator's two tables into staging tables swapped in with its
    state row in one transaction, so a failing indicator keeps its previous figures (and is retried whole
    next time: its state says 'failed')."""
    # First, in one step: these indicators are being rebuilt and the journal restarts from here. Should the
    # process stop half-way, the rest are rebuilt next time rather than updated from a journal that is gone.
    con.execute("BEGIN TRANSACTION")
    try:
        for ind in todo:
            con.execute(f"INSERT OR REPLACE INTO {CUBE_STATE} VALUES (?, 'building', ?, ?)",
                        [ind.name, ind.version, time.time()])
        clear_journal(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    base = _base()
    for macro in base["macros"]:
        con.execute(macro)
    base_error = None
    for table in base["tables"]:
        try:
            con.execute(f"CREATE OR REPLACE TABLE {table['name']} AS {_sql(table['sql'])}")
            if "additive" in table:  # updates are appended to it (cube_delta.py)
                built(con, table["name"])
        except duckdb.Error as exc:
            base_error = base_error or f"failed: base table {table['name']}: {exc}"
    done: set[str] = set()  # tables built in this call (a shared table once)
    for ind in todo:
        if base_error:
            result[ind.name] = base_error
            continue
        parts = [(part, ind.table(part)) for part in ("num", "den") if ind.table(part) not in done]
        try:
            # Cells that sum to 0 are left out, as the incremental update leaves them out.
            for part, _ in parts:
                measure, sql = ("numerator", ind.numerator_sql) if part == "num" else ("denominator",
                                                                                         ind.denominator_sql)
                con.execute(f"CREATE OR REPLACE TABLE _ht_stage_{part} AS SELECT * FROM ({sql}) WHERE {measure} <> 0")
            _check_columns(con, ind, [part for part, _ in parts])
            con.execute("BEGIN TRANSACTION")
            try:
                for part, table in parts:
                    con.execute(f"DROP TABLE IF EXISTS {table}")
                    con.execute(f"ALTER TABLE _ht_stage_{part} RENAME TO {table}")
                con.execute(f"INSERT OR REPLACE INTO {CUBE_STATE} VALUES (?, ?, ?, ?)",
                            [ind.name, ind.digest, ind.version, time.time()])
                for _, table in parts:
                    built(con, table)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            done.update(table for _, table in parts)
            result[ind.name] = "built"
        except (duckdb.Error, IndicatorError) as exc:
            result[ind.name] = f"failed: {exc}"
    for name, outcome in result.items():
        if outcome.startswith("failed"):
            con.execute(f"UPDATE {CUBE_STATE} SET digest = 'failed' WHERE name = ?", [name])
    # Tables no indicator uses any more (a definition removed, or a part now shared) would only take room and
    # be copied into every snapshot.
    used = {t for i in indicators.values() for t in i.tables}
    for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                                "AND schema_name = 'main' AND starts_with(table_name, 'ind_')").fetchall():
        if table not in used:
            con.execute(f"DROP TABLE {_ident(table)}")
    return result


def _check_columns(con: duckdb.DuckDBPyConnection, ind: Indicator, parts: list[str]) -> None:
    for part, dims, measure in (("num", ind.dimensions, "numerator"), ("den", ind.denominator_dimensions, "denominator")):
        if part not in parts:
            continue
        cols = [r[0] for r in con.execute(f"DESCRIBE _ht_stage_{part}").fetchall()]
        if sorted(cols) != sorted([*dims, measure]):
            raise IndicatorError(f"{ind.name}: the {measure} query gives columns {cols}, expected {[*dims, measure]}")


# -- answering a request ------------------------------------------------------------------------------------------
_RANGE = re.compile(r"^(\d{1,3})(?:-(\d{1,3})|(\+))?$")
_YEARS = re.compile(r"^(\d{4})(?:-(\d{4}))?$")
AGE_BAND = "CASE WHEN age >= 85 THEN '85+' ELSE CAST(age // 5 * 5 AS VARCHAR) || '-' || CAST(age // 5 * 5 + 4 AS VARCHAR) END"


@dataclass
class Query:
    by: list[str]
    filters: dict[str, list[Any]]  # dimension -> values (age and period: [low, high])
    interval: str = "year"  # the buckets of a day-grain indicator's periods (periods.py)
    period_text: str | None = None  # the period as requested


def parse_query(ind: Indicator, params: dict[str, str]) -> Query:
    """`by=a,b` chooses the breakdown; any dimension may filter: region, district, sex, age (a-b, a+, a),
    period (YYYY or YYYY-YYYY), and the indicator's own (comma-separated values)."""
    by: list[str] = []
    raw_by = params.get("by")
    for dim in (raw_by.split(",") if raw_by else ind.default_by):
        dim = dim.strip()
        if not dim:
            continue
        if dim not in ind.dimensions:
            raise IndicatorError(f"'{dim}' is not a dimension of {ind.name}; use one of {', '.join(ind.dimensions)}", "by")
        if dim not in by:
            by.append(dim)
    for dim in ("period", *ind.required_by):  # figures are never summed across periods or non-additive dims
        if dim not in by:
            by.insert(0, dim) if dim == "period" else by.append(dim)
    filters: dict[str, list[Any]] = {}
    interval, period_text = "year", None
    if ind.period_grain == "day":
        try:
            period_text = params.get("period")
            span = parse_period(period_text) if period_text is not None else None
            interval = choose_interval(span, params.get("interval"), ind.intervals)
        except PeriodError as exc:
            raise IndicatorError(str(exc), "interval" if str(exc).startswith("interval") else "period") from None
        if span is not None:
            filters["period"] = [span.first, span.last]
    elif "interval" in params:
        raise IndicatorError(f"{ind.name} is a yearly indicator: it takes no interval", "interval")
    for key, value in params.items():
        if key in ("by", "format", "threshold", "interval"):
            continue
        if key == "period" and ind.period_grain == "day":
            continue
        if key not in ind.dimensions:
            raise IndicatorError(f"unknown parameter '{key}' for {ind.name}; dimensions are {', '.join(ind.dimensions)}",
                                 key)
        if key == "age":
            m = _RANGE.match(value.strip())
            if not m:
                raise IndicatorError(f"age '{value}': use a range such as 0-14, 65+ or 40", "age")
            low = int(m.group(1))
            high = 200 if m.group(3) else int(m.group(2) or low)
            if high < low:
                raise IndicatorError(f"age '{value}': the range is empty", "age")
            filters["age"] = [low, high]
        elif key == "period":
            m = _YEARS.match(value.strip())
            if not m:
                raise IndicatorError(f"period '{value}': use a year (2023) or a range of years (2020-2023)", "period")
            filters["period"] = [int(m.group(1)), int(m.group(2) or m.group(1))]
        else:
            filters[key] = [v.strip() for v in value.split(",") if v.strip()]
    return Query(by, filters, interval, period_text)


def _where(filters: dict[str, list[Any]], dims: tuple[str, ...]) -> tuple[str, list[Any]]:
    conds, params = ["TRUE"], []
    for dim, values in filters.items():
        if dim not in dims:
            continue  # e.g. a region filter on a national denominator
        if dim in ("age", "period"):
            conds.append(f"{dim} BETWEEN ? AND ?")
        else:
            conds.append(f'"{dim}" IN ({", ".join("?" * len(values))})')
        params += values
    return " AND ".join(conds), params


def compute(con: duckdb.DuckDBPyConnection, ind: Indicator, params: dict[str, str],
            threshold: int = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The figures of one indicator for a request's filters and breakdown, with small cells suppressed."""
    q = parse_query(ind, params)
    cur = con.cursor()  # a cursor per request: DuckDB connections are not shared between threads
    exprs = {d: (AGE_BAND if d == "age" else f'"{d}"') for d in q.by}
    if ind.period_grain == "day":
        exprs["period"] = LABEL_SQL[q.interval].format(col='"period"')
    den_by = [d for d in q.by if d in ind.denominator_dimensions]
    num_only = [d for d in q.by if d not in ind.denominator_dimensions]
    nw, np_ = _where(q.filters, ind.dimensions)
    dw, dp = _where(q.filters, ind.denominator_dimensions)

    def sel(dims: list[str]) -> str:
        return ", ".join(f'{exprs[d]} AS "{d}"' for d in dims)

    def grp(dims: list[str], measure: str, table: str, where: str) -> str:
        # A cell may have several rows (updates are appended: cube_delta.py), so everything is summed, and sums
        # of 0 are left out, as a full build leaves out cells of 0 (the measures are counts and amounts, never
        # negative, so a sum of built cells is 0 only where there are none).
        cols = sel(dims) + ", " if dims else ""
        return (f"SELECT {cols}sum({measure}) AS {measure} FROM {table} WHERE {where}"
                + (f" GROUP BY ALL HAVING sum({measure}) <> 0" if dims else ""))

    keys = (f"(SELECT DISTINCT {', '.join(f'{chr(34)}{d}{chr(34)}' for d in num_only)} FROM n)" if num_only
            else "(SELECT 1 AS _one)")
    cells = f"SELECT * FROM d CROSS JOIN {keys}" if den_by else f"SELECT * FROM {keys}, d"
    using = ", ".join(f'"{d}"' for d in q.by)
    sql = (f"WITH n AS ({grp(q.by, 'numerator', ind.table('num'), nw)}), "
           f"d AS ({grp(den_by, 'denominator', ind.table('den'), dw)}), "
           f"c AS ({cells}) "
           f"SELECT {using}, coalesce(n.numerator, 0) AS numerator, coalesce(c.denominator, 0) AS denominator "
           f"FROM c FULL OUTER JOIN n USING ({using})")
    try:
        rows = cur.execute(sql, np_ + dp).fetchall()
    except duckdb.CatalogException:
        raise IndicatorError(f"{ind.name} has not been computed yet: run a refresh (healthtwin views materialize)",
                             "") from None
    finally:
        cur.close()
    rows.sort(key=lambda r: tuple(_order(d, v) for d, v in zip(q.by, r)))  # age bands in numeric order
    scale = SCALE.get(ind.measure.get("type", "ratio"), 1.0)
    figures = []
    for row in rows:
        cell = dict(zip(q.by, row[:len(q.by)]))
        num, den = row[-2], row[-1]
        num = float(num) if isinstance(num, float) or not float(num).is_integer() else int(num)
        den = int(den) if den is not None else 0
        small = [m for m, v in (("numerator", num), ("denominator", den)) if m in ind.suppress and 0 < v < threshold]
        if scale is None:
            value: float | int | None = num
        else:
            value = round(num / den * scale, 4) if den else None
        fig: dict[str, Any] = {**cell, "numerator": num, "denominator": den, "value": value, "suppressed": bool(small)}
        if small:
            fig["numerator"] = None
            fig["value"] = None
            if den < threshold:
                fig["denominator"] = None
        figures.append(fig)
    return {"indicator": ind.name, "version": ind.version, "title": ind.title, "definition": ind.definition,
            "measure": ind.measure, "by": q.by,
            "filters": {k: (q.period_text if k == "period" and q.period_text is not None else
                            "-".join(map(str, v)) if k in ("age", "period") else v) for k, v in q.filters.items()},
            **({"interval": q.interval} if ind.period_grain == "day" else {}),
            "threshold": threshold, "figures": figures}


def _order(dim: str, value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, "")
    if dim == "age":
        return (0, int(re.match(r"\d+", str(value)).group()))  # type: ignore[union-attr]
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def to_csv(result: dict[str, Any]) -> str:
    buf = io.StringIO()
    cols = [*result["by"], "numerator", "denominator", "value", "suppressed"]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for fig in result["figures"]:
        w.writerow(["" if fig.get(c) is None else fig.get(c) for c in cols])
    return buf.getvalue()


__all__ = ["Indicator", "IndicatorError", "load_indicators", "indicator_views", "build_cubes", "compute", "to_csv",
           "DEFAULT_THRESHOLD"]
