"""Calls into the policy's optional hooks (see context.Policy), with "allow" when a policy lacks them.

Interactions call these rather than the policy directly, so a minimal policy (only `authorize`, as tests and
embedders may supply) keeps working, and the secure policy sees every place rows are released.
"""
from __future__ import annotations

from typing import Any

from ..fhir.search_query import SearchQuery
from ..store.records import Stored
from ..request import RequestContext


def restrict(services: Any, ctx: RequestContext, query: SearchQuery) -> None:
    fn = getattr(services.policy, "restrict", None)
    if fn is not None:
        fn(ctx, query)


def readable(services: Any, ctx: RequestContext, stored: list[Stored], checked: bool = False,
             versions: bool = False) -> list[Stored]:
    fn = getattr(services.policy, "readable", None)
    return list(stored) if fn is None else fn(ctx, stored, checked=checked, versions=versions)


def visible(services: Any, ctx: RequestContext, stored: Stored | None, versions: bool = False) -> Stored | None:
    """`stored` if the caller may see it, else None — so hidden and absent take the same path."""
    if stored is None:
        return None
    found = readable(services, ctx, [stored], versions=versions)
    return found[0] if found else None


def visible_rids(services: Any, ctx: RequestContext, rids: list[int]) -> list[int]:
    fn = getattr(services.policy, "visible_rids", None)
    return list(rids) if fn is None else fn(ctx, rids)


def check_existing(services: Any, ctx: RequestContext, rtype: str, current: Stored | None) -> None:
    fn = getattr(services.policy, "check_existing", None)
    if fn is not None:
        fn(ctx, rtype, current)


def is_open(services: Any) -> bool:
    return bool(getattr(services.policy, "open", False)) or not hasattr(services.policy, "readable")
