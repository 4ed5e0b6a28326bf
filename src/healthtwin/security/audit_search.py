"""Searching the audit trail: what an auditor asks when investigating (`$audit-trail`).

The citizen's `$access-log` answers "who looked at my record"; an auditor also asks "what did this person (or
system) do last week", "which requests were refused", "every break-the-glass read of that patient". The
parameters follow IHE's Retrieve ATNA Audit Event (ITI-81) where they fit:

* `agent`: the requestor's identifier (a user name or client id), as the `agent` column holds it;
* `patient`: `Patient/123` or `123`;
* `date`: with the search prefixes `ge gt le lt eq` (repeat it for a range);
* `outcome` (0, 4, 8), `subtype` (the interaction, e.g. `read`, or a DICOM code such as 110122 for a login) and
  `action` (C R U D E): comma for OR;
* `_count` (at most MAX_COUNT) and `_before`, the paging cursor: entries are listed newest first, and the next
  page starts below the last sequence number shown.

`agent`, `patient` and `date` select rows by index; `outcome`, `subtype` and `action` are read from the events
themselves, so a page examines at most SCAN_LIMIT entries and, if that runs out first, says where to go on
(the `next` link) rather than scanning a national log for one page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..fhir.dates import parse_query
from .audit import stored_event

DEFAULT_COUNT = 100
MAX_COUNT = 1000
SCAN_LIMIT = 5000
_CHUNK = 500
PARAMETERS = ("agent", "patient", "date", "outcome", "subtype", "action", "_count", "_before")


@dataclass
class TrailQuery:
    agent: str | None = None
    patient: str | None = None
    since: float | None = None  # recorded >= since
    until: float | None = None  # recorded < until
    outcomes: frozenset[str] = frozenset()
    subtypes: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    count: int = DEFAULT_COUNT
    before: int | None = None  # seq < before
    params: list[tuple[str, str]] = field(default_factory=list)  # the filters as given, for the next link

    def keeps(self, event: dict[str, Any]) -> bool:
        if self.outcomes and event.get("outcome") not in self.outcomes:
            return False
        if self.actions and event.get("action") not in self.actions:
            return False
        if self.subtypes and not {c.get("code") for c in event.get("subtype") or ()} & self.subtypes:
            return False
        return True


def parse_trail_query(params: list[tuple[str, str]]) -> TrailQuery:
    """The query of `$audit-trail`'s parameters; ValueError names the first bad one."""
    q = TrailQuery()
    for name, value in params:
        if name not in PARAMETERS:
            raise ValueError(f"unknown parameter '{name}'; $audit-trail takes {', '.join(PARAMETERS)}")
        if name == "_count":
            if not value.isdigit() or not 1 <= int(value) <= MAX_COUNT:
                raise ValueError(f"_count must be a whole number from 1 to {MAX_COUNT}")
            q.count = int(value)
            continue
        if name == "_before":
            if not value.isdigit():
                raise ValueError("_before is the sequence number from a next link")
            q.before = int(value)
            continue
        q.params.append((name, value))
        if name == "agent":
            q.agent = value
        elif name == "patient":
            q.patient = value if value.startswith("Patient/") else f"Patient/{value}"
        elif name == "date":
            _date(q, value)
        else:
            codes = frozenset(v.strip() for v in value.split(",") if v.strip())
            if not codes:
                raise ValueError(f"{name} needs a value")
            setattr(q, {"outcome": "outcomes", "subtype": "subtypes", "action": "actions"}[name], codes)
    return q


def _date(q: TrailQuery, value: str) -> None:
    try:
        prefix, lo, hi = parse_query(value)
    except ValueError as exc:
        raise ValueError(f"date: {exc}") from None
    bounds = {"ge": (lo, None), "gt": (hi, None), "le": (None, hi), "lt": (None, lo), "eq": (lo, hi)}.get(prefix)
    if bounds is None:
        raise ValueError(f"date takes the prefixes ge, gt, le, lt and eq, not {prefix}")
    since, until = bounds
    if since is not None:
        q.since = since if q.since is None else max(q.since, since)
    if until is not None:
        q.until = until if q.until is None else min(q.until, until)


def search_trail(store: Any, q: TrailQuery) -> tuple[list[dict[str, Any]], int | None]:
    """(the matching AuditEvents, newest first, each with its seq as id; the seq to continue below, or None
    when the log has no more)."""
    where, args = [], []
    for column, value in (("agent", q.agent), ("patient", q.patient)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.since is not None:
        where.append("recorded >= ?")
        args.append(q.since)
    if q.until is not None:
        where.append("recorded < ?")
        args.append(q.until)
    found: list[dict[str, Any]] = []
    below, scanned = q.before, 0
    while True:
        clauses = where + (["seq < ?"] if below is not None else [])
        sql = ("SELECT seq, event FROM audit_log" + (" WHERE " + " AND ".join(clauses) if clauses else "")
               + " ORDER BY seq DESC LIMIT ?")
        rows = store.query(sql, [*args, *([below] if below is not None else []), _CHUNK])
        for seq, body in rows:
            below, scanned = seq, scanned + 1
            event = stored_event(seq, body)
            if q.keeps(event):
                event["id"] = str(seq)
                found.append(event)
                if len(found) == q.count:
                    return found, seq
        if len(rows) < _CHUNK:
            return found, None
        if scanned >= SCAN_LIMIT:
            return found, below
