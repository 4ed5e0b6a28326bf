"""The IPS document Bundle: Composition first, then the Patient, the author Device and every entry the
sections name (IPS 2.0.0: Bundle-uv-ips, Composition-uv-ips)."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from ..patient_record import PatientRecord, Rows
from . import display as d
from .narrative import generated, paragraph, table
from .sections import SECTIONS, Section

IPS = "http://hl7.org/fhir/uv/ips/StructureDefinition/"
EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
AUTHOR_ID = "healthtwin-summary"
AUTHOR = {"resourceType": "Device", "id": AUTHOR_ID,
          "deviceName": [{"name": "Health Twin patient summary", "type": "user-friendly-name"}]}


def _empty_reason(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": EMPTY_REASON, "code": code, "display": display}], "text": display}


def _section(section: Section, found: list[Rows]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    resources = [res for rows in found for res in rows.resources]
    out: dict[str, Any] = {"title": section.title, "code": section.code()}
    if resources:
        inner = table(list(section.headers), [section.row(r) for r in resources])
        out["entry"] = [{"reference": f"{r['resourceType']}/{r['id']}"} for r in resources]
    elif any(rows.withheld for rows in found):
        inner = paragraph("Not available to your role.")
        out["emptyReason"] = _empty_reason("withheld", "Information Withheld")
    else:
        inner = paragraph("No information recorded.")
        out["emptyReason"] = _empty_reason("unavailable", "Unavailable")
    if any(rows.truncated for rows in found):
        inner += paragraph("Only the most recent entries are shown.")
    out["text"] = generated(inner)
    return out, resources


def build(record: PatientRecord, base_url: str) -> dict[str, Any]:
    got = record.read_all([read for section in SECTIONS for read in section.reads])  # the Patient's row too
    patient = record.patient()
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    sections, entries, seen = [], [], set()
    for section in SECTIONS:
        found = section.found(got)
        if not section.required and not any(rows.resources for rows in found):
            continue  # an optional section with nothing to say is left out
        body, resources = _section(section, found)
        sections.append(body)
        for res in resources:
            key = f"{res['resourceType']}/{res['id']}"
            if key not in seen:
                seen.add(key)
                entries.append({"fullUrl": f"{base_url}/{key}", "resource": res})
    composition_id = str(uuid.uuid4())
    composition = {
        "resourceType": "Composition", "id": composition_id,
        "meta": {"profile": [IPS + "Composition-uv-ips"]},
        "text": generated(paragraph(f"International Patient Summary of {d.name(patient) or patient['id']}"
                                    + (f", born {patient['birthDate']}" if patient.get("birthDate") else "")
                                    + f", generated {now[:10]} from the Health Twin record.")),
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5", "display": "Patient summary Document"}]},
        "subject": {"reference": f"Patient/{patient['id']}"}, "date": now,
        "author": [{"reference": f"Device/{AUTHOR_ID}"}],
        "title": f"International Patient Summary: {d.name(patient) or patient['id']}",
        "section": sections}
    bundle_entries = [{"fullUrl": f"urn:uuid:{composition_id}", "resource": composition},
                      {"fullUrl": f"{base_url}/Patient/{patient['id']}", "resource": patient},
                      {"fullUrl": f"{base_url}/Device/{AUTHOR_ID}", "resource": AUTHOR}] + entries
    return {"resourceType": "Bundle", "meta": {"profile": [IPS + "Bundle-uv-ips"]},
            "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
            "type": "document", "timestamp": now, "entry": bundle_entries}

