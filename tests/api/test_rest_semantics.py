"""REST semantics from R4 http.html the server must keep, on both databases: what it cannot do it refuses
clearly, and what the CapabilityStatement lists is what works."""
from __future__ import annotations

SUBSCRIPTION = {"resourceType": "Subscription", "status": "requested", "reason": "notify me",
                "criteria": "Observation?code=http://loinc.org|4548-4",
                "channel": {"type": "rest-hook", "endpoint": "https://example.org/hook", "payload": "application/fhir+json"}}


def _refused_as_unsupported(r) -> None:
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert issue["code"] == "not-supported" and "Subscription" in issue["diagnostics"]


def test_subscriptions_are_refused_while_nothing_delivers_them(client):
    _refused_as_unsupported(client.post("/fhir/Subscription", json=SUBSCRIPTION))
    _refused_as_unsupported(client.put("/fhir/Subscription/s1", json={**SUBSCRIPTION, "id": "s1"}))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "tp"}, "request": {"method": "PUT", "url": "Patient/tp"}},
        {"resource": SUBSCRIPTION, "request": {"method": "POST", "url": "Subscription"}}]}
    _refused_as_unsupported(client.post("/fhir", json=bundle))
    assert client.get("/fhir/Patient/tp").status_code == 404  # the transaction stored nothing
    assert client.get("/fhir/Subscription?_summary=count").json()["total"] == 0


def test_capability_statement_lists_only_what_works(client):
    cs = client.get("/fhir/metadata").json()
    types = {r["type"] for r in cs["rest"][0]["resource"]}
    assert "Subscription" not in types and {"Patient", "Observation"} <= types
    assert cs["format"] == ["application/fhir+json", "json"]  # no XML: asking for it is 406
