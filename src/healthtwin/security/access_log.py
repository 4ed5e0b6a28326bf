"""The citizen's access log written for a person: each access as an AuditEvent with a narrative that says who
(name, role, organization), when, what (in words: "read your laboratory results"), why (the purpose of use in
words) and whether a person or an automated system asked.

What an auditor needs but a citizen should not be handed is left out: client network addresses, the raw
(base64) query, request ids and the server's own identifiers. The audit log itself (security/audit.py) is not
changed; this is a reading of it.

`for_person(events, names)` takes the BALP AuditEvents `AuditLog.access_log` returns and a `names(reference)`
callback that gives the display name of a Practitioner, Organization or Patient reference (or None)."""
from __future__ import annotations

import base64
import html
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

_CS = "http://terminology.hl7.org/CodeSystem/"

ROLE_WORDS = {
    "clinician": "doctor or nurse", "laboratory": "laboratory", "pharmacy": "pharmacy",
    "insurer": "health insurer", "epidemiologist": "public health epidemiologist",
    "analyst": "public health analyst", "auditor": "auditor",
    "administrator": "system administrator", "citizen": "citizen",
}
PURPOSE_WORDS = {
    "TREAT": "to treat you", "ETREAT": "for emergency treatment (break the glass)", "CAREMGT": "to manage your care",
    "HCOMPL": "to check compliance with health rules", "HPAYMT": "to pay for your care",
    "CLMATTCH": "to process an insurance claim", "COVAUTH": "to authorise your insurance cover",
    "ELIGDTRM": "to check your insurance eligibility", "HRESCH": "for health research",
    "PUBHLTH": "for public health", "HOPERAT": "to run health services", "HQUALIMP": "to improve care quality",
    "HACCRED": "for accreditation", "HSYSADMIN": "to administer the system", "PATRQT": "at your own request",
    "FAMRQT": "at the request of a family member", "PWATRNY": "at the request of your legal representative",
}
# What a resource type is, said to the person whose record it is.
TYPE_WORDS = {
    "Patient": "your personal details", "Observation": "your observations and test results",
    "DiagnosticReport": "your test reports", "Condition": "your diagnoses", "Encounter": "your visits",
    "Procedure": "your procedures", "MedicationRequest": "your prescriptions",
    "MedicationDispense": "your dispensed medicines", "MedicationStatement": "your medicines",
    "Immunization": "your vaccinations", "AllergyIntolerance": "your allergies", "CarePlan": "your care plans",
    "Claim": "your insurance claims", "ClaimResponse": "your insurance decisions", "Coverage": "your insurance cover",
    "ExplanationOfBenefit": "your insurance statements", "Consent": "your privacy choices",
    "ServiceRequest": "your referrals and test orders", "DocumentReference": "your documents",
    "Appointment": "your appointments", "FamilyMemberHistory": "your family history",
    "RelatedPerson": "your contacts and representatives", "Specimen": "your samples",
    "AuditEvent": "who saw your record",
}
CATEGORY_WORDS = {"laboratory": "your laboratory results", "vital-signs": "your vital signs",
                  "imaging": "your imaging results", "social-history": "your social history",
                  "survey": "your questionnaires", "exam": "your examination findings"}
VERBS = {"read": "read", "vread": "read an earlier version of", "history-instance": "read the history of",
         "search-type": "looked up", "search-system": "looked up", "search": "looked up",
         "history-type": "read the history of", "create": "added to", "update": "changed", "patch": "changed",
         "delete": "deleted", "operation": "used", "transaction": "recorded", "batch": "recorded"}
_AUTOMATED = ("An automated system (a backend service, not a person) made this request on behalf of its "
              "organization; no person looked at your record at that moment, but the system was given access "
              "for the purpose shown.")


def _coding(code: str, display: str, system: str | None = None) -> dict[str, Any]:
    return {**({"system": system} if system else {}), "code": code, "display": display}


def _raw_query(event: dict[str, Any]) -> str:
    for entity in event.get("entity") or ():
        if "query" in entity:
            try:
                return base64.b64decode(entity["query"]).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return ""
    return ""


def _target(event: dict[str, Any], query: str) -> tuple[str | None, str | None]:
    """The resource type the access was about, and a category, from the event's entities and query."""
    rtype = None
    for entity in event.get("entity") or ():
        ref = (entity.get("what") or {}).get("reference") or ""
        if "/" in ref and not ref.startswith("Patient/"):
            rtype = ref.split("/", 1)[0]
        elif entity.get("description"):
            rtype = rtype or entity["description"]
    category = next((v.split("|")[-1] for k, v in parse_qsl(query.partition("?")[2] if query.startswith("$")
                                                               else query, keep_blank_values=True)
                     if k.split(":")[0] == "category"), None)
    return rtype, category


OPERATION_WORDS = {"everything": "opened your whole record", "export": "started an export of records including yours",
                   "export-file": "downloaded exported records including yours",
                   "export-poll-status": "checked an export of records including yours",
                   "lastn": "read your latest results", "access-log": "read who saw your record",
                   "validate": "checked a record of yours", "meta": "read the labels on your record",
                   "meta-add": "labelled your record", "meta-delete": "removed labels from your record",
                   "viewdefinition-run": "ran a statistical view over records including yours",
                   "match": "looked for records that may be yours", "merge": "merged two records of yours into one",
                   "unmerge": "undid a merge of records of yours"}


def what_in_words(event: dict[str, Any]) -> str:
    """What an access did, said to the person whose record it is: "read your laboratory results"."""
    subtype = ((event.get("subtype") or [{}])[0]).get("code") or "operation"
    query = _raw_query(event)
    rtype, category = _target(event, query)
    if subtype == "operation":
        name = query.partition("?")[0].lstrip("$") if query.startswith("$") else ""
        return OPERATION_WORDS.get(name) or (f"used the {name} function on your record" if name
                                             else "used a function on your record")
    thing = (CATEGORY_WORDS.get(category or "") if rtype in ("Observation", "DiagnosticReport", None) else None) \
        or TYPE_WORDS.get(rtype or "Patient") or f"your {rtype} records"
    return f"{VERBS.get(subtype, 'used')} {thing}"


def what_codes(event: dict[str, Any]) -> list[dict[str, str]]:
    """What an access did as codes (AuditEvent.entity.detail), for a reader that says it in another
    language: the interaction, the resource type, the observation category and the operation's name."""
    subtype = ((event.get("subtype") or [{}])[0]).get("code") or "operation"
    query = _raw_query(event)
    rtype, category = _target(event, query)
    name = query.partition("?")[0].lstrip("$") if subtype == "operation" and query.startswith("$") else None
    found = {"interaction": subtype, "resource": rtype if rtype in TYPE_WORDS else None, "category": category,
             "operation": name}
    return [{"type": k, "valueString": v} for k, v in found.items() if v]


def _when(recorded: str) -> str:
    return recorded[:16].replace("T", " at ") + " UTC" if len(recorded) >= 16 else recorded


def _automated(agent: dict[str, Any]) -> bool:
    who = agent.get("who") or {}
    codes = {c.get("code") for c in (agent.get("type") or {}).get("coding") or ()}
    return who.get("display") == "system" or "110150" in codes


def _agent(agent: dict[str, Any], names: Callable[[str], str | None], yourself: bool) -> dict[str, Any]:
    """One agent, with a name and its role in words, without its network address."""
    who = agent.get("who") or {}
    ident = who.get("identifier") or {}
    org_ref = ident.get("system") if str(ident.get("system") or "").startswith("Organization/") else None
    automated = _automated(agent)
    name = ("you" if yourself else (names(who["reference"]) if who.get("reference") else None)
            or ("an automated system" if automated and agent.get("requestor") else None)
            or ("an application" if automated else None) or ident.get("value") or "someone")
    out: dict[str, Any] = {"type": agent.get("type"), "requestor": bool(agent.get("requestor")),
                           "who": {**({"reference": who["reference"]} if who.get("reference") else {}),
                                   **({"identifier": {"value": ident["value"]}} if ident.get("value") else {}),
                                   "display": name}}
    roles = [c.get("code") for r in agent.get("role") or () for c in r.get("coding") or () if c.get("code")]
    if roles:
        out["role"] = [{"coding": [{"code": r}], "text": ROLE_WORDS.get(r, r)} for r in roles]
    if org_ref:
        org = names(org_ref)
        out["extension"] = [{"url": ORGANIZATION_EXTENSION,
                             "valueReference": {"reference": org_ref, **({"display": org} if org else {})}}]
    return {k: v for k, v in out.items() if v is not None}


ORGANIZATION_EXTENSION = "https://healthtwin.dev/fhir/StructureDefinition/agent-organization"
_SUBTYPE_WORDS = {"110120": "opened an application on your record (started from a hospital system)",
                  "110106": "exported your records"}


def for_person(events: Iterable[dict[str, Any]], names: Callable[[str], str | None],
               own_subject: str | None = None) -> list[dict[str, Any]]:
    out = []
    for event in events:
        agents_in = event.get("agent") or [{}]
        requestor = next((a for a in agents_in if a.get("requestor")), agents_in[0])
        ident = (requestor.get("who") or {}).get("identifier") or {}
        yourself = own_subject is not None and ident.get("value") == own_subject
        agents = [_agent(a, names, yourself and a is requestor) for a in agents_in]
        main = next((a for a in agents if a.get("requestor")), agents[0])
        automated = _automated(requestor)
        org = next((e["valueReference"].get("display") for e in main.get("extension") or ()), None)
        roles = ", ".join(r["text"] for r in main.get("role") or ())
        who_words = main["who"]["display"] + (f", {roles}" if roles and not yourself else "") \
            + (f", {org}" if org else "")
        purposes = [(c.get("code"), p.get("text")) for p in event.get("purposeOfEvent") or ()
                    for c in p.get("coding") or ()]
        why = "; ".join(dict.fromkeys(PURPOSE_WORDS.get(code or "", code or "") for code, _ in purposes
                                      if code in PURPOSE_WORDS)) or "no purpose was stated"
        reasons = [text for p in event.get("purposeOfEvent") or () if (text := p.get("text"))]
        if reasons:
            why += " (reason given: " + "; ".join(reasons) + ")"
        sub = (event.get("subtype") or [{}])[0]
        is_rest = sub.get("system") == "http://hl7.org/fhir/restful-interaction"
        what = what_in_words(event) if is_rest else _SUBTYPE_WORDS.get(sub.get("code")) or \
            str(sub.get("display") or "accessed your record").lower()
        when = _when(event.get("recorded", ""))
        codes = what_codes(event) if is_rest else []
        refused = event.get("outcome") not in (None, "0")
        sentence = f"{when}: {who_words} {'was refused: ' if refused else ''}{what}, {why}."
        if automated:
            sentence += " " + _AUTOMATED
        purpose_out = [{"coding": [{**c, **({"display": PURPOSE_WORDS[c["code"]]} if c.get("code") in PURPOSE_WORDS
                                            else {})} for c in p.get("coding") or ()],
                        **({"text": p["text"]} if p.get("text") else {})} for p in event.get("purposeOfEvent") or ()]
        result = {
            "resourceType": "AuditEvent", "id": event.get("id"),
            "text": {"status": "generated",
                     "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{html.escape(sentence)}</p></div>'},
            "type": event.get("type"), "subtype": event.get("subtype"), "action": event.get("action"),
            "recorded": event.get("recorded"), "outcome": event.get("outcome"),
            "outcomeDesc": ("refused" if refused else "allowed") + (": an automated system" if automated else
                                                                    ": a person"),
            "purposeOfEvent": purpose_out or None,
            "agent": agents,
            "source": {"observer": {"display": ((event.get("source") or {}).get("observer") or {}).get("display")
                                    or "Health Twin"}},
            "entity": [{"what": e["what"], "description": what, **({"detail": codes} if codes else {})}
                       for e in event.get("entity") or () if (e.get("what") or {}).get("reference")] or None,
        }
        out.append({k: v for k, v in result.items() if v is not None})
    return out
