"""Fixtures for the web pages: a real application (SMART policy, tokens, audit, analytics) over a small
record written through the FHIR API, with one account per persona, and a browser-like client that signs in
through the built-in SMART login exactly as a person does."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import pytest

PUBLIC = "http://127.0.0.1:8080"
PASSWORD = "a long demo password"
ORG, OTHER_ORG = "org-poly-1", "org-poly-2"


@dataclass
class Site:
    client: Any
    data_dir: Any
    admin: str  # an administrator's bearer token, for setting up and checking what pages did

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.request(method, "/fhir/" + path, json=body, headers={
            "authorization": f"Bearer {self.admin}", "content-type": "application/fhir+json"})


def sign_in(client: Any, username: str, password: str = PASSWORD, lang: str | None = None) -> Any:
    """Through /app/login, the SMART login form and /app/callback; returns the callback's answer."""
    start = client.get("/app/login" + (f"?lang={lang}" if lang else ""), follow_redirects=False)
    assert start.status_code == 303 and start.headers["location"].startswith("/auth/authorize?")
    page = client.get(start.headers["location"])
    assert page.status_code == 200
    form = {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                                                         page.text)}
    form.update(username=username, password=password)
    back = client.post("/auth/authorize", data=form, follow_redirects=False)
    assert back.status_code == 303, back.text
    return client.get(back.headers["location"].removeprefix(PUBLIC), follow_redirects=False)


def csrf_of(page_text: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page_text).group(1)


def _resources() -> list[dict[str, Any]]:
    lab = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}
    glucose = {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]}
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": ORG, "name": "Polyclinic 1"},
        {"resourceType": "Organization", "id": OTHER_ORG, "name": "Polyclinic 2"},
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Əliyeva", "given": ["Aysel"]}],
         "gender": "female", "birthDate": "1980-04-02", "managingOrganization": {"reference": f"Organization/{ORG}"},
         "identifier": [{"system": "https://health.gov.az/fhir/sid/fin", "value": "AB12CD3"}]},
        {"resourceType": "Patient", "id": "p2", "name": [{"family": "Məmmədov", "given": ["Orxan"]}],
         "gender": "male", "birthDate": "1975-01-09"},
        {"resourceType": "EpisodeOfCare", "id": "eoc1", "status": "active", "patient": {"reference": "Patient/p1"},
         "managingOrganization": {"reference": f"Organization/{ORG}"}},
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
         "code": {"text": "Type 2 diabetes mellitus"}, "onsetDateTime": "2019-05-01",
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]}},
        {"resourceType": "MedicationRequest", "id": "rx1", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-11-01",
         "medicationCodeableConcept": {"text": "metformin", "coding": [
             {"system": "http://www.whocc.no/atc", "code": "A10BA02", "display": "metformin"}]}},
        {"resourceType": "ExplanationOfBenefit", "id": "eob1", "status": "active", "use": "claim",
         "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
         "patient": {"reference": "Patient/p1"}, "created": "2026-10-05", "outcome": "complete",
         "insurer": {"reference": f"Organization/{ORG}"}, "provider": {"reference": f"Organization/{ORG}"},
         "insurance": [{"focal": True, "coverage": {"display": "Mandatory health insurance"}}],
         "payment": {"amount": {"value": 42.5, "currency": "AZN"}}},
    ]
    for i, (day, value) in enumerate([("2026-01-10", 5.2), ("2026-05-10", 6.4), ("2026-09-10", 7.9)]):
        out.append({"resourceType": "Observation", "id": f"o{i}", "status": "final", "category": [{"coding": [lab]}],
                    "code": glucose, "subject": {"reference": "Patient/p1"}, "effectiveDateTime": day,
                    "valueQuantity": {"value": value, "unit": "mmol/L"},
                    "referenceRange": [{"low": {"value": 3.9}, "high": {"value": 6.1}}]})
    return out


@pytest.fixture
def site(tmp_path):
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    from healthtwin.security.clients import add_user, ensure_security_schema
    from healthtwin.security.commands import mint
    from tests.conftest import make_store
    store = make_store("sqlite", tmp_path)
    data = tmp_path / "data"
    app = build_app(store, AppSettings(data_dir=data, public_url=PUBLIC, rate=None, analytics_dir=tmp_path / "an"))
    ensure_security_schema(store)
    add_user(store, "aysel", PASSWORD, "citizen", patient="Patient/p1")
    add_user(store, "dr", PASSWORD, "clinician", organization=f"Organization/{ORG}")
    add_user(store, "analyst", PASSWORD, "analyst")
    add_user(store, "epi", PASSWORD, "epidemiologist", practitioner="Practitioner/prac-epi")
    with TestClient(app, base_url=PUBLIC) as client:
        admin = mint(data, PUBLIC, "admin", "person", ["user/*.cruds"], ["administrator"])
        s = Site(client, data, admin)
        for resource in _resources():
            answer = s.api("PUT", f"{resource['resourceType']}/{resource['id']}", resource)
            assert answer.status_code in (200, 201), answer.text
        yield s
    store.close()
