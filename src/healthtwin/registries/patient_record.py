"""One patient's record read as the caller: what the patient summary and the citizen's twin are built from.

Every read is the caller's own search (authorized, restricted by the policy's visibility criteria, released
through api/guard.release), as Observation/$lastn reads, so a summary or a twin never holds a row the caller
could not have searched for. A type the caller's role may not search at all comes back as `withheld`
rather than failing the whole answer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ..api import guard
from ..api.interactions.search import parse
from ..fhir.outcome import FHIRError
from ..request import RequestContext
from ..store.search import run_search

SCAN_LIMIT = 5_000  # rows of one type read for one patient; past it the answer says it was cut


@dataclass
class Rows:
    """What one search gave: the released rows (parsed once) and whether some were withheld or cut."""
    rtype: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    withheld: bool = False
    truncated: bool = False


class PatientRecord:
    def __init__(self, services: Any, ctx: RequestContext, pid: str) -> None:
        self.services, self.ctx, self.pid = services, ctx, pid

    def patient(self) -> dict[str, Any]:
        """The Patient as the caller may see it; 404 when absent or hidden (hidden answers like absent)."""
        self.services.policy.authorize(self.ctx, "read", "Patient")
        released = guard.release_one(self.services, self.ctx, self.services.store.read("Patient", self.pid))
        if released is None or released.deleted or released.content is None:
            raise FHIRError(404, f"Patient/{self.pid} is not known")
        return orjson.loads(released.content)

    def search(self, rtype: str, criteria: list[tuple[str, str]], sort: str | None = None,
               limit: int = SCAN_LIMIT, patient_param: str = "patient") -> Rows:
        try:
            self.services.policy.authorize(self.ctx, "search", rtype)
        except FHIRError as exc:
            if exc.status in (401, 403):
                return Rows(rtype, withheld=True)
            raise
        params = [(patient_param, f"Patient/{self.pid}")] + criteria + ([("_sort", sort)] if sort else [])
        query = parse(self.services, self.ctx, [rtype], params)
        guard.restrict(self.services, self.ctx, query)  # only what the caller may see is read
        query.count = limit
        page = run_search(self.services.store, self.services.registry, query)
        released = guard.release(self.services, self.ctx, page.matches, checked=True)
        return Rows(rtype, [orjson.loads(r.content) for r in released if r.content], truncated=page.has_more)

    def read(self, reference: str) -> dict[str, Any] | None:
        """A resource the record refers to (a practitioner, an organisation), if the caller may read it."""
        rtype, _, rid = reference.partition("/")
        if not rid or "/" in rid:
            return None
        try:
            self.services.policy.authorize(self.ctx, "read", rtype)
        except FHIRError:
            return None
        released = guard.release_one(self.services, self.ctx, self.services.store.read(rtype, rid))
        if released is None or released.deleted or released.content is None:
            return None
        return orjson.loads(released.content)


def code_key(concept: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """A CodeableConcept's first coding (system, code), or its text: how results of one test are grouped."""
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            return coding.get("system"), coding["code"]
    return None, (concept or {}).get("text")


def latest_per_code(resources: list[dict[str, Any]], per_code: int = 1) -> list[dict[str, Any]]:
    """The newest `per_code` of each code, from resources already sorted newest first."""
    kept: dict[tuple[str | None, str | None], int] = {}
    out = []
    for res in resources:
        key = code_key(res.get("code"))
        if kept.get(key, 0) < per_code:
            kept[key] = kept.get(key, 0) + 1
            out.append(res)
    return out
