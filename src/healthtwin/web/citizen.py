"""The citizen portal: my record, those I represent, prescriptions and renewals, insurance statements, who
looked at my record and why, my privacy choices, and reporting an error. Every figure is fetched through the
FHIR API with the citizen's own token: the access policy decides what is there (the citizen's own record and
those of the people they represent), exactly as for any other client."""
from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from . import fhirtext as fx
from .asgi_client import unavailable
from .charts import sparkline
from .frame import HEADERS, Page, page

REQUEST_SYSTEM = "https://health.gov.az/fhir/CodeSystem/citizen-request"
ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# The privacy choices the portal offers, each a Consent (security/consent.py says how each is enforced)
CHOICES = {
    "sensitive": {"provision": {"type": "deny", "securityLabel": [{"system": ACTCODE, "code": "PSY"},
                                                                   {"system": ACTCODE, "code": "MH"}]}},
    "organization": {"provision": {"type": "deny"}},  # actor added from the form
    "everyone": {"provision": {"type": "deny"}},
}


def _subject(pg: Page) -> str | None:
    """The record shown: ?patient= one the citizen represents, else their own."""
    wanted = pg.request.query_params.get("patient") or (getattr(pg.request.state, "form", None) or {}).get("patient")
    if wanted and _ID.match(wanted):
        return wanted
    return pg.session.patient


async def _people(pg: Page) -> list[dict[str, Any]]:
    """Every record the citizen may open: their own and those they represent (a search of Patient answers
    exactly the records the policy lets this token see)."""
    found, _ = await pg.api.entries("Patient", {"_count": "20", "_elements": "name,birthDate,gender"})
    own = pg.session.patient
    return sorted(found, key=lambda p: p.get("id") != own)


@page("citizen")
async def record(pg: Page) -> Response:
    pid = _subject(pg)
    if not pid:
        return pg.message("error.title", pg.tr.t("citizen.no_record"), 404)
    api = pg.api
    results = await asyncio.gather(
        api.fhir(f"Patient/{pid}"),
        api.entries("Condition", {"patient": pid, "_count": "100"}),
        api.entries("MedicationRequest", {"patient": pid, "_sort": "-authoredon", "_count": "50"}),
        api.entries("Observation", {"patient": pid, "category": "laboratory", "_sort": "-date", "_count": "300"}),
        api.entries("Immunization", {"patient": pid, "_sort": "-date", "_count": "100"}),
        api.entries("DocumentReference", {"patient": pid, "_count": "20"}),
        api.fhir(f"Patient/{pid}/$immds-forecast"),
        api.fhir(f"Patient/{pid}/$summary"),
        _people(pg))
    patient_answer, (conditions, _), (medicines, _), (labs, _), (vaccines, _), (documents, _), due, summary, people \
        = results
    if not patient_answer.ok:
        return pg.message("error.title", pg.tr.t("citizen.not_visible"), patient_answer.status)
    patient = patient_answer.json()
    org = fx.ref_id(patient.get("managingOrganization"), "Organization")
    if org and not (patient.get("managingOrganization") or {}).get("display"):
        found = await api.fhir(f"Organization/{org}", {"_elements": "name"})
        if found.ok and (found.json() or {}).get("name"):
            patient["managingOrganization"]["display"] = found.json()["name"]
    return pg.render("citizen/record.html", patient=patient, pid=pid, people=people,
                     conditions=conditions, medicines=[m for m in medicines if m.get("status") == "active"],
                     results=_trends(labs), vaccines=vaccines, documents=documents,
                     due=_due(due), summary=_summary(summary), fx=fx)


def _trends(observations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results grouped by test, newest first, each with its values over time and reference range."""
    by_code: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obs in observations:
        by_code[fx.key(obs.get("code"))].append(obs)
    out = []
    for i, items in enumerate(by_code.values()):
        items.sort(key=lambda o: fx.when(o, "effectiveDateTime", "effectivePeriod", "issued"))
        latest = items[-1]
        value, unit = fx.quantity(latest)
        low, high = fx.reference_range(latest)
        series = [v for v in (fx.quantity(o)[0] for o in items) if v is not None]
        out.append({"name": fx.concept(latest.get("code")), "value": value, "unit": unit, "low": low, "high": high,
                    "when": fx.when(latest, "effectiveDateTime", "effectivePeriod", "issued"),
                    "flag": fx.flag(value, low, high), "count": len(items),
                    "text": fx.concept(latest.get("valueCodeableConcept")) or latest.get("valueString") or "",
                    "spark": sparkline(series[-12:], low, high, fx.concept(latest.get("code")), f"spark{i}")
                    if len(series) > 1 else ""})
    out.sort(key=lambda r: r["when"], reverse=True)
    return out


def _due(answer: Any) -> dict[str, Any]:
    """What the immunization registry forecasts as due ($immds-forecast), or that it is not available yet."""
    if unavailable(answer):
        return {"available": False, "items": []}
    if not answer.ok:
        return {"available": True, "error": answer.problem(), "items": []}
    data = answer.json() or {}
    recs = []
    for param in data.get("parameter") or []:
        res = param.get("resource") or {}
        if res.get("resourceType") == "ImmunizationRecommendation":
            recs += res.get("recommendation") or []
    if data.get("resourceType") == "ImmunizationRecommendation":
        recs += data.get("recommendation") or []
    items = []
    for rec in recs:
        date = next((d.get("value") for d in rec.get("dateCriterion") or [] if d.get("value")), "")
        items.append({"vaccine": fx.concept((rec.get("vaccineCode") or [{}])[0]) or fx.concept(rec.get("targetDisease")),
                      "status": fx.code(rec.get("forecastStatus")) or "", "date": date,
                      "dose": rec.get("doseNumberPositiveInt") or rec.get("doseNumberString") or ""})
    items.sort(key=lambda r: r["date"])
    # what is due: not the series already complete (the page lists the doses given just below)
    due = [i for i in items if i["status"] not in ("complete", "immune", "aged-out", "not-recommended")]
    return {"available": True, "items": due}


def _summary(answer: Any) -> dict[str, Any]:
    """The patient summary (IPS, $summary) as its sections' titles and narratives, or not available yet."""
    if unavailable(answer):
        return {"available": False, "sections": []}
    if not answer.ok:
        return {"available": True, "error": answer.problem(), "sections": []}
    data = answer.json() or {}
    composition = next((e.get("resource") for e in data.get("entry") or []
                        if (e.get("resource") or {}).get("resourceType") == "Composition"), None) or {}
    sections = [{"title": s.get("title") or fx.concept(s.get("code")), "entries": len(s.get("entry") or [])}
                for s in composition.get("section") or []]
    return {"available": True, "sections": sections, "title": composition.get("title") or "",
            "date": composition.get("date") or ""}


@page("citizen")
async def family(pg: Page) -> Response:
    return pg.render("citizen/family.html", people=await _people(pg), fx=fx)


@page("citizen")
async def prescriptions(pg: Page) -> Response:
    pid = _subject(pg)
    if not pid:
        return pg.message("error.title", pg.tr.t("citizen.no_record"), 404)
    (requests, answer), (dispenses, _), (tasks, _) = await asyncio.gather(
        pg.api.entries("MedicationRequest", {"patient": pid, "_sort": "-authoredon", "_count": "100"}),
        pg.api.entries("MedicationDispense", {"patient": pid, "_count": "100"}),
        pg.api.entries("Communication", {"subject": pid, "category": f"{REQUEST_SYSTEM}|renewal", "_count": "50"}))
    dispensed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in dispenses:
        for ref in d.get("authorizingPrescription") or []:
            rid = fx.ref_id(ref, "MedicationRequest")
            if rid:
                dispensed[rid].append(d)
    asked = {fx.ref_id(ref, "MedicationRequest"): t for t in tasks for ref in t.get("about") or []}
    return pg.render("citizen/prescriptions.html", pid=pid, requests=requests, dispensed=dispensed, asked=asked,
                     fx=fx, sent=pg.request.query_params.get("sent"), refused=pg.request.query_params.get("refused"))


@page("citizen")
async def renew(pg: Page) -> Response:
    form = pg.request.state.form
    pid, rx = _subject(pg), form.get("prescription") or ""
    if not pid or not _ID.match(rx):
        return pg.message("error.title", pg.tr.t("error.bad_form"), 400)
    # A Communication from the citizen to their polyclinic about the prescription: it is part of the patient's
    # record (a Task is not, in R4's Patient compartment), so the citizen may write it and sees it afterwards.
    note = str(form.get("note") or "").strip()[:500]
    message = _message(pg, pid, "renewal", f"MedicationRequest/{rx}", note or "Renewal requested")
    answer = await pg.api.call("POST", "/fhir/Communication", body=message)
    if not answer.ok:
        return pg.message("error.refused_title", answer.problem(), answer.status)
    return RedirectResponse(f"/app/me/prescriptions?patient={pid}&sent=1", 303, headers=HEADERS)


@page("citizen")
async def claims(pg: Page) -> Response:
    pid = _subject(pg)
    if not pid:
        return pg.message("error.title", pg.tr.t("citizen.no_record"), 404)
    found, answer = await pg.api.entries("ExplanationOfBenefit", {"patient": pid, "_sort": "-created", "_count": "50"})
    items = []
    for eob in found:
        totals = {fx.code(t.get("category")): (t.get("amount") or {}) for t in eob.get("total") or []}
        paid = (eob.get("payment") or {}).get("amount") or {}
        submitted = totals.get("submitted") or {}
        items.append({"id": eob.get("id"), "created": eob.get("created"), "type": fx.concept(eob.get("type")),
                      "provider": fx.ref(eob.get("provider")), "outcome": eob.get("outcome") or "",
                      "submitted": submitted.get("value"), "paid": paid.get("value") or (totals.get("benefit") or {}).get("value"),
                      "currency": submitted.get("currency") or paid.get("currency") or "AZN",
                      "items": [fx.concept(i.get("productOrService")) for i in eob.get("item") or []][:4]})
    return pg.render("citizen/claims.html", pid=pid, claims=items, failed=None if answer.ok else answer.problem())


PAGE_SIZE = 50


@page("citizen")
async def access(pg: Page) -> Response:
    pid = _subject(pg)
    if not pid:
        return pg.message("error.title", pg.tr.t("citizen.no_record"), 404)
    # The citizen's own visits (this very page makes several) are left out unless asked for: what they come
    # to see is who else looked. The log pages newest first; `before` is where the page shown ends.
    mine = pg.request.query_params.get("mine") == "1"
    before = pg.request.query_params.get("before") or ""
    params = {"_count": str(PAGE_SIZE), **({} if mine else {"others": "true"}),
              **({"_before": before} if before.isdigit() else {})}
    answer = await pg.api.fhir(f"Patient/{pid}/$access-log", params)
    data = (answer.json() or {}) if answer.ok else {}
    rows = [_access_row(e.get("resource") or {}) for e in data.get("entry") or []]
    older = next((parse_qs(urlsplit(link.get("url") or "").query).get("_before", [""])[0]
                  for link in data.get("link") or [] if link.get("relation") == "next"), "")
    keep = {"patient": pid if pg.session.patient != pid else None, "mine": "1" if mine else None}
    return pg.render("citizen/access.html", pid=pid, events=rows, mine=mine, keep=keep,
                     older=older if older.isdigit() else None, newer=before.isdigit(),
                     what_words=lambda detail: what_words(pg.tr, detail),
                     failed=None if answer.ok else answer.problem())


def _access_row(event: dict[str, Any]) -> dict[str, Any]:
    agents = event.get("agent") or [{}]
    main = next((a for a in agents if a.get("requestor")), agents[0])
    roles = [c.get("code") for r in main.get("role") or [] for c in r.get("coding") or [] if c.get("code")]
    org = next((e.get("valueReference", {}).get("display") or e.get("valueReference", {}).get("reference")
                for e in main.get("extension") or []), "")
    detail = {d.get("type"): d.get("valueString") for e in event.get("entity") or [] for d in e.get("detail") or []}
    who = (main.get("who") or {}).get("display") or ""
    return {"when": event.get("recorded"), "who": who, "who_key": _GENERIC_WHO.get(who),
            "roles": roles, "organization": org, "automated": "automated system" in str(event.get("outcomeDesc")),
            "refused": event.get("outcome") not in (None, "0"), "action": event.get("action") or "",
            "purposes": [c.get("code") for p in event.get("purposeOfEvent") or [] for c in p.get("coding") or []],
            "reason": "; ".join(p["text"] for p in event.get("purposeOfEvent") or [] if p.get("text")),
            "yourself": who == "you", "what": detail}


def what_words(tr: Any, detail: dict[str, str]) -> str:
    """What an access did, in the page's language, from the access log's codes (security/access_log.py)."""
    interaction = detail.get("interaction") or "operation"
    if interaction == "operation":
        return tr.maybe("op", detail.get("operation"), tr.t("op.other"))
    resource, category = detail.get("resource"), detail.get("category")
    thing = (tr.maybe("category", category, "") if category and resource in (None, "Observation", "DiagnosticReport")
             else "") or tr.maybe("rtype", resource or "Patient", resource)
    return f"{tr.maybe('verb', interaction, interaction)}: {thing}"


# The access log's words for an agent without a name: said in the page's language instead
_GENERIC_WHO = {"you": "you", "someone": "someone", "an automated system": "system", "an application": "app"}


@page("citizen")
async def consents(pg: Page) -> Response:
    pid = _subject(pg)
    if not pid:
        return pg.message("error.title", pg.tr.t("citizen.no_record"), 404)
    found, answer = await pg.api.entries("Consent", {"patient": pid, "_count": "50"})
    rows = []
    for c in found:
        provision = c.get("provision") or {}
        labels = [s.get("code") for s in provision.get("securityLabel") or []]
        actors = [fx.ref(a.get("reference")) for a in provision.get("actor") or []]
        kind = "sensitive" if labels else "organization" if actors else "everyone"
        rows.append({"id": c.get("id"), "status": c.get("status"), "kind": kind, "actors": actors,
                     "date": c.get("dateTime")})
    return pg.render("citizen/consents.html", pid=pid, consents=rows, choices=list(CHOICES),
                     failed=None if answer.ok else answer.problem(), done=pg.request.query_params.get("done"))


@page("citizen")
async def consent_change(pg: Page) -> Response:
    form = pg.request.state.form
    pid = _subject(pg)
    if not pid:
        return pg.message("error.title", pg.tr.t("citizen.no_record"), 404)
    if form.get("withdraw"):
        cid = str(form.get("withdraw"))
        current = await pg.api.fhir(f"Consent/{cid}") if _ID.match(cid) else None
        if current is None or not current.ok:
            return pg.message("error.title", pg.tr.t("error.bad_form"), 400)
        body = {**current.json(), "status": "inactive"}
        body.pop("meta", None)
        answer = await pg.api.call("PUT", f"/fhir/Consent/{cid}", body=body)
    else:
        choice = str(form.get("choice") or "")
        if choice not in CHOICES:
            return pg.message("error.title", pg.tr.t("error.bad_form"), 400)
        provision = dict(CHOICES[choice]["provision"])
        if choice == "organization":
            org = str(form.get("organization") or "").removeprefix("Organization/")
            if not _ID.match(org):
                return pg.message("error.title", pg.tr.t("consent.need_org"), 400)
            provision["actor"] = [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                                        "code": "IRCP"}]},
                                   "reference": {"reference": f"Organization/{org}"}}]
        body = {"resourceType": "Consent", "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                      "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": f"Patient/{pid}"}, "dateTime": _now(),
                "policyRule": {"coding": [{"system": ACTCODE, "code": "OPTOUT"}]}, "provision": provision}
        answer = await pg.api.call("POST", "/fhir/Consent", body=body)
    if not answer.ok:
        return pg.message("error.refused_title", answer.problem(), answer.status)
    return RedirectResponse(f"/app/me/consents?patient={pid}&done=1", 303, headers=HEADERS)


@page("citizen")
async def report(pg: Page) -> Response:
    pid = _subject(pg)
    if not pid:
        return pg.message("error.title", pg.tr.t("citizen.no_record"), 404)
    if pg.request.method == "POST":
        form = pg.request.state.form
        what, text = str(form.get("what") or ""), str(form.get("text") or "").strip()
        if not text or len(text) > 2000 or not re.match(r"^(Condition|MedicationRequest|Observation|Immunization|Patient)"
                                                        r"(/[A-Za-z0-9\-.]{1,64})?$", what):
            return pg.render("citizen/report.html", 400, pid=pid, error=pg.tr.t("report.need_text"), choices=_reportable())
        message = _message(pg, pid, "correction", what if "/" in what else None, text, section=what)
        answer = await pg.api.call("POST", "/fhir/Communication", body=message)
        if not answer.ok:
            return pg.message("error.refused_title", answer.problem(), answer.status)
        return pg.render("citizen/report.html", pid=pid, sent=True, choices=_reportable())
    return pg.render("citizen/report.html", pid=pid, choices=_reportable())


def _message(pg: Page, pid: str, kind: str, about: str | None, text: str, section: str | None = None) -> dict:
    """A citizen's request to their polyclinic (a renewal, a correction) as a Communication about their record."""
    message: dict[str, Any] = {
        "resourceType": "Communication", "status": "completed", "sent": _now(),
        "category": [{"coding": [{"system": REQUEST_SYSTEM, "code": kind}]}],
        "subject": {"reference": f"Patient/{pid}"}, "sender": {"reference": f"Patient/{pg.session.patient or pid}"},
        "payload": [{"contentString": text}]}
    if about:
        message["about"] = [{"reference": about}]
    if section and not about:
        message["topic"] = {"text": section}
    return message


def _reportable() -> list[str]:
    return ["Patient", "Condition", "MedicationRequest", "Observation", "Immunization"]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def routes() -> list[Route]:
    return [Route("/me", record), Route("/me/family", family), Route("/me/prescriptions", prescriptions),
            Route("/me/prescriptions/renew", renew, methods=["POST"]), Route("/me/claims", claims),
            Route("/me/access", access), Route("/me/consents", consents),
            Route("/me/consents", consent_change, methods=["POST"]),
            Route("/me/report", report, methods=["GET", "POST"])]
