"""Plain records the store hands to the API: what was stored, and pages of results."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Stored:
    """One version of a resource as stored: `content` is its JSON (bytes, meta included); None if deleted."""

    type: str
    id: str
    version: int
    last_updated: float
    deleted: bool
    content: bytes | None
    method: str = "update"  # create | update | delete: the interaction that produced this version

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def last_updated_iso(self) -> str:
        return instant(self.last_updated)


@dataclass
class Page:
    """A page of search or history results: matches, then included resources, plus what paging needs."""

    matches: list[Stored]
    included: list[Stored] = field(default_factory=list)
    total: int | None = None
    has_more: bool = False
    last_rid: int | None = None


@lru_cache(maxsize=4096)  # a transaction stamps every resource with one time; reads repeat recent ones
def instant(ts: float) -> str:
    """FHIR instant with millisecond precision in UTC (the store rounds times to milliseconds); digits
    beyond the millisecond are cut off."""
    frac, whole = math.modf(ts)  # rounded to the microsecond exactly as datetime.fromtimestamp rounds
    micro = round(frac * 1_000_000)
    second = int(whole) + micro // 1_000_000
    return f"{_second(second)}.{micro % 1_000_000 // 1000:03d}Z"


@lru_cache(maxsize=1024)
def _second(second: int) -> str:
    return datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
