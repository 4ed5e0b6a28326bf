"""Building searchset and history Bundles, with paging links."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from ...store.records import instant
from ..guard import Released
from ..subsetting import subset

_PAGING = ("_count", "_offset", "_after")


def _released(row: Any) -> Released:
    if not isinstance(row, Released):
        raise TypeError(f"{row!r} was not released (api.guard.release): a Bundle takes released rows only")
    return row


def entry_resource(stored: Released, summary: str | None, elements: list[str] | None) -> Any:
    _released(stored)
    if summary or elements:
        return orjson.Fragment(orjson.dumps(subset(orjson.loads(stored.content), summary, elements)))
    # The stored bytes go into the Bundle as they are: no parse and re-serialise per entry.
    return orjson.Fragment(stored.content)


def link(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url


def paging_links(url: str, echo: list[tuple[str, str]], count: int, offset: int, has_more: bool,
                 last_rid: int | None, keyset: bool) -> list[dict[str, str]]:
    base = [(k, v) for k, v in echo if k not in _PAGING]
    page = lambda off, after=None: base + [("_count", str(count)), ("_offset", str(off))] + (
        [("_after", str(after))] if after is not None else [])
    links = [{"relation": "self", "url": link(url, page(offset))},
             {"relation": "first", "url": link(url, page(0))}]
    if offset > 0:
        links.append({"relation": "previous", "url": link(url, page(max(offset - count, 0)))})
    if has_more:
        links.append({"relation": "next", "url": link(url, page(offset + count, last_rid if keyset else None))})
    return links


def searchset(base_url: str, matches: list[Released], included: list[Released], total: int | None,
              links: list[dict[str, str]], summary: str | None, elements: list[str] | None,
              outcome: dict | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "meta": {"lastUpdated": instant_now()}}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    entries = [{"fullUrl": f"{base_url}/{s.type}/{s.id}", "resource": entry_resource(s, summary, elements),
                "search": {"mode": "match"}} for s in matches]
    entries += [{"fullUrl": f"{base_url}/{s.type}/{s.id}", "resource": entry_resource(s, summary, elements),
                 "search": {"mode": "include"}} for s in included]
    if outcome is not None:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return bundle


def history_bundle(base_url: str, versions: list[Released], total: int,
                   links: list[dict[str, str]]) -> dict[str, Any]:
    entries = []
    for s in map(_released, versions):
        url = f"{base_url}/{s.type}/{s.id}"
        method = {"create": "POST", "update": "PUT", "delete": "DELETE"}[s.method]
        entry: dict[str, Any] = {"fullUrl": url,
                                 "request": {"method": method, "url": s.type if method == "POST" else f"{s.type}/{s.id}"},
                                 "response": {"status": {"POST": "201 Created", "PUT": "200 OK",
                                                         "DELETE": "204 No Content"}[method],
                                              "etag": s.etag, "lastModified": s.last_updated_iso}}
        if s.content is not None:
            entry["resource"] = orjson.Fragment(s.content)
        entries.append(entry)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "total": total, "link": links}
    if entries:
        bundle["entry"] = entries
    return bundle


def instant_now() -> str:
    import time
    return instant(time.time())
