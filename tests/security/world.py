"""A small, hand-made Shared Health Record and one token per role, served by the real application with the
secure policy: the ground truth the authorization tests compare answers against."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthtwin.security.keys import KeySet
from healthtwin.security.tokens import TokenService

BASE = "http://testserver"
FIN = "https://health.gov.az/fhir/sid/fin"
RX = "https://rx.example/id"
PSY = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}
VERY = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "V"}


def _ref(r: str) -> dict[str, str]:
    return {"reference": r}


def _obs(oid: str, patient: str, labels: list | None = None, based_on: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Observation", "id": oid, "status": "final",
                           "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                           "subject": _ref(f"Patient/{patient}"), "valueQuantity": {"value": 7.1, "unit": "%"}}
    if labels:
        res["meta"] = {"security": labels}
    if based_on:
        res["basedOn"] = [_ref(based_on)]
    return res


def resources() -> list[dict[str, Any]]:
    orgs = [{"resourceType": "Organization", "id": o, "name": o} for o in
            ("org-a", "org-b", "org-lab", "org-lab2", "org-pharm", "org-ins", "org-ins2")]
    return orgs + [
        {"resourceType": "Practitioner", "id": "doc-a", "name": [{"family": "Doc"}]},
        {"resourceType": "Patient", "id": "p1", "identifier": [{"system": FIN, "value": "AAA1111"}],
         "name": [{"family": "Aliyeva", "given": ["Aysel"]}], "gender": "female", "birthDate": "1990-01-01",
         "telecom": [{"system": "phone", "value": "+994501234567"}], "address": [{"city": "Bakı"}]},
        {"resourceType": "Patient", "id": "p2", "identifier": [{"system": FIN, "value": "BBB2222"}],
         "name": [{"family": "Mammadov"}], "gender": "male", "birthDate": "1980-05-05"},
        {"resourceType": "Patient", "id": "kid", "name": [{"family": "Aliyev", "given": ["Kamal"]}],
         "birthDate": "2018-03-03", "link": [{"other": _ref("RelatedPerson/rp-kid"), "type": "seealso"}]},
        {"resourceType": "RelatedPerson", "id": "rp-kid", "patient": _ref("Patient/kid"),
         "identifier": [{"system": FIN, "value": "AAA1111"}],
         "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}]},
        {"resourceType": "Encounter", "id": "e1", "status": "in-progress", "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": _ref("Patient/p1"), "serviceProvider": _ref("Organization/org-a")},
        {"resourceType": "Encounter", "id": "e2", "status": "finished", "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": _ref("Patient/p2"), "serviceProvider": _ref("Organization/org-a")},
        {"resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order",
         "subject": _ref("Patient/p1"), "performer": [_ref("Organization/org-lab")]},
        {"resourceType": "ServiceRequest", "id": "sr2", "status": "active", "intent": "order",
         "subject": _ref("Patient/p2"), "performer": [_ref("Organization/org-lab2")]},
        _obs("o1", "p1", based_on="ServiceRequest/sr1"),
        _obs("o1psy", "p1", [PSY]),
        _obs("o1v", "p1", [VERY]),
        _obs("o2", "p2", based_on="ServiceRequest/sr2"),
        _obs("okid", "kid"),
        {"resourceType": "Coverage", "id": "c1", "status": "active", "beneficiary": _ref("Patient/p1"),
         "payor": [_ref("Organization/org-ins")]},
        {"resourceType": "Coverage", "id": "c2", "status": "active", "beneficiary": _ref("Patient/p2"),
         "payor": [_ref("Organization/org-ins2")]},
        {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
         "identifier": [{"system": RX, "value": "RX1"}], "subject": _ref("Patient/p1"),
         "medicationCodeableConcept": {"text": "metformin"}},
        {"resourceType": "MedicationRequest", "id": "mr2", "status": "active", "intent": "order",
         "identifier": [{"system": RX, "value": "RX2"}], "subject": _ref("Patient/p2"),
         "medicationCodeableConcept": {"text": "insulin"}},
    ]


# What each role may see of the patient-level resources above (directory resources are visible to all).
PATIENT_LEVEL = {"p1", "p2", "kid", "rp-kid", "e1", "e2", "sr1", "sr2", "o1", "o1psy", "o1v", "o2", "okid", "c1",
                 "c2", "mr1", "mr2"}
VISIBLE = {
    "administrator": PATIENT_LEVEL,
    "citizen": {"p1", "kid", "rp-kid", "e1", "sr1", "o1", "o1psy", "o1v", "okid", "c1", "mr1"},
    "clinician": {"p1", "e1", "sr1", "o1", "c1", "mr1"},
    "laboratory": {"sr1", "o1", "p1"},
    "pharmacy": set(),  # reads by id: none; identifier searches are tested apart
    "insurer": {"c1", "p1"},
    "analyst": set(),
    "epidemiologist": set(),  # reads the detection run's alerts addressed to them: no patient-level resource
    "auditor": set(),
}
TYPES = {r["id"]: r["resourceType"] for r in resources()}

# What a registry derives when the world is written, part of the same record: the immunization registry's
# recommendation for the child (registries/immunization/live.py), seen by whoever sees the child.
DERIVED = {"imr-aze-kid": "ImmunizationRecommendation"}
PATIENT_LEVEL |= set(DERIVED)
for _seen in VISIBLE.values():
    if "kid" in _seen:
        _seen |= set(DERIVED)
TYPES |= DERIVED


@dataclass
class World:
    keys: KeySet
    tokens: TokenService
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def mint(self, role: str, **kw: Any) -> dict[str, str]:
        token, _ = self.tokens.mint(**kw)
        return {"authorization": f"Bearer {token}"}


ROLE_TOKENS: dict[str, dict[str, Any]] = {
    "administrator": dict(subject="root", kind="person", scopes=["user/*.cruds"], roles=["administrator"]),
    "citizen": dict(subject="alice", kind="person", scopes=["user/*.cruds"], roles=["citizen"],
                    patient="Patient/p1", fhir_user="Patient/p1"),
    "clinician": dict(subject="dr-a", kind="person", scopes=["user/*.cruds"], roles=["clinician"],
                      organization="Organization/org-a", fhir_user="Practitioner/doc-a"),
    "laboratory": dict(subject="lab-client", kind="system", scopes=["system/*.rs", "system/Observation.cu"],
                       roles=["laboratory"], organization="Organization/org-lab", client_id="lab-client"),
    "pharmacy": dict(subject="pharm-client", kind="system", scopes=["system/*.rs", "system/MedicationDispense.c"],
                     roles=["pharmacy"], organization="Organization/org-pharm", client_id="pharm-client"),
    "insurer": dict(subject="ins-client", kind="system", scopes=["system/*.rs"], roles=["insurer"],
                    organization="Organization/org-ins", client_id="ins-client"),
    "analyst": dict(subject="ana", kind="person", scopes=["user/*.rs"], roles=["analyst"]),
    "epidemiologist": dict(subject="epi", kind="person", scopes=["user/*.rs"], roles=["epidemiologist"],
                           fhir_user="PractitionerRole/prole-epi-sumqayit"),
    "auditor": dict(subject="aud", kind="person", scopes=["user/*.rs"], roles=["auditor"]),
}


def build(store: Any, tmp_path: Path, rate: tuple[float, float] | None = None):
    """(TestClient context manager, World) over `store` holding resources(), loaded by the administrator."""
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    keys = KeySet.generate()
    tokens = TokenService(keys, BASE, BASE + "/fhir")
    app = build_app(store, AppSettings(data_dir=tmp_path / "data", public_url=BASE, rate=rate), tokens=tokens)
    world = World(keys, tokens)
    for role, claims in ROLE_TOKENS.items():
        world.headers[role] = world.mint(role, **claims)
    return TestClient(app, base_url=BASE), world


def load(client: Any, world: World) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources()]}
    r = client.post("/fhir", json=bundle, headers=world.headers["administrator"])
    assert r.status_code == 200, r.text
