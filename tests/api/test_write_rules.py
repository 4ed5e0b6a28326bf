"""A package's write rules (api/write_rules.py) run inside the transaction of every write path: a check can
refuse a write so that nothing is stored, and a reaction's writes commit with the write that caused them."""
from __future__ import annotations

import orjson
from starlette.testclient import TestClient

from healthtwin.api.app import assemble
from healthtwin.api.plugins import Contribution
from healthtwin.api.routing import FHIRRouter
from healthtwin.api.services import Services
from healthtwin.api.write_rules import WriteEvent, WriteRule
from healthtwin.fhir.outcome import FHIRError
from healthtwin.request import OpenPolicy
from healthtwin.store.sqlite import SQLiteStore


def _app(tmp_path, seen: list[tuple[str, str, str | None]]):
    def check(event: WriteEvent) -> None:
        if event.resource is not None and event.resource.get("status") == "entered-in-error":
            raise FHIRError(409, "this registry does not take entered-in-error flags")
        event.resource is not None and event.resource.setdefault("category", [{"text": "checked"}])

    def react(event: WriteEvent) -> None:
        seen.append((event.interaction, event.rtype, event.stored.id if event.stored else None))
        if event.interaction != "delete":
            event.tx.create("Basic", {"resourceType": "Basic", "code": {"text": f"after {event.stored.id}"}})

    rule = WriteRule("flags", ("Flag",), check=check, react=react)
    services = Services.build(SQLiteStore(str(tmp_path / "rules.sqlite")), OpenPolicy())
    return assemble(services, FHIRRouter(services, "/fhir"), [Contribution("flags", write_rules=[rule])])


FLAG = {"resourceType": "Flag", "status": "active", "code": {"text": "critical potassium"},
        "subject": {"display": "a patient"}}


def _basics(client) -> list[str]:
    return sorted(e["resource"]["code"]["text"] for e in client.get("/fhir/Basic").json().get("entry", []))


def test_rules_check_and_react_on_every_write_path(tmp_path):
    seen: list = []
    with TestClient(_app(tmp_path, seen)) as client:
        created = client.post("/fhir/Flag", json=FLAG)
        assert created.status_code == 201
        fid = created.json()["id"]
        assert created.json()["category"] == [{"text": "checked"}]  # the check completed what was stored
        assert _basics(client) == [f"after {fid}"]
        assert client.put(f"/fhir/Flag/{fid}", json={**FLAG, "id": fid, "status": "inactive"}).status_code == 200
        patch = [{"op": "replace", "path": "/status", "value": "active"}]
        assert client.patch(f"/fhir/Flag/{fid}", content=orjson.dumps(patch),
                            headers={"Content-Type": "application/json-patch+json"}).status_code == 200
        bundle = {"resourceType": "Bundle", "type": "transaction",
                  "entry": [{"resource": FLAG, "request": {"method": "POST", "url": "Flag"}}]}
        assert client.post("/fhir", json=bundle).status_code == 200
        assert client.delete(f"/fhir/Flag/{fid}").status_code in (200, 204)
    assert [s[0] for s in seen] == ["create", "update", "update", "create", "delete"]
    assert seen[0][2] == fid


def test_a_refusing_check_stores_nothing(tmp_path):
    seen: list = []
    with TestClient(_app(tmp_path, seen)) as client:
        refused = client.post("/fhir/Flag", json={**FLAG, "status": "entered-in-error"})
        assert refused.status_code == 409 and refused.json()["resourceType"] == "OperationOutcome"
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": FLAG, "request": {"method": "POST", "url": "Flag"}},
            {"resource": {**FLAG, "status": "entered-in-error"}, "request": {"method": "POST", "url": "Flag"}}]}
        assert client.post("/fhir", json=bundle).status_code == 409
        assert client.get("/fhir/Flag").json().get("total", 0) == 0
        assert _basics(client) == []  # the first entry's reaction rolled back with the transaction
