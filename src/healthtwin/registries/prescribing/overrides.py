"""Feedback on a card (CDS Hooks 2.0 `POST /cds-services/{id}/feedback`): an override is recorded as a
DetectedIssue, written as the clinician's own create (so the caller's access rules apply, and it is audited
like any write):

* `code`: the alert (v3-ActCode DUPTHPY, ALGY, DOSEH); `severity` high for a critical allergy, else moderate;
* `patient`, `identifiedDateTime` (when the card was shown), `author` (the clinician's fhirUser, if a
  Practitioner), `detail` (the card's detail), `identifier` `urn:uuid:<card uuid>`;
* `implicated`: the stored resources involved (the active prescription, the AllergyIntolerance, the order if it
  is already stored);
* `mitigation`: the override reason exactly as given (`action`: the Coding the card offered, with the
  clinician's comment as its text; `date`: the feedback's `outcomeTimestamp`).
An accepted card is marked accepted and records nothing else. Each card takes one feedback.
"""
from __future__ import annotations

from typing import Any

from ...api.interactions import write
from ...fhir.outcome import FHIRError
from ...request import RequestContext
from ...store.records import instant
from . import cards as C


def _author(ctx: RequestContext) -> dict[str, str] | None:
    user = ctx.caller.fhir_user
    return {"reference": user} if isinstance(user, str) and user.startswith(("Practitioner/", "PractitionerRole/")) \
        else None


def _existing(tx: Any, refs: list[str]) -> list[dict[str, str]]:
    out = []
    for r in refs:
        rtype, _, rid = r.partition("/")
        found = tx.current(rtype, rid) if rid and "/" not in rid else None
        if found is not None and not found[1].deleted:
            out.append({"reference": r})
    return out


def detected_issue(ctx: RequestContext, tx: Any, card: dict[str, Any], item: dict[str, Any],
                   reason: dict[str, Any]) -> dict[str, Any]:
    finding = card["finding"]
    code, display = C.ISSUE_CODES[card["kind"]]
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue", "status": "final",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{item['card']}"}],
        "code": {"coding": [{"system": C.ACT, "code": code, "display": display}]},
        "severity": "high" if finding.get("critical") else "moderate",
        "patient": {"reference": f"Patient/{card['patient']}"},
        "identifiedDateTime": instant(card["issued"]),
        "detail": finding["detail"],
        "mitigation": [{"action": {"coding": [{k: reason[k] for k in ("system", "code", "display") if k in reason}],
                                   **({"text": item["overrideReason"]["userComment"]}
                                      if isinstance(item["overrideReason"].get("userComment"), str) else {})}}],
    }
    implicated = _existing(tx, [finding["order"]] + finding["implicated"])
    if implicated:
        issue["implicated"] = implicated
    author = _author(ctx)
    if author:
        issue["author"] = author
        issue["mitigation"][0]["author"] = author
    when = item.get("outcomeTimestamp")
    if isinstance(when, str):
        issue["mitigation"][0]["date"] = when
    return issue


def record(services: Any, ctx: RequestContext, feedback: list[Any], patients: list[str]) -> list[str]:
    """Records each feedback item in one transaction; the DetectedIssue references written (and, in
    `patients`, whose records the cards were about)."""
    written: list[str] = []
    with services.store.transaction() as tx, services.store.reads_within(tx):
        for n, item in enumerate(feedback):
            where = f"feedback[{n}]"
            if not isinstance(item, dict) or not isinstance(item.get("card"), str):
                raise FHIRError(400, f"{where}: each feedback names its card's uuid", "required", where)
            card = C.recall(services.store, item["card"])
            if card is None or card["subject"] != ctx.caller.subject:
                raise FHIRError(404, f"{where}: no card {item['card']} was issued to you", "not-found", where)
            patients.append(card["patient"])
            outcome = item.get("outcome")
            if outcome not in ("accepted", "overridden"):
                raise FHIRError(400, f"{where}: outcome is 'accepted' or 'overridden'", "value", where)
            if not C.settle(tx, item["card"], outcome):
                raise FHIRError(409, f"{where}: card {item['card']} already has its feedback", "conflict", where)
            if outcome == "accepted":
                continue
            reason = (item.get("overrideReason") or {}).get("reason") if isinstance(item.get("overrideReason"), dict) \
                else None
            if not isinstance(reason, dict) or reason.get("code") not in card["finding"]["reasons"] \
                    or reason.get("system") != C.ACT:
                raise FHIRError(422, f"{where}: an override gives one of the card's overrideReasons "
                                     f"({C.ACT}: {', '.join(card['finding']['reasons'])})", "value",
                                f"{where}.overrideReason")
            issue = detected_issue(ctx, tx, card, item, reason)
            result = write.create(services, ctx, tx, "DetectedIssue", issue, location=where)
            written.append(f"DetectedIssue/{result.stored.id}")
    return written
