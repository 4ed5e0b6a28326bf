"""May this caller write this resource? Checked on the resource's content before it is validated or stored."""
from __future__ import annotations

from typing import Any

import orjson

from ..request import RequestContext
from .access import Access, integration


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        ref = value.get("reference")
        return [ref] if isinstance(ref, str) else []
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def _current(policy: Any, ref: str) -> dict[str, Any] | None:
    rtype, _, rid = ref.partition("/")
    if not rid or "/" in rid:
        return None
    stored = policy.store.read(rtype, rid)
    if stored is None or stored.deleted or stored.content is None:
        return None
    return orjson.loads(stored.content)


def check_consent_author(access: Access, consent: dict[str, Any]) -> None:
    """A privacy Consent (the kind security/consent.py evaluates, which can refuse access) is the citizen's own
    word: only the citizen, their representative (a citizen whose wards include the patient) or an
    administrator may create, change or withdraw one. `consent` is the version written, or the one replaced."""
    from .consent import is_privacy
    from .policy import forbidden
    if access.everything or not is_privacy(consent):
        return
    patients = [p.removeprefix("Patient/") for p in _refs(consent.get("patient"))]
    if access.role == "citizen" and patients and all(p in (access.patients or ()) for p in patients):
        return
    raise forbidden("A privacy Consent is created, changed or withdrawn only by the citizen, their legal "
                    "representative or an administrator")


def _patient_links(patient: dict[str, Any] | None) -> set[str]:
    return {r for link in (patient or {}).get("link") or [] if isinstance(link, dict)
            for r in _refs(link.get("other")) if r.startswith("RelatedPerson/")}


def represents(policy: Any, person: dict[str, Any]) -> bool:
    """Whether a RelatedPerson makes someone a patient's representative (access.wards): it states a
    parent/guardian relationship, or the patient's record links to it."""
    from .access import GUARDIAN_CODES
    codes = {c.get("code") for rel in person.get("relationship") or [] if isinstance(rel, dict)
             for c in rel.get("coding") or [] if isinstance(c, dict)}
    if codes & GUARDIAN_CODES:
        return True
    ward = next(iter(_refs(person.get("patient"))), "")
    return bool(person.get("id")) and f"RelatedPerson/{person['id']}" in _patient_links(
        _current(policy, ward) if ward.startswith("Patient/") else None)


def check_representation(policy: Any, access: Access, rtype: str, resource: dict[str, Any],
                         replaced: bool = False) -> None:
    """Who represents a citizen gives that person the citizen's whole record and their word on consent, so it is
    recorded by an administrator (the registry): a RelatedPerson that represents (see `represents`), and the
    RelatedPerson links of a Patient. `resource` is the version written, or (`replaced`) the one it replaces."""
    from .policy import forbidden
    if access.everything:
        return
    if rtype == "RelatedPerson" and represents(policy, resource):
        raise forbidden("A parent, guardian or linked representative is recorded by an administrator")
    if rtype == "Patient" and not replaced:
        before = _current(policy, f"Patient/{resource['id']}") if isinstance(resource.get("id"), str) else None
        if _patient_links(resource) != _patient_links(before):
            raise forbidden("A Patient's links to representatives (RelatedPerson) are changed by an administrator")


def check_write(policy: Any, ctx: RequestContext, access: Access, rtype: str, resource: dict[str, Any],
                queries: list[str]) -> None:
    from .policy import forbidden
    if access.everything:
        return
    if queries:
        raise forbidden("Granular scopes grant reads and searches only")
    if rtype == "Consent":
        check_consent_author(access, resource)
    check_representation(policy, access, rtype, resource)
    role = access.role
    if role == "citizen":
        # A citizen's own word on sharing is the one thing they write: their (or their ward's) Consent.
        patient = _refs(resource.get("patient"))
        if rtype == "Consent" and patient and all(p.removeprefix("Patient/") in (access.patients or ())
                                                  for p in patient):
            return
        # ...and their messages to their care team about their record (a prescription renewal, a correction
        # asked for): a Communication about themselves or a ward, sent as themselves or that ward.
        mine = access.patients or ()
        subject, sender = _refs(resource.get("subject")), _refs(resource.get("sender"))
        if rtype == "Communication" and subject and sender and all(
                r.startswith("Patient/") and r.removeprefix("Patient/") in mine for r in subject + sender):
            return
        raise forbidden("Citizens may only write Consent resources, and Communications to their care team, about "
                        "themselves or their wards")
    if role == "clinician":
        if rtype == "Patient":
            if resource.get("id") is None or resource.get("id") in (access.patients or ()):
                return
            raise forbidden("You may only update Patients in your care")
        code = policy.primary(rtype)
        if code is None:
            raise forbidden(f"Your role may not write {rtype} resources")
        rows = policy.registry.extractor(rtype)(resource)
        if any(r[0] == code and r[2] == "Patient" and r[3] in (access.patients or ()) for r in rows):
            return
        raise forbidden(f"{rtype}.{code} must be a patient in your care")
    if role == "laboratory" and rtype in ("Observation", "DiagnosticReport"):
        subject = _refs(resource.get("subject"))
        for ref in _refs(resource.get("basedOn")):
            if not ref.startswith("ServiceRequest/"):
                continue
            order = _current(policy, ref)
            if order is None:
                continue
            performers = _refs(order.get("performer"))
            if access.organization in performers and subject and subject == _refs(order.get("subject")):
                return
        raise forbidden("Laboratories may only report results for orders addressed to them (basedOn a "
                        "ServiceRequest whose performer is your organization, same subject)")
    if role == "laboratory" and rtype == "Task":
        # Its own fulfilment Tasks: owned by the laboratory, for an order addressed to it
        orders = [_current(policy, r) for r in _refs(resource.get("basedOn")) if r.startswith("ServiceRequest/")]
        if access.organization in _refs(resource.get("owner")) and orders and all(
                o is not None and access.organization in _refs(o.get("performer")) for o in orders):
            return
        raise forbidden("Laboratories may only write Tasks they own, for orders addressed to them")
    if role == "pharmacy" and rtype == "MedicationDispense":
        performers = [r for p in resource.get("performer") or [] if isinstance(p, dict) for r in _refs(p.get("actor"))]
        subject = _refs(resource.get("subject"))
        prescriptions = _refs(resource.get("authorizingPrescription"))
        if access.organization in performers and prescriptions and subject:
            orders = [_current(policy, r) for r in prescriptions if r.startswith("MedicationRequest/")]
            if orders and all(o is not None and _refs(o.get("subject")) == subject for o in orders):
                return
        raise forbidden("Pharmacies may only record dispenses they perform, against existing prescriptions "
                        "for the same patient")
    if integration(ctx, access):
        return  # a backend integration: its scopes decide
    raise forbidden(f"Your role may not write {rtype} resources")
