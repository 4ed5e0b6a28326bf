"""Running searches: the page of matches, _total, _include/_revinclude (with :iterate) and $everything."""
from __future__ import annotations

from typing import Sequence

import orjson

from ..fhir.model import definition
from ..fhir.search_query import Include, SearchQuery
from .records import Page, Stored
from .search_sql import _RANK, MAX_INCLUDES, SearchCompiler, SortWalk, _in, alias_pids

_COLS = "r0.type, r0.id, r0.version, r0.last_updated, r0.deleted, r0.content, r0.rid"
MAX_ITERATE = 4


def _row(store, row) -> tuple[int, Stored]:
    return row[6], store.stored(row)


def _index_count(compiler: SearchCompiler, query: SearchQuery, driver) -> tuple[str, list] | None:
    """The count of a search driven by an index range, from the index alone where its other criteria are
    probes: they correlate on the index's row id, and index rows exist only for live resources of the
    parameter's type, so no resource row is read. None where another criterion needs the resource's row."""
    index_sql, rest = driver
    if not compiler.probes_only(rest):
        return None
    table, cond = index_sql.text().split("|", 1)
    probes = compiler.conditions(rest, query.types, "d", drive=False)
    return (f"SELECT COUNT(*) FROM {table} WHERE {cond}" + (f" AND {probes.text()}" if rest else ""),
            list(index_sql.params) + list(probes.params))


def _source(store, compiler: SearchCompiler, query: SearchQuery):
    """(FROM, WHERE text, its parameters, the row id column, the index driver or None) of the general plan."""
    driver = compiler.driver(query.criteria, query.types) if not query.sort else None
    if driver is not None:
        # FROM <index> d JOIN resources: matches come in row-id order straight from the index.
        index_sql, rest = driver
        table, cond = index_sql.text().split("|", 1)
        where = compiler.where(rest, query.types, "r0", drive=False)
        return (f"{table} JOIN resources r0 ON r0.rid = d.rid", f"{cond} AND {where.text()}",
                list(index_sql.params) + list(where.params), "d.rid", driver)
    where = compiler.where(query.criteria, query.types, "r0")
    where_text, where_params = where.text(), list(where.params)
    if store.dialect == "postgres" and len(query.types) == 1:
        # Where the type's rows begin (one probe of resources_type_rid). PostgreSQL walks the primary key in
        # rid order and, taking the types to be mixed, expects the type's rows at once; resources loaded
        # type by type put them after every other type's (Observation?_count=10 skipped 151,680 rows,
        # 116 ms at 300,000 resources).
        # Asked for MIN(rid) of the type, it walked the primary key again; the row comparison can only be
        # read from the (type, rid) index.
        where_text += (" AND r0.rid >= COALESCE((SELECT CASE WHEN t.type = ? THEN t.rid END FROM resources t "
                       "WHERE (t.type, t.rid) >= (?, 0) ORDER BY t.type, t.rid LIMIT 1), 0)")
        where_params += [query.types[0], query.types[0]]
    return "resources r0", where_text, where_params, "r0.rid", None


def _page(compiler: SearchCompiler, query: SearchQuery, source: str, where_text: str, where_params: list,
          rid_col: str) -> tuple[str, list]:
    """The general plan's statement for the page (and one more row, for has_more)."""
    sql, params = f"SELECT {_COLS} FROM {source} WHERE {where_text}", list(where_params)
    if query.sort:
        order = compiler.order_by(query, "r0")
        return f"{sql} ORDER BY {order.text()} LIMIT ? OFFSET ?", params + order.params + [query.count + 1,
                                                                                            query.offset]
    if query.after is not None:
        return f"{sql} AND {rid_col} > ? ORDER BY {rid_col} LIMIT ?", params + [query.after, query.count + 1]
    return f"{sql} ORDER BY {rid_col} LIMIT ? OFFSET ?", params + [query.count + 1, query.offset]


def page_sql(store, registry, query: SearchQuery) -> tuple[str, list] | None:
    """The statement run_search runs for a search that takes the general plan (one by a patient's reference
    never walks: `_walk_budget`), for a reader that runs several searches as one statement; its rows are
    `_COLS`, the page and one more. None for a sort by a blinded parameter (sorted after decryption)."""
    compiler = SearchCompiler(store, registry)
    if query.sort and compiler.blinded_sort(query):
        return None
    source, where_text, where_params, rid_col, _ = _source(store, compiler, query)
    return _page(compiler, query, source, where_text, where_params, rid_col)


def run_search(store, registry, query: SearchQuery, execute=None) -> Page:
    """Runs `query`; `execute(sql, params)` may be a transaction's, so the search sees its own writes."""
    execute = execute or store.query
    compiler = SearchCompiler(store, registry)
    count_sql: tuple[str, list] | None = None
    source, where_text, where_params, rid_col, driver = _source(store, compiler, query)
    if driver is not None:
        count_sql = _index_count(compiler, query, driver)
    if query.sort and (query.total in ("accurate", "estimate") or query.summary == "count"):
        # A sorted search is not driven by an index range, but its count can be (`code=…&_sort=-date&_total=
        # accurate` counted 92,132 matches in 228 ms through the general plan's set, 6 ms on the index).
        sort_driver = compiler.driver(query.criteria, query.types)
        count_sql = _index_count(compiler, query, sort_driver) if sort_driver else None
    if count_sql is None:
        count_sql = (f"SELECT COUNT(*) FROM {source} WHERE {where_text}", where_params)
    page = Page(matches=[])
    if query.summary != "count" and query.count > 0:
        sql = f"SELECT {_COLS} FROM {source} WHERE {where_text}"
        params = list(where_params)
        matches = (f"SELECT 1 FROM {source} WHERE {where_text}", where_params)  # for the walks' cheap counts
        if query.sort and compiler.blinded_sort(query):
            rows = _sorted_in_memory(store, query, execute, f"{sql} ORDER BY {rid_col} LIMIT ?", params)
        elif query.sort and (walked := _walk_sort(store, compiler, query, execute, matches)):
            rows = walked
        elif driver is None and not query.sort and (walked := _walk_rids(store, compiler, query, execute, matches)):
            rows = walked
        else:
            rows = [_row(store, r) for r in execute(*_page(compiler, query, source, where_text, where_params,
                                                           rid_col))]
        page.has_more = len(rows) > query.count
        rows = rows[:query.count]
        page.matches = [s for _, s in rows]
        page.last_rid = rows[-1][0] if rows else None
        if query.includes and rows:
            page.included = _includes(store, registry, query.includes, rows)
    want_total = query.total in ("accurate", "estimate") or query.summary == "count"
    if want_total:
        page.total = execute(*count_sql)[0][0]
    elif query.total is None and query.offset == 0 and query.after is None and not page.has_more \
            and query.count > 0:
        page.total = len(page.matches)  # known without counting
    return page


# A search walks an index in its page's order when it is broad enough. The walk costs `cost` units per index row
# it reads (a probe of the resource and its criteria), and reads about page / (matches / rows of the type)
# rows; the general plan costs about one unit per match. So the walk is cheaper when matches**2 > cost * page *
# rows. Measured at 1M resources: 17-25 µs a walked row; a sorted search keys each match in 3.3 µs, so
# SORT_WALK_COST = 6 (for a page of 51 among 457,000 Observations, from about 12,000 matches); an unsorted one
# gathers each match's row id in about 0.35 µs, so RID_WALK_COST = 60 (from about 37,000).
SORT_WALK_COST = 6
RID_WALK_COST = 60
WALK_MIN_MATCHES = 2000  # and never below this many matches
# Index rows the walk reads at most (in steps growing fourfold from twice the page) before it leaves the search
# to the general plan: a broad search whose matches are mostly far down the order (a vaccine given until 2019,
# newest first). Within that, WALK_SLACK times the rows the page should take if the matches were spread evenly
# (page × rows of the type / matches), and at least WALK_BUDGET_MIN.
WALK_MAX_ROWS = 20_000
WALK_SLACK = 8
WALK_BUDGET_MIN = 1000
# Prefixes of a criterion on the sort date itself whose matches come first in the walk's order (newest first
# for a descending sort); any other (`date=lt2022&_sort=-date`) would make the walk pass every newer row.
_ALIGNED = {True: {"gt", "ge", "sa"}, False: {"lt", "le", "eb"}}


def _walk_sort(store, compiler: SearchCompiler, query: SearchQuery, execute, matches: tuple[str, list]) -> list | None:
    """The page of a broad search sorted by one date or by `_lastUpdated` (`Observation?code=…&_sort=-date`),
    found by walking the key's index rows in sort order (`_walk`).

    The general plan keys every match (its MAX(hi) descending, MIN(lo) ascending) and sorts them all: 317 ms
    for one common code at 1M resources, and linear in the country. The walk reads the date index newest first
    (idx_date_hi) or oldest first (idx_date_range), or the resources' (type, last_updated) index: the first row
    of a resource in that order carries its key, later ones are skipped. It keeps reading to the end of the
    last key's ties, which the general plan orders by row id, so the page is the same."""
    walk = compiler.sort_walk(query)
    if walk is None:
        return None
    return _walk(store, compiler, query, execute, matches, walk, query.offset, None, SORT_WALK_COST)


def _walk_rids(store, compiler: SearchCompiler, query: SearchQuery, execute, matches: tuple[str, list]) -> list | None:
    """The page of a broad unsorted search of one type (`Observation?date=ge2020`), found by walking the type's
    rows in row-id order (`_walk`), from `_after` when it is given. SQLite's general plan gathers every match's
    row id before it takes the first page (147 ms for the Observations since 2020 at 1M resources)."""
    if query.sort or len(query.types) != 1 or not query.criteria or store.dialect != "sqlite":
        # With no criterion the general plan reads the (type, rid) index in order already. PostgreSQL plans
        # these searches well by itself (2-5 ms at 100,000 resources, where the walk took 3-7 ms).
        return None
    walk = SortWalk("resources s", "s.type", query.types[0], ("s.rid",), False)
    after = query.after
    return _walk(store, compiler, query, execute, matches, walk, 0 if after is not None else query.offset,
                 None if after is None else (after,), RID_WALK_COST)


def _walk(store, compiler: SearchCompiler, query: SearchQuery, execute, matches: tuple[str, list], walk: SortWalk,
          offset: int, start: tuple | None, cost: int) -> list | None:
    """Walks an index in the page's order (`walk`), from `start`, testing each row's resource against the
    criteria, until `offset` + the page are found and the last key's ties are read: [(row id, Stored)] of the
    page and one more (the caller's has_more). None (the general plan) when the search is too narrow for the
    walk to pay (`_walk_budget`), when the walk reaches the end of the index before the page is full (resources
    without the key sort last), or when it has read its budget of rows."""
    desc, cols = walk.desc, walk.columns
    need = offset + query.count + 1
    budget = _walk_budget(compiler, query, execute, matches, need, cost)
    if not budget:
        return None
    where = compiler.where(query.criteria, query.types, "r0", drive=False)
    # The lead column leads the order. On PostgreSQL it is bounded on both sides rather than equal to its value:
    # as an equality PostgreSQL took it for a constant, dropped it from the order and walked the (last_updated)
    # index, every type's rows interleaved, instead of the (type, last_updated) one (12-18 ms more a window);
    # offered a range, it needs the index that begins with the lead column for the order. SQLite keeps the
    # equality, which lets the row comparison below bound its index range.
    lead = walk.lead
    pinned = (f"{lead} >= ? AND {lead} <= ?", [walk.param, walk.param]) if store.dialect == "postgres" else \
        (f"{lead} = ?", [walk.param])
    order = ", ".join(c + (" DESC" if desc else "") for c in (lead, *cols))
    hits: list[tuple[float, int]] = []  # (key, rid) of matching resources, in walk order
    seen: set[int] = set()
    last = start
    window, read = max(2 * need, 64), 0
    while read < budget:
        after = f" AND ({', '.join(cols)}) {'<' if desc else '>'} ({', '.join('?' * len(cols))})" if last else ""
        # The window first, then the probe for each of its rows. PostgreSQL would rather hash the probe's matches:
        # with the probe beside the LIMIT it hashed every resource of the type (50 ms for a window of a hundred
        # rows), and it hashes an EXISTS's whole set wherever it may. An OFFSET inside the probe forbids that
        # (PostgreSQL drops a plain `LIMIT 1` from an EXISTS, and then hashes it).
        # Rows come back in no promised order and are put in the walk's order here.
        names = [c[2:] for c in cols]
        rows = execute(f"SELECT {', '.join('w.' + n for n in names)}, EXISTS (SELECT 1 FROM resources r0 WHERE "
                       f"r0.rid = w.rid AND {where.text()} LIMIT 1 OFFSET 0) FROM (SELECT {', '.join(cols)} FROM "
                       f"{walk.source} WHERE {pinned[0]}{after} ORDER BY {order} LIMIT ?) w",
                       [*where.params, *pinned[1], *(last or ()), window])
        rows = sorted((tuple(r) for r in rows), key=lambda r: r[:-1], reverse=desc)
        for *position, hit in rows:
            key, rid = position[0], position[-1]
            if len(hits) >= need and key != hits[need - 1][0]:
                return _page_by_rid(store, execute, hits, desc, offset, query.count)
            if hit and rid not in seen:
                seen.add(rid)
                hits.append((key, rid))
        if len(rows) < window:  # the end of the index: the page may need resources without the key
            return _page_by_rid(store, execute, hits, desc, offset, query.count) if len(hits) >= need else None
        last = tuple(rows[-1][:-1])
        read, window = read + window, window * 4
    return None


def _walk_budget(compiler: SearchCompiler, query: SearchQuery, execute, matches: tuple[str, list], need: int,
                 cost: int) -> int:
    """The index rows the walk may read, or 0 where the search is too narrow for the walk to be the cheaper
    plan, judged cheaply. A search by a reference or an id (one patient's observations) is narrow by nature and
    never walks: the general plan takes a few milliseconds there. Otherwise the most selective criterion's index
    rows are counted, up to the number needed: an upper bound on the matches, read from its index range.
    Criteria of other shapes are counted by the search's own matches (SQLite gathers the first criterion's set
    before the count stops: still several times cheaper than the general plan, which keys every match)."""
    code, desc = query.sort[0] if query.sort else (None, False)
    if any(c.code in ("_id", "_list") or c.type in ("compartment", "reference", "chain", "has")
           or c.code == code and (c.modifier or any(v.prefix not in _ALIGNED[desc] for v in c.values))
           for c in query.criteria):
        return 0
    # The type's rows, bounded above by the span of its row ids: two probes of the (type, rid) index, read by
    # row comparisons, which only that index serves (MIN and MAX together made SQLite scan the type, and
    # PostgreSQL walks the primary key for a MIN by type).
    rtype = query.types[0]
    lo, hi = execute("SELECT (SELECT CASE WHEN t.type = ? THEN t.rid END FROM resources t WHERE (t.type, t.rid) >= "
                     "(?, 0) ORDER BY t.type, t.rid LIMIT 1), (SELECT CASE WHEN t.type = ? THEN t.rid END FROM "
                     "resources t WHERE (t.type, t.rid) <= (?, ?) ORDER BY t.type DESC, t.rid DESC LIMIT 1)",
                     [rtype, rtype, rtype, rtype, 2 ** 62])[0]
    if lo is None or hi is None:
        return 0
    rows = hi - lo + 1
    needed = max(WALK_MIN_MATCHES, int((cost * need * rows) ** 0.5))
    if not query.criteria:
        return min(WALK_MAX_ROWS, max(WALK_BUDGET_MIN, WALK_SLACK * need))
    driver = compiler.driver(query.criteria, query.types)
    first = min(query.criteria, key=lambda c: _RANK.get(c.code if c.code.startswith("_") else c.type, 5))
    index_rows = None if driver else SearchCompiler(compiler.store, compiler.registry).rows_of(first, query.types)
    if driver is not None:
        index_sql, _ = driver
        table, cond = index_sql.text().split("|", 1)
        sql, params = f"SELECT 1 FROM {table} WHERE {cond}", list(index_sql.params)
    elif index_rows is not None:  # the most selective criterion's index rows: an upper bound, read up to `needed`
        sql, params = index_rows.text(), list(index_rows.params)
    else:
        sql, params = matches
    if execute(f"SELECT COUNT(*) FROM ({sql} LIMIT ?) m", [*params, needed])[0][0] < needed:
        return 0
    return min(WALK_MAX_ROWS, max(WALK_BUDGET_MIN, WALK_SLACK * need * rows // needed))


def _page_by_rid(store, execute, hits: list[tuple[float, int]], desc: bool, offset: int, count: int) -> list:
    """The page's resources, in the general plan's order: key (descending or ascending), then row id."""
    ordered = sorted(hits, key=lambda h: ((-h[0] if desc else h[0]), h[1]))[offset:offset + count + 1]
    if not ordered:
        return []
    rids = [rid for _, rid in ordered]
    found = {row[6]: row for row in execute(f"SELECT {_COLS} FROM resources r0 WHERE r0.rid IN {_in(rids)}", rids)}
    return [_row(store, found[rid]) for rid in rids if rid in found]


# Sorting by an encrypted name decrypts every match: bounded, so a broad search is refused, not slow.
SORT_IN_MEMORY_MAX = 5000
# The column an ORDER BY would use, by index kind: (ascending, descending) positions in an extracted row.
_SORT_COLUMN = {"string": (2, 2), "token": (3, 3), "reference": (4, 4), "date": (2, 3), "number": (2, 2),
                "quantity": (2, 2), "uri": (2, 2)}


def _sorted_in_memory(store, query: SearchQuery, execute, sql: str, params: list) -> list:
    """The page of a search sorted by keys that include an encrypted parameter (e.g. Patient?_sort=family):
    every match is read (decrypted), keyed like the SQL sort (MIN ascending, MAX descending, missing values
    last, then row id) and sliced."""
    from ..fhir.outcome import FHIRError
    rows = [_row(store, r) for r in execute(sql, [*params, SORT_IN_MEMORY_MAX + 1])]
    if len(rows) > SORT_IN_MEMORY_MAX:
        raise FHIRError(400, f"Sorting by {', '.join(c for c, _ in query.sort)} decrypts every match: narrow the "
                             f"search to at most {SORT_IN_MEMORY_MAX} resources", "too-costly")
    extracted = {rid: store.extract(orjson.loads(s.content)) for rid, s in rows if s.content is not None}
    for code, desc in reversed(query.sort):  # stable sorts, last key first, so the first key decides
        def key_of(item, code=code, desc=desc):
            rid, s = item
            if code == "_id":
                return s.id
            if code == "_lastUpdated":
                return s.last_updated
            values = [r[_SORT_COLUMN[r[1]][desc]] for r in extracted.get(rid, ()) if r[0] == code
                      and r[1] in _SORT_COLUMN and r[_SORT_COLUMN[r[1]][desc]] is not None]
            return (max if desc else min)(values) if values else None
        keyed = [(key_of(item), item) for item in rows]
        present = sorted((k for k in keyed if k[0] is not None), key=lambda k: k[0], reverse=desc)
        rows = [item for _, item in present] + [item for k, item in keyed if k is None]
    return rows[query.offset:query.offset + query.count + 1]


def _includes(store, registry, includes: list[Include], rows: list[tuple[int, Stored]]) -> list[Stored]:
    seen = {(s.type, s.id) for _, s in rows}
    result: list[Stored] = []
    frontier = rows
    for depth in range(MAX_ITERATE):
        found: list[tuple[int, Stored]] = []
        for inc in includes:
            if depth > 0 and not inc.iterate:
                continue
            if inc.reverse:  # resources of source_type that point at the frontier
                sources = [(rid, s) for rid, s in frontier if inc.target_type in (None, s.type)]
            else:
                sources = [(rid, s) for rid, s in frontier if inc.source_type in ("*", s.type)]
            if not sources:
                continue
            if inc.reverse:
                found += _revinclude(store, registry, inc, [s for _, s in sources])
            else:
                found += _include(store, registry, inc, [rid for rid, _ in sources])
        new = []
        for rid, s in found:
            if (s.type, s.id) not in seen and len(seen) < MAX_INCLUDES + len(rows):
                seen.add((s.type, s.id))
                new.append((rid, s))
        result += [s for _, s in new]
        frontier = new
        if not new:
            break
    return result


def _param_filter(store, registry, inc: Include, types: Sequence[str], hint: str = "") -> tuple[str, list]:
    """Conditions on the reference rows of an include's parameter; `hint` ('+' on SQLite) keeps them out of
    the index choice where the rows are found by row id."""
    if inc.param == "*":
        return "", []
    pids = alias_pids(store, registry, types, inc.param) or [-1]
    cond, params = f" AND {hint}x.pid IN {_in(pids)}", list(pids)
    targets = {registry.aliases(t).get(inc.param, ((), None))[1] for t in types}
    if len(targets) == 1 and (target := targets.pop()) is not None:
        cond, params = cond + f" AND {hint}x.target_type = ?", params + [target]
    return cond, params


def _include(store, registry, inc: Include, rids: list[int]) -> list[tuple[int, Stored]]:
    # The page's references (by row id), then the resources they name. As a join, SQLite started from every
    # resource of the target type (all patients, for Encounter?_include=Encounter:subject); '+' keeps the
    # parameter and type terms out of its index choice on SQLite (PostgreSQL plans by cost).
    hint = store.index_hint
    out = []
    for start in range(0, len(rids), 500):
        chunk = rids[start:start + 500]
        cond, params = _param_filter(store, registry, inc, [inc.source_type], hint)
        target = f" AND {hint}x.target_type = ?" if inc.target_type else ""
        sql = (f"SELECT {_COLS} FROM resources r0 WHERE (r0.type, r0.id) IN (SELECT x.target_type, x.target_id "
               f"FROM idx_reference x WHERE x.rid IN {_in(chunk)}{cond}{target}) AND r0.deleted = 0")
        out += [_row(store, r) for r in store.query(sql, [*chunk, *params, *([inc.target_type] if target else [])])]
    return out


def _revinclude(store, registry, inc: Include, targets: list[Stored]) -> list[tuple[int, Stored]]:
    out = []
    by_type: dict[str, list[str]] = {}
    for s in targets:
        by_type.setdefault(s.type, []).append(s.id)
    for ttype, ids in by_type.items():
        if inc.target_type and inc.target_type != ttype:
            continue
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            types = [inc.source_type] if inc.source_type != "*" else []
            cond, params = _param_filter(store, registry, inc, types) if types else ("", [])
            tcond = " AND r0.type = ?" if types else ""
            sql = (f"SELECT DISTINCT {_COLS} FROM idx_reference x JOIN resources r0 ON r0.rid = x.rid "
                   f"WHERE x.target_type = ? AND x.target_id IN {_in(chunk)}{cond}{tcond} AND r0.deleted = 0")
            out += [_row(store, r) for r in store.query(sql, [ttype, *chunk, *params, *types])]
    return out


def compartment_rids(store, registry, compartment: str, cid: str, types: Sequence[str] | None,
                     since: float | None) -> list[int]:
    """Row ids of every live resource in a compartment (e.g. Patient/123), for $everything."""
    pids = []
    for rtype, codes in definition("compartments").get(compartment, {}).items():
        if types and rtype not in types:
            continue
        for code in codes:
            pids += alias_pids(store, registry, [rtype], code)
    if not pids:
        return []
    sql = (f"SELECT DISTINCT r0.rid FROM idx_reference x JOIN resources r0 ON r0.rid = x.rid "
           f"WHERE x.target_type = ? AND x.target_id = ? AND x.pid IN {_in(pids)} AND r0.deleted = 0")
    params: list = [compartment, cid, *pids]
    if since is not None:
        sql += " AND r0.last_updated >= ?"
        params.append(since)
    return sorted(r[0] for r in store.query(sql + " ORDER BY r0.rid", params))
