"""Incremental maintenance of the indicator tables: the changes since they were built, applied as a delta.

Every indicator's numerator and denominator is a sum over persons: a person's data (their Patient, conditions,
doses, encounters...) adds to the cells of their own region, sex and age, independently of anyone else's
(counting distinct persons in a cell is such a sum too). The materializer keeps a change journal: which
resources' rows changed since the indicator tables were last brought up to date, and those rows as they were
then and as they are now (`materialize.JOURNAL_IDS`). Each table is therefore corrected by

    table += f(new) - f(old)

evaluated over a small slice of the data. P is the set of persons whose per-person data changed: rows of any
view that is not an event view (Patient, Condition, Immunization, cause of death). Event views (encounter,
lab_result, medication_request, claim; `_base.json` lists them) are read by every indicator row by row, as a
count or sum over rows joined with the person, so a changed row of someone outside P moves the figures by its
own contribution alone. Each indicator declares, per measure, the event view it is such a sum over
(`"incremental"` in its JSON); the test `tests/analytics/test_cube_delta.py` checks every declaration against
a full rebuild. The slice holds, for the persons Q = P and the persons of changed event rows:

    new: the per-person views of Q; all event rows of P, and the changed event rows of the others, as now
    old: the same as they were (the journal's rows in place of the changed ones)

Persons of Q outside P have the same per-person rows in both, so every term that reads only those cancels,
and their event rows in the slice are exactly the changed ones: f(new) - f(old) is the change of the table.
(Two slices rather than four: evaluating P and the changed rows of others separately ran every query twice
as often.)

Each f is the indicator's own SQL, run unchanged over scratch schemas (in an in-memory database attached for
the purpose) in which the view names and the per-person base tables hold only the rows concerned: f(new) with
DuckDB's `search_path` at the `new` schema, f(old) with the names it reads bound to the `old` schema by common
table expressions, both in one statement (`_old_scope`); names not shadowed, such as the global `base_years`,
resolve to the real tables. The change is appended to the table (`_commit`), which is compacted now and then.

A full rebuild is needed instead (`FullRebuild`) when a view was rebuilt whole, a global base table changed
(new period years), an indicator is not declared incremental, or the changes reach more than MAX_SHARE of the
persons (a rebuild is then cheaper). The new tables, the per-person base tables and the cleared journal
commit in one transaction, so readers see the figures before or after, never half-way.
"""
from __future__ import annotations

import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb

from .materialize import JOURNAL_IDS, JOURNAL_NEW_PREFIX, JOURNAL_PREFIX, STATE_TABLE
from .materialize import _ident as _q

log = logging.getLogger("healthtwin.analytics")

WORK = "_ht_delta"  # the attached in-memory database holding the scratch schemas
THREADS = min(4, os.cpu_count() or 1)  # slices, then tables' changes, computed at once
MAX_SHARE = 0.25


class FullRebuild(Exception):
    """The journal cannot be applied as a delta; the message says why."""


def _sql(value: Any) -> str:
    """A definition's SQL, written in JSON as one string or a list of lines."""
    return "\n".join(value) if isinstance(value, list) else str(value)


def journal_views(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, int], set[str]]:
    """{view: number of changed resources}, and the views replaced whole, since the last update."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {JOURNAL_IDS} (view VARCHAR, id VARCHAR)")
    rows = con.execute(f"SELECT view, count(id), bool_or(id IS NULL) FROM {JOURNAL_IDS} GROUP BY view").fetchall()
    return {v: n for v, n, _ in rows}, {v for v, _, whole in rows if whole}


def clear_journal(con: duckdb.DuckDBPyConnection) -> None:
    """Empties the journal (inside the caller's transaction). Its tables stay, empty, for the next refresh: made
    again at each refresh they cost it a statement each (a view whose columns change is rebuilt whole, and
    that drops them)."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {JOURNAL_IDS} (view VARCHAR, id VARCHAR)")
    for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, ?) "
                               "OR starts_with(table_name, ?)", [JOURNAL_PREFIX, JOURNAL_NEW_PREFIX]).fetchall():
        con.execute(f"DELETE FROM {_q(name)}")
    con.execute(f"DELETE FROM {JOURNAL_IDS}")


def _base_names(sql: str, tables: dict[str, dict[str, Any]]) -> set[str]:
    """The base tables a query reads, directly or through other base tables (their names are reserved)."""
    found: set[str] = set()
    todo = set(re.findall(r"\bbase_[a-z0-9_]+\b", sql))
    while todo:
        name = todo.pop()
        if name in tables and name not in found:
            found.add(name)
            todo |= set(re.findall(r"\bbase_[a-z0-9_]+\b", _sql(tables[name]["sql"])))
    return found


class _Group:
    """Indicators that read the same per-person views: they share one person set and one set of schemas."""

    def __init__(self, tag: str, person_views: frozenset[str]) -> None:
        self.tag, self.person_views = tag, person_views
        self.views: set[str] = set(person_views)  # the views its indicators read other than through globals
        self.linear: set[str] = set()  # the event views its indicators' measures are row-by-row sums over
        self.base_tables: list[dict[str, Any]] = []  # the per-person base tables its indicators read
        self.needed: list[dict[str, Any]] = []  # those its slice must hold for this update (`_evaluate`)
        self.indicators: list[Any] = []
        self.persons = 0  # |P|
        self.touched = 0  # |Q|
        self.row_views: set[str] = set()  # its event views with changed rows

    def parts(self) -> list[tuple[Any, str, str, tuple[str, ...], str]]:
        """(indicator, num|den, measure, dimensions, sql) of each of its indicators' two tables."""
        return [(ind, part, measure, dims, sql) for ind in self.indicators
                for part, measure, dims, sql in (("num", "numerator", ind.dimensions, ind.numerator_sql),
                                                 ("den", "denominator", ind.denominator_dimensions,
                                                  ind.denominator_sql))]

    def schema(self, kind: str) -> str:
        return f"{WORK}.{kind}_{self.tag}"

    @property
    def p(self) -> str:
        return f"{WORK}.main.p_{self.tag}"

    @property
    def q(self) -> str:
        return f"{WORK}.main.q_{self.tag}"


class _Delta:
    """One application of the journal, on its own cursor (its search_path is changed freely)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, indicators: dict[str, Any], base: dict[str, Any],
                 changed: dict[str, int]) -> None:
        self.cur = con.cursor()
        self.indicators, self.base = indicators, base
        inc = base.get("incremental") or {}
        self.events = set(inc.get("event_views", ()))
        self.person_key = dict(inc.get("person_key", {}))
        self.default_key = str(inc.get("default_person_key", "patient"))
        self.views = sorted({v for i in indicators.values() for v in i.views})
        self.changed = {v: n for v, n in changed.items() if v in self.views}
        self.groups: dict[tuple[frozenset[str], bool], _Group] = {}
        for ind in indicators.values():
            own = frozenset(v for v in ind.views if v not in self.events)
            # Indicators that sum event rows apart from those that do not: the slice of the first holds everyone
            # with a changed event row, while the others (the population) need only the persons P.
            rows = any((ind.incremental or {}).values())
            group = self.groups.setdefault((own, rows), _Group(f"g{len(self.groups)}", own))
            group.indicators.append(ind)
            group.linear.update(v for v in ind.incremental.values() if v)
        by_name = {t["name"]: t for t in base["tables"]}
        for group in self.groups.values():
            group.views |= group.linear
            used = _base_names(" ".join(i.numerator_sql + " " + i.denominator_sql for i in group.indicators), by_name)
            group.base_tables = [t for t in base["tables"] if t["name"] in used and t.get("scope") != "global"]
            for t in group.base_tables:
                if not set(t["views"]) <= group.person_views:
                    # Per-person base tables are rebuilt for P from the slice, whose event rows of other
                    # persons are only their changed ones: they may read per-person views only.
                    raise FullRebuild(f"{t['name']} reads {t['views']}, beyond the per-person views declared by "
                                      f"{', '.join(i.name for i in group.indicators)}")
        self.timings: dict[str, float] = {}
        self.assigned: dict[str, str] = {}  # table -> the tag of the group that updates it (`_evaluate`)
        self._column_types: dict[str, dict[str, str]] | None = None
        self.db = _q(self.cur.execute("SELECT current_database()").fetchone()[0])

    def key(self, view: str) -> str:
        return _q(self.person_key.get(view, self.default_key))

    def run(self) -> dict[str, str]:
        cur = self.cur
        t0 = time.perf_counter()
        cur.execute(f"DETACH DATABASE IF EXISTS {WORK}")
        cur.execute(f"ATTACH ':memory:' AS {WORK}")
        try:
            self._check_globals()
            self._persons()
            self.timings["persons"] = time.perf_counter() - t0
            deltas, keyed = self._evaluate()
            self.timings["evaluate"] = time.perf_counter() - t0 - self.timings["persons"]
            self._commit(deltas, keyed)
        finally:
            cur.execute("SET search_path = 'main'")
            cur.execute(f"DETACH DATABASE IF EXISTS {WORK}")
            cur.close()
        self.timings["total"] = time.perf_counter() - t0
        return {name: "updated" for name in self.indicators}

    # -- what changed -----------------------------------------------------------------------------------
    def _check_globals(self) -> None:
        for table in self.base["tables"]:
            views = table.get("views")
            if table.get("scope") != "global" or (views is not None and not set(views) & set(self.changed)):
                continue  # a global table that declares no views is always compared
            name, sql = _q(table["name"]), _sql(table["sql"])
            differs = self.cur.execute(
                f"SELECT count(*) FROM ((SELECT * FROM ({sql}) EXCEPT ALL SELECT * FROM {name}) "
                f"UNION ALL (SELECT * FROM {name} EXCEPT ALL SELECT * FROM ({sql})))").fetchone()[0]
            if differs:
                raise FullRebuild(f"the global table {table['name']} changed")

    def _persons(self) -> None:
        """Each group's persons whose per-person data changed, into {WORK}.main.p_<group>."""
        cur = self.cur
        people = max(cur.execute("SELECT count(*) FROM base_person").fetchone()[0], 1)
        rows = cur.execute(f"SELECT sum(row_count) FROM {STATE_TABLE} WHERE name IN "
                           f"({', '.join('?' * len(self.changed))})", list(self.changed)).fetchone()[0] or 0
        if sum(self.changed.values()) > MAX_SHARE * max(rows, 1):
            raise FullRebuild(f"{sum(self.changed.values())} resources changed")
        for view in self.changed:
            if view in self.events:
                continue
            k = self.key(view)
            cur.execute(f"CREATE TABLE {WORK}.main.{_q('p_' + view)} AS SELECT DISTINCT CAST(id AS VARCHAR) AS id "
                        f"FROM (SELECT {k} AS id FROM {_q(JOURNAL_PREFIX + view)} UNION ALL SELECT {k} AS id FROM "
                        f"{_q(JOURNAL_NEW_PREFIX + view)}) WHERE id IS NOT NULL")
        for group in self.groups.values():
            sources = [f"SELECT id FROM {WORK}.main.{_q('p_' + v)}" for v in sorted(group.person_views)
                       if v in self.changed]
            union = " UNION ".join(sources) if sources else "SELECT NULL::VARCHAR AS id WHERE false"
            group.persons = cur.execute(f"CREATE TABLE {group.p} AS {union}").fetchone()[0]  # the rows it made
            if group.persons > MAX_SHARE * people:
                raise FullRebuild(f"{group.persons} of {people} persons changed")
            group.row_views = group.linear & set(self.changed)
            rows = [f"SELECT CAST({self.key(v)} AS VARCHAR) AS id FROM {_q(prefix + v)}"
                    for v in sorted(group.row_views) for prefix in (JOURNAL_PREFIX, JOURNAL_NEW_PREFIX)]
            group.touched = cur.execute(f"CREATE TABLE {group.q} AS SELECT id FROM {group.p}"
                                        + "".join(f" UNION {r} WHERE id IS NOT NULL" for r in rows)).fetchone()[0]

    # -- the scratch schemas ----------------------------------------------------------------------------
    def _schemas(self, cur: duckdb.DuckDBPyConnection, group: _Group) -> None:
        """The group's slice (see the module's docstring) in two schemas: `new` holds its views and per-person
        base tables as they are now; `old` the changed views as they were (the rows but the changed ones, and
        those as they were) and the base tables as they were. A keyed base table's old rows are the analytics
        database's own rows for the slice's persons: they are replaced only when this update commits, so they
        need not be computed again (recomputing them cost most of the old state's time)."""
        new, old = group.schema("new"), group.schema("old")
        in_p, in_q = f"IN (SELECT id FROM {group.p})", f"IN (SELECT id FROM {group.q})"
        cur.execute(f"CREATE SCHEMA {new}")
        cur.execute(f"CREATE SCHEMA {old}")
        for view in sorted(group.views):
            k, v = self.key(view), _q(view)
            if view in group.person_views:
                cur.execute(f"CREATE TABLE {new}.{v} AS SELECT * FROM {v} WHERE {k} {in_q}")
            elif view in group.row_views:  # P's rows, and the others' changed rows as they are now
                cur.execute(f"CREATE TABLE {new}.{v} AS SELECT * FROM {v} WHERE {k} {in_p} UNION ALL BY NAME "
                            f"SELECT * FROM {_q(JOURNAL_NEW_PREFIX + view)} WHERE {k} NOT {in_p}")
            else:
                cur.execute(f"CREATE TABLE {new}.{v} AS SELECT * FROM {v} WHERE {k} {in_p}")
            if view in self.changed:
                journal = f"SELECT * FROM {_q(JOURNAL_PREFIX + view)}"
                if view in group.person_views:
                    journal += f" WHERE {k} {in_q}"
                cur.execute(f"CREATE TABLE {old}.{v} AS SELECT * FROM {new}.{v} WHERE _rkey NOT IN "
                            f"(SELECT id FROM {JOURNAL_IDS} WHERE view = '{view}') UNION ALL BY NAME {journal}")
        try:
            cur.execute(f"SET search_path = '{new},main'")
            for table in group.needed:
                cur.execute(f"CREATE TABLE {new}.{_q(table['name'])} AS {_sql(table['sql'])}")
            cur.execute(f"SET search_path = '{old},{new},main'")  # an unchanged view is the same in both
            for table in group.needed:
                name = _q(table["name"])
                if "key" in table:
                    cur.execute(f"CREATE TABLE {old}.{name} AS SELECT * FROM {self.db}.main.{name} "
                                f"WHERE {_q(table['key'])} {in_q}")
                else:
                    cur.execute(f"CREATE TABLE {old}.{name} AS {_sql(table['sql'])}")
        finally:
            cur.execute("SET search_path = 'main'")

    def _old_scope(self, group: _Group, sql: str) -> str:
        """A WITH list binding the names `sql` reads to the old state (the `old` schema); run with the search
        path at `new`, the query reads the new state. Common table expressions shadow tables of the same name,
        so an indicator's own SQL, wrapped in `(WITH … SELECT * FROM (sql))`, runs unchanged on either side,
        and both sides and their difference are one statement: three statements per table (new, old,
        difference) cost 2–5 ms each to plan, whatever the size of the slice."""
        old = group.schema("old")
        names = [v for v in sorted(group.views) if v in self.changed] + [t["name"] for t in group.needed]
        ctes = [f"{_q(n)} AS (SELECT * FROM {old}.{_q(n)})" for n in names if re.search(rf"\b{re.escape(n)}\b", sql)]
        return "WITH " + ", ".join(ctes) if ctes else ""

    def _slice(self, group: _Group) -> list[tuple[_Group, str, list[str], str, str]]:
        """Builds one group's slice (on a cursor of its own: slices are built side by side) and returns the
        tables whose change it computes: (group, table, dimensions, measure, query)."""
        cur = self.cur.cursor()
        try:
            self._schemas(cur, group)
            cur.execute(f"CREATE SCHEMA {group.schema('delta')}")
        finally:
            cur.close()
        todo, seen = [], set()
        for ind, part, measure, dims, sql in self._evaluated(group):
            if ind.table(part) not in seen:  # a shared table once
                seen.add(ind.table(part))
                todo.append((group, ind.table(part), list(dims), measure, sql))
        for table in group.needed:  # additive base tables this group updates (see `_evaluate`)
            if "additive" in table and self._base_owner(table) is group and group.persons:
                measure = table["additive"]
                todo.append((group, table["name"], [c for c in self._columns(table["name"]) if c != measure],
                             measure, f"SELECT * FROM {_q(table['name'])}"))
        return todo

    def _change(self, item: tuple[_Group, str, list[str], str, str]) -> tuple[str, list[str], str, str, int] | None:
        """One table's change per cell into the group's `delta` schema, on a cursor of its own: the tables are
        computed side by side whatever their group (one group, that of the event views, holds most of them),
        and here rather than in the commit's one serial transaction, which then only adds small tables and
        skips empty ones. None if nothing changed."""
        group, table, dims, measure, sql = item
        target = f"{group.schema('delta')}.{_q(table)}"
        terms = [(f"({sql})", 1), (f"({self._old_scope(group, sql)} SELECT * FROM ({sql}))", -1)]
        cur = self.cur.cursor()
        try:
            cur.execute(f"SET search_path = '{group.schema('new')},main'")
            rows = cur.execute(f"CREATE TABLE {target} AS {self._delta(table, dims, measure, terms)}").fetchone()[0]
            return (table, dims, measure, target, rows) if rows else None
        finally:
            cur.close()

    def _evaluated(self, group: _Group) -> list[tuple[Any, str, str, tuple[str, ...], str]]:
        """The parts whose change the group computes: those of the tables assigned to it that can have moved
        (without per-person changes only the measures summed over changed event rows can)."""
        return [(ind, part, measure, dims, sql) for ind, part, measure, dims, sql in group.parts()
                if self.assigned[ind.table(part)] == group.tag
                and (group.persons or ind.incremental.get(measure) in group.row_views)]

    def _base_owner(self, table: dict[str, Any]) -> _Group | None:
        """The group whose slice updates a per-person base table: of those reading it, the one with the smallest
        slice. Any of them would do: a group's persons P include all whose rows of the views it reads changed."""
        groups = [g for g in self.groups.values() if table in g.base_tables]
        return min(groups, key=lambda g: (g.touched, g.persons)) if groups else None

    def _evaluate(self) -> tuple[list[tuple[str, list[str], str, str, int]], list[tuple[str, str, str, str]]]:
        """The change of every table: [(table, dims, measure, the change per cell, its rows)], and the keyed base
        tables' replacement rows: [(table, key, person set, rows)]; both in the scratch database."""
        groups = [g for g in self.groups.values() if g.touched]
        # A table several indicators share (the same query: see indicators._share_tables) is evaluated and
        # added to once, by the group with the smallest slice among those reading it. Each of them sees every
        # change of it: a group's persons are those of all the views its indicators read.
        self.assigned = {}
        for group in sorted(groups, key=lambda g: (g.touched, g.tag)):
            for ind, part, *_ in group.parts():
                self.assigned.setdefault(ind.table(part), group.tag)
        self._read_types()  # once, before the threads share them
        # Each slice holds only the base tables its own queries read, and those it updates: the event group's
        # persons are many (everyone with a changed event row), and it built the population tables over all of
        # them for the denominators that a smaller group now computes.
        by_name = {t["name"]: t for t in self.base["tables"]}
        for group in groups:
            needed = _base_names(" ".join(sql for *_, sql in self._evaluated(group)), by_name)
            for table in group.base_tables:
                if self._base_owner(table) is group:
                    needed |= {table["name"]} | _base_names(_sql(table["sql"]), by_name)
            group.needed = [t for t in group.base_tables if t["name"] in needed]
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            todo = [item for items in pool.map(self._slice, groups) for item in items]
            deltas = [d for d in pool.map(self._change, todo) if d is not None]
        keyed = []
        for table in self.base["tables"]:
            if table.get("scope") == "global":
                continue
            group = self._base_owner(table)
            if group is None:  # read by no indicator: recomputed whole in the commit
                keyed.append((table["name"], "", "", _sql(table["sql"])))
                continue
            if not group.persons:
                continue
            if "additive" in table:
                continue  # its change was computed with the indicators' (`_slice`)
            name = table["name"]
            rows = f"{group.schema('new')}.{_q(name)}"
            # replaced for P (the others in the slice have the same rows)
            keyed.append((name, table["key"], group.p,
                          f"(SELECT * FROM {rows} WHERE {_q(table['key'])} IN (SELECT id FROM {group.p}))"))
        return deltas, keyed

    def _read_types(self) -> dict[str, dict[str, str]]:
        """{table: {column: type}} of the analytics database's tables, read in one statement, once."""
        if self._column_types is None:
            self._column_types = {}
            for t, c, ty in self.cur.execute("SELECT table_name, column_name, data_type FROM duckdb_columns() "
                                             "WHERE database_name = current_database() AND schema_name = 'main' "
                                             "ORDER BY table_name, column_index").fetchall():
                self._column_types.setdefault(t, {})[c] = ty
        return self._column_types

    def _types(self, table: str) -> dict[str, str]:
        """{column: type} of a table in the analytics database."""
        return self._read_types()[table]

    def _columns(self, table: str) -> list[str]:
        return list(self._types(table))

    def _delta(self, table: str, dims: Any, measure: str, terms: list[tuple[str, int]]) -> str:
        """A query: the terms summed per cell, in the table's measure type; cells whose change is 0 left out."""
        mtype = self._types(table)[measure]
        cols = ", ".join(_q(d) for d in dims)
        m = _q(measure)
        union = " UNION ALL ".join(f"SELECT {cols}, {'-' if sign < 0 else ''}{m} AS {m} FROM {term}"
                                   for term, sign in terms)
        return (f"(SELECT {cols}, CAST(sum({m}) AS {mtype}) AS {m} FROM ({union}) GROUP BY ALL "
                f"HAVING sum({m}) <> 0)")

    # -- commit -----------------------------------------------------------------------------------------
    def _commit(self, deltas: list[tuple[str, list[str], str, str, int]],
                keyed: list[tuple[str, str, str, str]]) -> None:
        """Every change in place, in one transaction. The change of an additive table is appended to it as rows
        of its own (a cell then has several rows, which every reader sums: `compute`): a MERGE into the cells
        cost 3–20 ms a table, mostly to plan its join on every dimension, an INSERT well under one. A table is
        compacted (one row per cell, none that sums to 0, as a full build leaves it) once the rows appended
        since it was last built or compacted pass COMPACT_RATIO of its cells."""
        from .indicators import CUBE_STATE
        cur = self.cur
        t0 = time.perf_counter()
        cur.execute("BEGIN TRANSACTION")
        try:
            ensure_rows_state(cur)
            state = {name: (cells, appended) for name, cells, appended in cur.execute(
                f"SELECT name, cells, appended FROM {CUBE_ROWS}").fetchall()}
            for table, dims, measure, delta, rows in deltas:
                cur.execute(f"INSERT INTO {_q(table)} BY NAME SELECT * FROM {delta}")
                if table not in state:  # built before this state was kept
                    state[table] = (cur.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0] - rows, 0)
                cells, appended = state[table][0], state[table][1] + rows
                if appended > COMPACT_RATIO * max(cells, 1000):
                    cells, appended = compact(cur, table, dims, measure), 0
                state[table] = (cells, appended)
            if deltas:  # one statement: INSERT OR REPLACE costs about a millisecond each
                touched = [(t, *state[t]) for t in sorted({d[0] for d in deltas})]
                cur.execute(f"DELETE FROM {CUBE_ROWS} WHERE name IN ({', '.join('?' * len(touched))})",
                            [t for t, *_ in touched])
                cur.execute(f"INSERT INTO {CUBE_ROWS} VALUES {', '.join(['(?, ?, ?)'] * len(touched))}",
                            [v for row in touched for v in row])
            for table, key, persons, rows in keyed:
                if not key:
                    cur.execute(f"CREATE OR REPLACE TABLE {_q(table)} AS {rows}")
                    continue
                cur.execute(f"DELETE FROM {_q(table)} WHERE {_q(key)} IN (SELECT id FROM {persons})")
                cur.execute(f"INSERT INTO {_q(table)} BY NAME SELECT * FROM {rows}")
            cur.execute(f"UPDATE {CUBE_STATE} SET built_at = ?", [time.time()])
            clear_journal(cur)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self.timings["commit"] = time.perf_counter() - t0


# -- additive tables with appended changes ---------------------------------------------------------------------
CUBE_ROWS = "_ht_cube_rows"  # per additive table: its cells when last built or compacted, rows appended since
COMPACT_RATIO = 0.25


def ensure_rows_state(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE TABLE IF NOT EXISTS {CUBE_ROWS} (name VARCHAR PRIMARY KEY, cells BIGINT, appended BIGINT)")


def built(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Records that `table` was just built whole: one row per cell, nothing appended."""
    ensure_rows_state(con)
    cells = con.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]
    con.execute(f"INSERT OR REPLACE INTO {CUBE_ROWS} VALUES (?, ?, 0)", [table, cells])


def _cells(table: str, dims: list[str], measure: str, mtype: str) -> str:
    """A query: `table` as its readers see it, one row per cell, cells that sum to 0 left out."""
    m, cols = _q(measure), ", ".join(_q(d) for d in dims)
    return f"SELECT {cols}, CAST(sum({m}) AS {mtype}) AS {m} FROM {_q(table)} GROUP BY ALL HAVING sum({m}) <> 0"


def compact(con: duckdb.DuckDBPyConnection, table: str, dims: list[str], measure: str) -> int:
    """Folds the appended rows of `table` into one row per cell, leaving out cells that sum to 0; returns the
    number of cells."""
    mtype = con.execute("SELECT data_type FROM duckdb_columns() WHERE database_name = current_database() AND "
                        "schema_name = 'main' AND table_name = ? AND column_name = ?", [table, measure]).fetchone()[0]
    con.execute(f"CREATE OR REPLACE TABLE {_q(table)} AS {_cells(table, dims, measure, mtype)}")
    return con.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]


def read_cells(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[Any, ...]]:
    """The rows of an indicator or base table as its readers see them: a table of sums (its last column the
    numerator or denominator) one row per cell, as compacted; any other table as it is. For comparing tables
    updated with appended changes against a rebuild (tests, bench)."""
    columns = [(name, ty) for name, ty, *_ in con.execute(f"DESCRIBE {_q(table)}").fetchall()]
    measure, mtype = columns[-1]
    if measure not in ("numerator", "denominator"):
        return con.execute(f"SELECT * FROM {_q(table)}").fetchall()
    return con.execute(_cells(table, [c for c, _ in columns[:-1]], measure, mtype)).fetchall()


def apply_journal(con: duckdb.DuckDBPyConnection, indicators: dict[str, Any], base: dict[str, Any]) -> dict[str, str]:
    """Brings every indicator table up to date with the change journal, or raises FullRebuild.

    The caller has checked that every indicator's tables exist and are of its current definition."""
    changed, whole = journal_views(con)
    if whole:
        raise FullRebuild(f"views rebuilt whole: {', '.join(sorted(whole))}")
    missing = [i.name for i in indicators.values() if i.incremental is None]
    if missing and changed:
        raise FullRebuild(f"not declared incremental: {', '.join(missing)}")
    delta = _Delta(con, indicators, base, changed)
    if not delta.changed:
        if changed:  # only views no indicator reads
            con.execute("BEGIN TRANSACTION")
            clear_journal(con)
            con.execute("COMMIT")
        delta.cur.close()
        return {name: "current" for name in indicators}
    result = delta.run()
    log.info("indicator tables updated from %d changed resources in %.3fs (%s)", sum(delta.changed.values()),
             delta.timings["total"], ", ".join(f"{k} {v:.3f}s" for k, v in delta.timings.items()))
    return result


__all__ = ["FullRebuild", "apply_journal", "built", "clear_journal", "compact", "journal_views", "read_cells",
           "MAX_SHARE", "COMPACT_RATIO", "CUBE_ROWS"]
