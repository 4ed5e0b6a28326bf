"""The detection run's alerts into the FHIR store, addressed to each district's epidemiologist.

`recipients(store, registry)` finds the epidemiologist of a district by a search of PractitionerRoles carrying
`https://health.gov.az/fhir/sid/district-epidemiologist|<district>` (the generator's public_health.py writes
one per district; a deployment loads its directory the same way). A district without one gets the logical
reference job.district_epidemiologist gives: analysts and administrators still see the alert, no
epidemiologist of that district does, and the run's summary counts it: `unrouted` when none of the alert's
recipients resolved, `unrouted_recipients` for every district's epidemiologist not found (an alert of a group
of districts goes to each district's epidemiologist).

`store_alerts` writes a run's Communications as the system, in one store transaction (all or none). The id is
derived from the alert's identifier (syndrome / place / week), so a re-run of the same week finds each alert:
one whose evidence is unchanged is left alone, one whose counts were revised (late reports) gets a new version,
and one already acknowledged (status completed) is never rewritten, so an acknowledgement is not undone.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import orjson

from ...fhir.search_query import Criterion, Value
from ...store.search_sql import SearchCompiler
from . import job

log = logging.getLogger("healthtwin.twin")
EPIDEMIOLOGIST_SYSTEM = "https://health.gov.az/fhir/sid/district-epidemiologist"
UNREAD, ACKNOWLEDGED = "in-progress", "completed"
_VOLATILE = ("meta", "sent")  # what differs between two runs of one week with the same evidence


@dataclass
class Stored:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_acknowledged: int = 0
    unrouted: int = 0  # alerts no epidemiologist receives
    unrouted_recipients: int = 0  # districts of raised alerts whose epidemiologist was not found


def _ids(store: Any, registry: Any, rtype: str, criteria: list[Criterion]) -> list[str]:
    where = SearchCompiler(store, registry).where(criteria, [rtype], "r0")
    return sorted(r[0] for r in store.query(f"SELECT r0.id FROM resources r0 WHERE {where.text()}",
                                            list(where.params)))


def recipients(store: Any, registry: Any) -> Callable[[str | None, str], dict[str, Any]]:
    """recipient_for(district, region) for job.run: the district's epidemiologist's PractitionerRole."""
    found: dict[str, dict[str, Any]] = {}

    def recipient_for(district: str | None, region: str) -> dict[str, Any]:
        place = district or region
        if place not in found:
            crit = Criterion("identifier", "token", None, [Value(f"{EPIDEMIOLOGIST_SYSTEM}|{place}")])
            ids = _ids(store, registry, "PractitionerRole", [crit, Criterion("active", "token", None,
                                                                             [Value("true")])])
            if len(ids) > 1:
                log.warning("%d epidemiologists for %s; the alert goes to PractitionerRole/%s", len(ids), place,
                            ids[0])
            found[place] = ({"reference": f"PractitionerRole/{ids[0]}", "display": f"Epidemiologist, {place}"}
                            if ids else job.district_epidemiologist(district, region))
        return found[place]
    return recipient_for


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    strip = lambda r: {k: v for k, v in r.items() if k not in _VOLATILE}  # noqa: E731
    return strip(old) == strip(new)


def store_alerts(store: Any, resources: Iterable[dict[str, Any]]) -> Stored:
    """Write the run's Communications in one transaction; idempotent for a re-run of the same week."""
    out = Stored()
    items = list(resources)
    with store.transaction() as tx:
        tx.lock("surveillance-alerts")  # two runs of one week (two workers) do not interleave
        for resource in items:
            addressed = resource.get("recipient") or []
            if not any("reference" in r for r in addressed):
                out.unrouted += 1
            out.unrouted_recipients += sum("reference" not in r for r in addressed)
            current = tx.current("Communication", resource["id"])
            if current is None or current[1].deleted:
                tx.update("Communication", resource["id"], dict(resource), existing=current)
                out.created += 1
                continue
            old = orjson.loads(current[1].content or b"{}")  # opened by the store
            if old.get("status") != UNREAD:
                out.kept_acknowledged += 1
            elif _same(old, resource):
                out.unchanged += 1
            else:
                tx.update("Communication", resource["id"], dict(resource), existing=current)
                out.updated += 1
    return out
