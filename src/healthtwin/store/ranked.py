"""A search's matches as row ids in its sort order, and their token index rows: for a reader that chooses among
the matches by what the index holds (the newest of each code) before reading any resource.

The conditions and the order are the search compiler's own (`SearchCompiler.where`, `order_by`), so the ids are
exactly those `run_search` would return, in its order; only the resources' content is not read."""
from __future__ import annotations

from typing import Sequence

from ..fhir.search_query import SearchQuery
from .search_sql import SearchCompiler, alias_pids

_CHUNK = 500
MAX_MATCHES = 20_000  # sorted here only up to this many matches (one patient's record is far below)


def ranked_rids(store, registry, query: SearchQuery, limit: int) -> list[int] | None:
    """Up to `limit` row ids of the matches, in the search's order (`order_by`: the sort key, resources without
    a value last, then the row id). A sort by one date parameter is done here on the matches' date index rows,
    read in one query, rather than by SQL's correlated MAX per match (about 100 µs a match on SQLite: 40 ms for
    a citizen's 470 vital signs, against 3 ms this way). None where this is not the plan: a sort key that is a
    blinded parameter (its order is in the decrypted resources), or more matches than MAX_MATCHES."""
    compiler = SearchCompiler(store, registry)
    if query.sort and compiler.blinded_sort(query):
        return None
    where = compiler.where(query.criteria, query.types, "r0")
    sql, params = f"SELECT r0.rid FROM resources r0 WHERE {where.text()}", list(where.params)
    by_date = _date_sort(registry, query)
    if query.sort and by_date is None:
        order = compiler.order_by(query, "r0")
        return [row[0] for row in store.query(f"{sql} ORDER BY {order.text()} LIMIT ?",
                                              params + list(order.params) + [limit])]
    rids = [row[0] for row in store.query(f"{sql} LIMIT ?", params + [MAX_MATCHES + 1])]
    if len(rids) > MAX_MATCHES:
        return None
    rids.sort()
    if by_date is not None:
        code, desc = by_date
        keys = _date_keys(store, rids, compiler.pids(query.types, code), desc)
        dated = sorted((r for r in rids if r in keys), key=keys.__getitem__, reverse=desc)  # stable: ties by rid
        rids = dated + [r for r in rids if r not in keys]
    return rids[:limit]


def _date_sort(registry, query: SearchQuery) -> tuple[str, bool] | None:
    if len(query.sort) != 1:
        return None
    code, desc = query.sort[0]
    params = [registry.get(t, code) for t in query.types]
    return (code, desc) if params and all(p is not None and p.type == "date" for p in params) else None


def _date_keys(store, rids: list[int], pids: list[int], desc: bool) -> dict[int, float]:
    """Each row's sort value, as order_by takes it: the latest end of its dates descending, the earliest start
    ascending."""
    hint = store.index_hint  # the (rid, pid) index, as in token_keys
    column = "MAX(hi)" if desc else "MIN(lo)"
    found: dict[int, float] = {}
    for start in range(0, len(rids), _CHUNK):
        chunk = rids[start:start + _CHUNK]
        found.update(store.query(f"SELECT rid, {column} FROM idx_date WHERE rid IN ({','.join('?' * len(chunk))}) "
                                 f"AND {hint}pid IN ({','.join('?' * len(pids))}) GROUP BY rid", chunk + pids))
    return found


def ranked_codes(store, registry, query: SearchQuery, code: str,
                 limit: int) -> list[tuple[int, set[tuple[str | None, str]]]] | None:
    """Up to `limit` matches in the search's order, each with the (system, code) pairs indexed for its token
    parameter `code`. On PostgreSQL one statement (every statement there is planned for its values, a few
    milliseconds for a search's, so fewer statements is what saves time); on SQLite the ids, their dates and
    their codes in three cheap ones (its correlated sort per match is what costs there). None as
    ranked_rids, or when the parameter's index holds blind digests."""
    rtype = query.types[0] if len(query.types) == 1 else None
    if rtype is None or (store.at_rest is not None and store.at_rest.sensitive(rtype, code, "token")):
        return None
    if store.dialect == "sqlite":
        rids = ranked_rids(store, registry, query, limit)
        keys = token_keys(store, registry, rtype, code, rids) if rids is not None else None
        return None if keys is None else [(rid, keys.get(rid, set())) for rid in rids]
    statement = ranked_codes_sql(store, registry, query, code)
    return None if statement is None else group_ranked(store.query(*statement), limit)


def ranked_codes_sql(store, registry, query: SearchQuery, code: str) -> tuple[str, list] | None:
    """PostgreSQL's one statement of ranked_codes: (row id, system, code) rows, a match's rows together, in the
    search's order (group_ranked makes them its answer); for a reader that runs it beside other statements.
    None as ranked_codes."""
    rtype = query.types[0] if len(query.types) == 1 else None
    if rtype is None or (store.at_rest is not None and store.at_rest.sensitive(rtype, code, "token")):
        return None
    compiler = SearchCompiler(store, registry)
    if query.sort and compiler.blinded_sort(query):
        return None
    where = compiler.where(query.criteria, query.types, "r0")
    pids = alias_pids(store, registry, [rtype], code) or [-1]
    order = compiler.order_by(query, "r0") if query.sort else None
    sql = (f"SELECT r0.rid, t.system, t.code FROM resources r0 LEFT JOIN idx_token t ON t.rid = r0.rid AND t.pid IN "
           f"({','.join('?' * len(pids))}) AND t.code IS NOT NULL WHERE {where.text()} ORDER BY "
           f"{order.text() if order else 'r0.rid'}")
    return sql, list(pids) + list(where.params) + (list(order.params) if order else [])


def group_ranked(rows, limit: int) -> list[tuple[int, set[tuple[str | None, str]]]]:
    """ranked_codes_sql's rows as up to `limit` matches, each with its indexed (system, code) pairs."""
    out: list[tuple[int, set[tuple[str | None, str]]]] = []
    for rid, system, value in rows:
        if not out or out[-1][0] != rid:  # the order ends on the row id: a match's rows are together
            if len(out) == limit:
                break
            out.append((rid, set()))
        if value is not None:
            out[-1][1].add((system, value))
    return out


def token_keys(store, registry, rtype: str, code: str, rids: Sequence[int]) -> dict[int, set[tuple[str | None, str]]] | None:
    """Each row's (system, code) pairs indexed for the token parameter `code` (rows with none are absent). None
    when the parameter's index holds blind digests rather than codes."""
    if store.at_rest is not None and store.at_rest.sensitive(rtype, code, "token"):
        return None
    pids = alias_pids(store, registry, [rtype], code)
    found: dict[int, set[tuple[str | None, str]]] = {}
    if not pids:
        return found
    # `+pid` keeps SQLite on the (rid, pid) index: offered `pid IN (...)`, it walked the (pid, code...) index,
    # every row of the parameter (750 ms for one citizen's 470 Observations at 1M resources)
    hint = store.index_hint
    for start in range(0, len(rids), _CHUNK):
        chunk = list(rids[start:start + _CHUNK])
        sql = (f"SELECT rid, system, code FROM idx_token WHERE rid IN ({','.join('?' * len(chunk))}) "
               f"AND {hint}pid IN ({','.join('?' * len(pids))}) AND code IS NOT NULL")
        for rid, system, value in store.query(sql, chunk + list(pids)):
            found.setdefault(rid, set()).add((system, value))
    return found


def rows_by_rid(store, rids: Sequence[int]) -> dict[int, object]:
    """The current rows (Stored, content opened) of `rids` that still exist, by row id."""
    found: dict[int, object] = {}
    for start in range(0, len(rids), _CHUNK):
        chunk = list(rids[start:start + _CHUNK])
        sql = (f"SELECT r0.type, r0.id, r0.version, r0.last_updated, r0.deleted, r0.content, r0.rid FROM resources r0 "
               f"WHERE r0.rid IN ({','.join('?' * len(chunk))})")
        found.update({row[6]: store.stored(row) for row in store.query(sql, chunk)})
    return found
