"""The audit trail records search criteria with identifiers only as keyed indexes, however the criteria
arrive: a URL whose values hold a `?`, a bare `sys|FIN` with no `=`, a POST _search form, a bulk export's
`_typeFilter`. Both databases, through the real app."""
from __future__ import annotations

import base64

import pytest
from starlette.testclient import TestClient

from healthtwin.composition import create_app
from healthtwin.request import OpenPolicy
from healthtwin.security.audit import decode_event

from .test_crypto import FIN, PATIENT

SYSTEM = "urn:oid:1.2.246.21"


def _queries(store) -> list[str]:
    events = [decode_event(bytes(r[0])) for r in store.query("SELECT event FROM audit_log ORDER BY seq", [])]
    return [base64.b64decode(e["query"]).decode() for ev in events for e in ev.get("entity", []) if "query" in e]


@pytest.fixture
def client(store, tmp_path):
    app = create_app(store, policy=OpenPolicy(), data_dir=tmp_path / "data", public_url="http://testserver",
                     rate=None)
    with TestClient(app) as c:
        org = {"resourceType": "Organization", "id": "hus", "name": "HUS"}  # the Patient's managingOrganization
        assert c.put("/fhir/Organization/hus", json=org).status_code == 201
        assert c.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
        yield c


@pytest.mark.parametrize("url", [
    f"/fhir/Patient?identifier={SYSTEM}|{FIN}&_x=?",  # the redaction used to split at the last `?`
    f"/fhir/Patient?identifier={SYSTEM}|{FIN}&_x=a%3Fb",
    f"/fhir/Patient?gender=female&{SYSTEM}|{FIN}",  # no `=`: not a parameter name, still not in clear
])
def test_a_get_search_never_records_the_identifier_in_clear(client, store, url):
    client.get(url)
    queries = [q for q in _queries(store) if "gender" in q or "_x" in q]
    assert queries, "the search was audited with its query"
    assert FIN not in " ".join(queries)
    assert store.at_rest.audit_index(f"{SYSTEM}|{FIN}") in " ".join(queries)


def test_a_post_search_records_its_form_criteria_redacted_like_a_get(client, store):
    r = client.post("/fhir/Patient/_search", data={"identifier": f"{SYSTEM}|{FIN}", "gender": "female"},
                    params={"_count": "5"})
    assert r.status_code == 200 and r.json()["total"] == 1
    client.get("/fhir/Patient", params={"identifier": f"{SYSTEM}|{FIN}", "gender": "female", "_count": "5"})
    post, get = _queries(store)[-2:]
    assert FIN not in post and store.at_rest.audit_index(f"{SYSTEM}|{FIN}") in post
    assert sorted(post.split("&")) == sorted(get.split("&"))  # the same criteria, recorded the same way


def test_bulk_export_type_filters_are_redacted(store):
    recorded = store.at_rest.redact_query(
        f"_type=Patient,Observation&_typeFilter=Patient%3Fidentifier%3D{SYSTEM}%7C{FIN},"
        f"Observation%3Fcode%3Dx,y&_typeFilter=Patient%3Fname%3DAino")
    assert FIN not in recorded and "Aino" not in recorded
    assert store.at_rest.audit_index(f"{SYSTEM}|{FIN}") in recorded and "Observation%3Fcode%3Dx,y" in recorded
