"""Privacy consents (R4 Consent, scope patient-privacy): a citizen refusing to share with institutions.

What is understood, for an organization O asking about patient P:
* Only `status = active` Consents with scope `patient-privacy` about P count; a `period` (on the Consent's
  provision) outside today makes a provision inactive.
* A `deny` provision with `actor`s refuses the organizations named there; a `deny` without actors refuses
  every organization except the Consent's authors (`Consent.organization`), minus nested `permit`
  provisions that name actors (exceptions).
* A deny provision with `securityLabel`s refuses only resources carrying those labels (a category consent,
  e.g. mental health); without labels it refuses the whole record.
* Anything that cannot be evaluated (no provision type, an actor without a literal reference, a label
  without a code, an unknown type) counts as a refusal of the whole record for everyone but the authors:
  when in doubt, the answer is no.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..fhir.dates import parse_range
from ..fhir.search_query import Criterion, Value

PRIVACY_SCOPE = "patient-privacy"


class Malformed(Exception):
    pass


@dataclass
class ConsentDecision:
    denied: set[str] = field(default_factory=set)  # patient ids refused entirely
    labels: set[str] = field(default_factory=set)  # label codes refused (for some patient)


def evaluate_consents(policy: Any, patients: set[str], organization: str | None) -> ConsentDecision:
    decision = ConsentDecision()
    if not patients:
        return decision
    from .access import _rows
    ids = sorted(patients)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        crit = [Criterion("patient", "reference", None, [Value(f"Patient/{p}") for p in chunk]),
                Criterion("status", "token", None, [Value("active")])]
        for (content,) in _rows(policy, "Consent", crit, "r0.content"):
            if not content:
                continue
            consent = orjson.loads(bytes(content))
            patient = ((consent.get("patient") or {}).get("reference") or "").removeprefix("Patient/")
            if patient not in patients or not is_privacy(consent):
                continue
            denied, labels = applies(consent, organization)
            if denied:
                decision.denied.add(patient)
            decision.labels |= labels
    return decision


def is_privacy(consent: dict[str, Any]) -> bool:
    """A privacy Consent: one this module evaluates, so one that can refuse access (whatever its status now)."""
    scope = consent.get("scope")
    codings = scope.get("coding") if isinstance(scope, dict) else None
    return any(isinstance(c, dict) and c.get("code") == PRIVACY_SCOPE for c in codings or [])


def applies(consent: dict[str, Any], organization: str | None) -> tuple[bool, set[str]]:
    """(whole record refused, label codes refused) for `organization`."""
    authors = {(o or {}).get("reference") for o in consent.get("organization") or []}
    if organization is not None and organization in authors:
        return False, set()
    try:
        return _provision(consent.get("provision"), organization, authors, top=True)
    except Malformed:
        return True, set()


def _provision(prov: Any, organization: str | None, authors: set, top: bool) -> tuple[bool, set[str]]:
    if not isinstance(prov, dict):
        raise Malformed("no provision")
    kind = prov.get("type")
    if kind not in ("deny", "permit"):
        raise Malformed("provision type")
    if not _in_period(prov.get("period")):
        return False, set()
    actors = _actors(prov)
    labels = _labels(prov)
    nested = prov.get("provision") or []
    if not isinstance(nested, list):
        raise Malformed("nested provisions")
    if kind == "deny":
        hit = (organization in actors) if actors else True
        # Nested permits naming actors are exceptions to a blanket deny.
        for sub in nested:
            if isinstance(sub, dict) and sub.get("type") == "permit" and organization in _actors(sub):
                hit = False
        if not hit:
            return False, set()
        return (not labels), labels
    whole, refused = False, set()
    for sub in nested:
        if isinstance(sub, dict) and sub.get("type") == "permit":
            continue
        w, lab = _provision(sub, organization, authors, top=False)
        whole, refused = whole or w, refused | lab
    return whole, refused


def _actors(prov: dict[str, Any]) -> set[str]:
    out = set()
    for actor in prov.get("actor") or []:
        ref = ((actor or {}).get("reference") or {}).get("reference") if isinstance(actor, dict) else None
        if not isinstance(ref, str) or "/" not in ref:
            raise Malformed("actor without a literal reference")
        out.add(ref)
    return out


def _labels(prov: dict[str, Any]) -> set[str]:
    out = set()
    for coding in prov.get("securityLabel") or []:
        code = coding.get("code") if isinstance(coding, dict) else None
        if not isinstance(code, str) or not code:
            raise Malformed("security label without a code")
        out.add(code)
    return out


def _in_period(period: Any) -> bool:
    if not period:
        return True
    if not isinstance(period, dict):
        raise Malformed("period")
    now = time.time()
    try:
        if period.get("start") and parse_range(period["start"])[0] > now:
            return False
        if period.get("end") and parse_range(period["end"])[1] <= now:
            return False
    except ValueError:
        raise Malformed("period dates") from None
    return True
