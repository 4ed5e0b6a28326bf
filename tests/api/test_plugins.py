"""A package plugs into the application through api/plugins.Contribution: its routes are mounted, its
operations dispatched and listed in the CapabilityStatement, its start/stop hooks run with the lifespan."""
from __future__ import annotations

from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from healthtwin.api.app import assemble
from healthtwin.api.operations import registry
from healthtwin.api.plugins import Contribution
from healthtwin.api.routing import FHIRRouter
from healthtwin.api.services import Services
from healthtwin.request import OpenPolicy
from healthtwin.store.sqlite import SQLiteStore


def test_a_contribution_adds_routes_operations_and_lifespan_hooks(tmp_path, monkeypatch):
    # The operation stays this test's own: a copy of the table, taken once api/'s own operations are in it
    monkeypatch.setattr(registry, "_OPS", registry.all_operations())
    events: list[str] = []

    async def hello(request):
        return PlainTextResponse("hello from a package")

    async def handler(router, request, ctx, rtype, rid, params, body):
        return JSONResponse({"resourceType": "Parameters", "parameter": [{"name": "id", "valueString": rid}]})

    op = registry.define("twin-forecast", types=["Patient"], instance=True,
                         definition="http://example.org/OperationDefinition/twin-forecast")(handler)
    plugin = Contribution("twin", routes=[Route("/twin/hello", hello)], operations=[op],
                          start=lambda: events.append("start"), stop=lambda: events.append("stop"))
    services = Services.build(SQLiteStore(str(tmp_path / "plugins.sqlite")), OpenPolicy())
    app = assemble(services, FHIRRouter(services, "/fhir"), [plugin])
    with TestClient(app) as client:
        assert events == ["start"]
        assert client.get("/twin/hello").text == "hello from a package"
        r = client.get("/fhir/Patient/p1/$twin-forecast")
        assert r.status_code == 200 and r.json()["parameter"][0]["valueString"] == "p1"
        assert client.get("/fhir/Patient/$twin-forecast").status_code != 200  # instance level only, as defined
        rest = client.get("/fhir/metadata").json()["rest"][0]
        patient = next(r for r in rest["resource"] if r["type"] == "Patient")
        assert "twin-forecast" in {o["name"] for o in patient.get("operation", [])}
    assert events == ["start", "stop"]


def test_the_composed_application_has_analytics_contribution(tmp_path):
    """$viewdefinition-run and /analytics reach api/ through analytics/plugin.py, not an import in api/."""
    from healthtwin.composition import AppSettings, build_app
    store = SQLiteStore(str(tmp_path / "composed.sqlite"))
    app = build_app(store, AppSettings(data_dir=tmp_path / "data", analytics_dir=tmp_path / "data", rate=None,
                                       audit=False), policy=OpenPolicy())
    with TestClient(app) as client:
        assert client.get("/analytics/indicators").status_code == 200
        ops = {o["name"] for o in client.get("/fhir/metadata").json()["rest"][0].get("operation", [])}
        assert "viewdefinition-run" in ops
