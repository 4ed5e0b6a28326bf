"""The one way stored rows leave the server: `release()`, which applies the policy's filter, masking and labels.

Responses (api/responses.py, interactions/bundles.py) accept a resource only as a `Released`, and only
`release()` makes one, so no path (read, search, include, history, an operation, a Bundle entry, an export
file) can send a row the policy has not seen. The other calls here reach the policy's optional hooks (see
context.Policy), with "allow" when a policy lacks them, so a minimal policy (only `authorize`, as tests and
embedders may supply) keeps working.
"""
from __future__ import annotations

from typing import Any

from ..fhir.search_query import SearchQuery
from ..store.records import Stored
from ..request import RequestContext

_KEY = object()  # held by this module alone: whoever constructs a Released must have come through release()


class Released:
    """A stored row as this caller may see it (filtered, masked, labelled): the only form responses take."""

    __slots__ = ("_row",)

    def __init__(self, row: Stored, key: object) -> None:
        if key is not _KEY:
            raise TypeError("a Released row is made by api.guard.release only")
        self._row = row

    type = property(lambda self: self._row.type)
    id = property(lambda self: self._row.id)
    version = property(lambda self: self._row.version)
    last_updated = property(lambda self: self._row.last_updated)
    deleted = property(lambda self: self._row.deleted)
    content = property(lambda self: self._row.content)
    method = property(lambda self: self._row.method)
    etag = property(lambda self: self._row.etag)
    last_updated_iso = property(lambda self: self._row.last_updated_iso)

    def __repr__(self) -> str:
        return f"Released({self._row.type}/{self._row.id}/_history/{self._row.version})"


def release(services: Any, ctx: RequestContext, rows: list[Stored], checked: bool = False,
            versions: bool = False) -> list[Released]:
    """The rows of `rows` the caller may see, masked where its role demands. `checked`: a restricted search (or
    the write rules) already decided visibility, so only masking and labels are left; `versions`: they are
    versions of one resource (history, vread), each judged on its own content."""
    fn = getattr(services.policy, "readable", None)
    kept = list(rows) if fn is None else fn(ctx, list(rows), checked=checked, versions=versions)
    return [Released(row, _KEY) for row in kept]


def release_one(services: Any, ctx: RequestContext, row: Stored | None, checked: bool = False,
                versions: bool = False) -> Released | None:
    """`row` released to the caller, or None when it is absent or hidden — so hidden and absent take one path."""
    if row is None:
        return None
    found = release(services, ctx, [row], checked=checked, versions=versions)
    return found[0] if found else None


def restrict(services: Any, ctx: RequestContext, query: SearchQuery) -> None:
    fn = getattr(services.policy, "restrict", None)
    if fn is not None:
        fn(ctx, query)


def visible_rids(services: Any, ctx: RequestContext, rids: list[int]) -> list[int]:
    """The row ids the caller may read (ids only: the rows themselves still go through release)."""
    fn = getattr(services.policy, "visible_rids", None)
    return list(rids) if fn is None else fn(ctx, rids)


def check_existing(services: Any, ctx: RequestContext, rtype: str, current: Stored | None,
                   letter: str = "u") -> None:
    """May the caller update (`u`) or delete (`d`) the resource whose current version is `current`?"""
    fn = getattr(services.policy, "check_existing", None)
    if fn is not None:
        fn(ctx, rtype, current, letter)


def is_open(services: Any) -> bool:
    return bool(getattr(services.policy, "open", False)) or not hasattr(services.policy, "readable")
