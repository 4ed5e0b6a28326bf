"""The clinician view: find a patient (through the patient index's `Patient/$match` where the server has it,
else a FHIR search), their essentials in one page (summary, the twin's risks and due care, results and
orders), prescribing with the CDS Hooks warnings, and break-the-glass with its reason. The clinician's token
decides what is visible: patients in their organization's care, or opened by break-the-glass."""
from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from . import fhirtext as fx
from .asgi_client import unavailable
from .charts import sparkline
from .citizen import _summary, _trends
from .frame import HEADERS, Page, page

FIN = "https://health.gov.az/fhir/sid/fin"
ATC = "http://www.whocc.no/atc"
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@page("clinician")
async def search(pg: Page) -> Response:
    q = pg.request.query_params
    name, birth, fin = (q.get("name") or "").strip()[:100], (q.get("birthdate") or "").strip()[:10], \
        (q.get("fin") or "").strip()[:20]
    found: list[dict[str, Any]] = []
    method, failed = "", None
    if name or birth or fin:
        patient: dict[str, Any] = {"resourceType": "Patient"}
        if name:
            patient["name"] = [{"text": name, "family": name.split()[-1], "given": name.split()[:-1] or None}]
        if birth:
            patient["birthDate"] = birth
        if fin:
            patient["identifier"] = [{"system": FIN, "value": fin}]
        match = await pg.api.call("POST", "/fhir/Patient/$match", body={
            "resourceType": "Parameters", "parameter": [{"name": "resource", "resource": _clean(patient)},
                                                       {"name": "count", "valueInteger": 20}]})
        if match.ok:
            found = [dict(e["resource"], _score=(e.get("search") or {}).get("score"))
                     for e in (match.json() or {}).get("entry") or [] if e.get("resource")]
            method = "match"
        if not found:
            # no index on this server, or nobody it grades a possible match (a name alone, records loaded
            # in bulk before the index): the plain search, said so on the page
            method = "search" if not match.ok else "match-then-search"
            params = {"_count": "20"}
            if name:
                params["name"] = name
            if birth:
                params["birthdate"] = birth
            if fin:
                params["identifier"] = f"{FIN}|{fin}"
            found, answer = await pg.api.entries("Patient", params)
            failed = None if answer.ok else answer.problem()
    return pg.render("clinic/search.html", found=found, method=method, failed=failed, name=name, birth=birth,
                     fin=fin, searched=bool(name or birth or fin), fx=fx, FIN=FIN)


def _clean(patient: dict[str, Any]) -> dict[str, Any]:
    for n in patient.get("name") or []:
        if n.get("given") is None:
            n.pop("given", None)
    return patient


@page("clinician")
async def patient(pg: Page) -> Response:
    pid = pg.request.path_params["pid"]
    if not _ID.match(pid):
        return pg.message("error.title", pg.tr.t("error.bad_form"), 400)
    api = pg.api
    head = await api.fhir(f"Patient/{pid}")
    if head.status in (403, 404):
        return pg.render("clinic/break_glass.html", head.status, pid=pid, problem=head.problem())
    if not head.ok:
        return pg.message("error.title", head.problem(), head.status)
    (conditions, _), (medicines, _), (labs, _), (vitals, _), (orders, _), (allergies, _), twin, summary, cds = \
        await asyncio.gather(
            api.entries("Condition", {"patient": pid, "_count": "100"}),
            api.entries("MedicationRequest", {"patient": pid, "status": "active", "_count": "50"}),
            api.entries("Observation", {"patient": pid, "category": "laboratory", "_sort": "-date", "_count": "200"}),
            api.entries("Observation/$lastn", {"patient": pid, "category": "vital-signs"}),
            api.entries("ServiceRequest", {"patient": pid, "_sort": "-authored", "_count": "20"}),
            api.entries("AllergyIntolerance", {"patient": pid}),
            api.fhir(f"Patient/{pid}/$twin"),
            api.fhir(f"Patient/{pid}/$summary"),
            api.get("/cds-services"))
    return pg.render("clinic/patient.html", pid=pid, patient=head.json(), conditions=conditions,
                     medicines=medicines, results=_trends(labs)[:20], vitals=vitals, orders=orders,
                     allergies=allergies, twin=_twin(twin), summary=_summary(summary),
                     cds_available=cds.ok, fx=fx, prescribed=pg.request.query_params.get("prescribed"),
                     btg=pg.request.query_params.get("btg"))


def _value(part: dict[str, Any]) -> Any:
    return next((part[k] for k in part if k.startswith("value")), None)


def _parts(param: dict[str, Any]) -> dict[str, Any]:
    """A parameter's scalar parts by name (the first of each), and its nested ones as lists under the name."""
    out: dict[str, Any] = {}
    for part in param.get("part") or []:
        name = part.get("name")
        if part.get("part"):
            out.setdefault(name, []).append(part)
        elif name not in out:
            out[name] = _value(part)
    return out


def _twin(answer: Any) -> dict[str, Any]:
    """The twin's view of the patient ($twin): its risks (with their model, or why not computed), trends as
    lines and the due care, or that it is not available yet."""
    if unavailable(answer):
        return {"available": False}
    if not answer.ok:
        return {"available": True, "error": answer.problem()}
    risks, trends, due = [], [], 0
    for i, param in enumerate((answer.json() or {}).get("parameter") or []):
        parts = _parts(param)
        if param.get("name") in ("risk", "kidney"):
            risks.append({"name": parts.get("name") or param["name"], "value": parts.get("value"),
                          "unit": parts.get("unit") or "", "model": parts.get("model") or "",
                          "missing": parts.get("notComputed") or ""})
        elif param.get("name") == "trend":
            points = sorted(((_parts(p).get("date") or "", _parts(p).get("value")) for p in parts.get("points") or []),
                            key=lambda x: str(x[0]))
            values = [float(v) for _, v in points if isinstance(v, (int, float))]
            if values:
                trends.append({"name": parts.get("name") or "", "unit": parts.get("unit") or "", "last": values[-1],
                               "when": points[-1][0], "spark": sparkline(values[-12:], title=str(parts.get("name")),
                                                                          ident=f"twin{i}") if len(values) > 1 else ""})
        elif param.get("name") == "dueCare":
            due += sum(len(v) for v in parts.values() if isinstance(v, list)) or len(param.get("part") or [])
    return {"available": True, "risks": risks, "trends": trends, "due": due}


@page("clinician")
async def break_glass(pg: Page) -> Response:
    pid = pg.request.path_params["pid"]
    reason = str(pg.request.state.form.get("reason") or "").strip()
    if not _ID.match(pid) or len(reason) < 10 or len(reason) > 500:
        return pg.render("clinic/break_glass.html", 400, pid=pid, problem="", error=pg.tr.t("btg.need_reason"))
    answer = await pg.api.fhir(f"Patient/{pid}", headers={"x-break-glass": reason})
    if not answer.ok:
        return pg.render("clinic/break_glass.html", answer.status, pid=pid, problem=answer.problem())
    return RedirectResponse(f"/app/clinic/patient/{pid}?btg=1", 303, headers=HEADERS)


@page("clinician")
async def prescribe(pg: Page) -> Response:
    pid = pg.request.path_params["pid"]
    form = pg.request.state.form
    medicine = str(form.get("medicine") or "").strip()[:120]
    atc = str(form.get("atc") or "").strip().upper()[:7]
    dosage = str(form.get("dosage") or "").strip()[:200]
    try:
        quantity = int(str(form.get("quantity") or "0"))
    except ValueError:
        quantity = 0
    if not _ID.match(pid) or not medicine or not 0 < quantity <= 1000 or (atc and not re.match(r"^[A-Z]\d\d[A-Z]{0,2}\d{0,2}$", atc)):
        return pg.message("error.title", pg.tr.t("rx.bad_form"), 400)
    concept: dict[str, Any] = {"text": medicine}
    if atc:
        concept["coding"] = [{"system": ATC, "code": atc, "display": medicine}]
    request = {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
               "medicationCodeableConcept": concept, "subject": {"reference": f"Patient/{pid}"},
               "authoredOn": dt.datetime.now(dt.timezone.utc).date().isoformat(),
               "dispenseRequest": {"quantity": {"value": quantity, "unit": "dose"}}}
    if dosage:
        request["dosageInstruction"] = [{"text": dosage}]
    if not form.get("confirmed"):
        cards = await _cds_cards(pg, pid, request)
        if cards is not None and cards:
            return pg.render("clinic/cds.html", pid=pid, cards=cards, form=dict(form))
    answer = await pg.api.call("POST", "/fhir/MedicationRequest", body=request)
    if not answer.ok:
        return pg.message("error.refused_title", answer.problem(), answer.status)
    await _overrides(pg, form)
    return RedirectResponse(f"/app/clinic/patient/{pid}?prescribed=1", 303, headers=HEADERS)


async def _cds_cards(pg: Page, pid: str, draft: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The CDS Hooks cards for the draft prescription (the order-sign services), None when the server has no
    CDS service."""
    discovery = await pg.api.get("/cds-services")
    if not discovery.ok:
        return None
    services = (discovery.json() or {}).get("services") or []
    cards: list[dict[str, Any]] = []
    for service in services:
        if service.get("hook") != "order-sign":  # the checks at signing (order-select repeats them per selection)
            continue
        answer = await pg.api.call("POST", f"/cds-services/{service.get('id')}", body={
            "hook": service["hook"], "hookInstance": f"web-{pid}", "context": {
                "userId": pg.session.claims.get("fhirUser") or pg.session.subject, "patientId": pid,
                "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}}})
        for card in (answer.json() or {}).get("cards") or [] if answer.ok else []:
            cards.append({"summary": card.get("summary") or "", "detail": card.get("detail") or "",
                          "indicator": card.get("indicator") or "info", "uuid": card.get("uuid") or "",
                          "service": service.get("id"), "reasons": [r for r in card.get("overrideReasons") or []
                                                                     if isinstance(r, dict) and r.get("code")],
                          "source": (card.get("source") or {}).get("label") or ""})
    return cards


async def _overrides(pg: Page, form: dict[str, str]) -> None:
    """The warnings the clinician signed past, sent back to their CDS service as overridden with the reason
    chosen (the prescribing registry records each as a DetectedIssue)."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for key, value in form.items():
        if not key.startswith("override-") or "|" not in value:
            continue
        system, code = value.rsplit("|", 1)
        card, service = key.removeprefix("override-"), form.get("service-" + key.removeprefix("override-")) or ""
        if not re.match(r"^[0-9a-f-]{36}$", card) or not re.match(r"^[a-z0-9-]{1,64}$", service):
            continue
        by_service.setdefault(service, []).append({
            "card": card, "outcome": "overridden", "outcomeTimestamp": dt.datetime.now(dt.timezone.utc).isoformat(),
            "overrideReason": {"reason": {"system": system, "code": code}}})
    for service, items in by_service.items():
        await pg.api.call("POST", f"/cds-services/{service}/feedback", body={"feedback": items})


def routes() -> list[Route]:
    return [Route("/clinic", search), Route("/clinic/patient/{pid}", patient),
            Route("/clinic/patient/{pid}/break-glass", break_glass, methods=["POST"]),
            Route("/clinic/patient/{pid}/prescribe", prescribe, methods=["POST"])]
