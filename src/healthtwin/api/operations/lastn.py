"""Observation/$lastn (FHIR R4 observation-operation-lastn): a patient's most recent observations of each code,
`max` of them per code (1 by default), newest first: the latest blood pressure, HbA1c and creatinine of a
citizen's twin in one request.

Any Observation search parameter narrows the observations (category, code, date...); a patient (`patient` or
`subject`) is required, which keeps the work one person's and the answer meaningful. Observations are grouped
by their code's first coding (system and code), or by the code's text where no coding has a code. The search
is the caller's own (authorization, consent and labels apply as to any search), sorted by date."""
from __future__ import annotations

from typing import Any

import orjson

from ...fhir.outcome import FHIRError
from ...fhir.search_query import _int
from ...store.search import run_search
from .. import guard
from ..interactions.bundles import link, searchset
from ..interactions.search import parse
from ..responses import fhir
from .registry import operation

MAX_PER_CODE = 100
SCAN_LIMIT = 20_000  # observations read for one patient before the request is refused as too costly
_OWN = {"max", "_sort", "_count", "_offset", "_total", "_summary", "_elements", "_include", "_revinclude"}


def _group(content: bytes) -> tuple[str | None, str | None]:
    code = orjson.loads(content).get("code") or {}
    for coding in code.get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            return coding.get("system"), coding["code"]
    return None, code.get("text")


def _lastn(services, ctx, params: list[tuple[str, str]]) -> dict[str, Any]:
    per_code = 1
    criteria = []
    for name, value in params:
        if name == "max":
            per_code = _int(name, value, 1, MAX_PER_CODE)
        elif name.split(":")[0] in _OWN:
            raise FHIRError(400, f"$lastn sorts and pages itself: '{name}' is not one of its parameters",
                            location=name)
        else:
            criteria.append((name, value))
    if not any(name.split(":")[0].split(".")[0] in ("patient", "subject") for name, _ in criteria):
        raise FHIRError(400, "$lastn needs the patient (patient= or subject=)")
    services.policy.authorize(ctx, "search", "Observation")
    query = parse(services, ctx, ["Observation"], criteria + [("_sort", "-date")])
    guard.restrict(services, ctx, query)  # the caller's own search: only what they may see is read
    query.count = SCAN_LIMIT  # one sorted read of them all, not a page at a time (each page re-sorted them)
    page = run_search(services.store, services.registry, query)
    if page.has_more:
        raise FHIRError(422, f"$lastn reads at most {SCAN_LIMIT:,} observations of a patient: narrow it with "
                             f"category, code or date", "too-costly")
    kept: dict[tuple[str | None, str | None], int] = {}
    chosen = []
    for stored in page.matches:
        group = _group(stored.content)
        if kept.get(group, 0) < per_code:
            kept[group] = kept.get(group, 0) + 1
            chosen.append(stored)
    released = guard.release(services, ctx, chosen, checked=True)
    self_link = {"relation": "self", "url": link(f"{ctx.base_url}/Observation/$lastn", params)}
    return searchset(ctx.base_url, released, [], len(released), [self_link], None, None)


@operation("lastn", types=["Observation"], type_level=True,
           definition="http://hl7.org/fhir/OperationDefinition/Observation-lastn", methods=("GET",))
async def lastn(router, request, ctx, rtype, rid, params, body):
    return fhir(200, await router.run(_lastn, router.services, ctx, list(params)), ctx)
