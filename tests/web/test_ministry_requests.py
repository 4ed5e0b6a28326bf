"""The ministry pages make only valid requests: after each page (its drill-downs and exports included) the
audit trail holds no refused (4xx) request. A page that probed a route with an incomplete request (the
forecasts without a syndrome, to learn whether the route is there) left a 400 in the trail at every visit."""
from __future__ import annotations

from .conftest import PUBLIC, sign_in

PAGES = ["/app/ministry", "/app/ministry/indicator/population", "/app/ministry/indicator/population?by=sex",
         "/app/ministry/indicator/population?region=Bak%C4%B1&by=district",
         "/app/ministry/indicator/encounter_rate?by=age", "/app/ministry/indicator/syndrome_cases",
         "/app/ministry/indicator/syndrome_cases?interval=year", "/app/ministry/indicator/bed_occupancy",
         "/app/ministry/indicator/bed_occupancy?interval=month",  # a census is not summed: by day only
         "/app/ministry/indicator/vaccination_coverage",
         "/app/ministry/indicator/population/export.csv?by=region",
         "/app/ministry/indicator/population/export.svg?by=region&chart=map",
         "/app/ministry/alerts", "/app/ministry/alerts?status=all", "/app/ministry/forecasts"]


def _refused(site) -> list[dict]:
    """The audit trail's refused requests (outcome 4: a client error), newest first."""
    answer = site.client.get("/fhir/$audit-trail", params={"outcome": "4", "_count": "100"},
                             headers={"authorization": f"Bearer {site.admin}"})
    assert answer.status_code == 200, answer.text
    return [e["resource"] for e in answer.json().get("entry") or []]


def _what(event: dict) -> str:
    subtype = [s.get("code") for s in event.get("subtype") or []]
    queries = [e.get("description") or "" for e in event.get("entity") or [] if "query" in e]
    return f"{event.get('recorded')} {subtype} {queries}"


def test_no_ministry_page_leaves_a_refused_request_in_the_audit_trail(site):
    assert site.client.post("/analytics/refresh", headers={"authorization": f"Bearer {site.admin}"}).status_code == 200
    c = site.client
    sign_in(c, "analyst")
    before = len(_refused(site))
    for path in PAGES:
        answer = c.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        refused = _refused(site)
        assert len(refused) == before, (path, [_what(e) for e in refused[: len(refused) - before]])
    # the overview still links to the alerts and the forecasts, which this server has
    overview = c.get("/app/ministry").text
    assert "/app/ministry/alerts" in overview and "/app/ministry/forecasts" in overview


def test_the_overview_says_a_section_is_not_there_when_the_server_lacks_its_route(tmp_path):
    """Without an analytics folder the server has no /analytics routes: the overview cannot list indicators and
    says so, and `Api.serves` reads the route table rather than guessing."""
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    from healthtwin.web.asgi_client import _routes
    from tests.conftest import make_store
    store = make_store("sqlite", tmp_path)
    try:
        with_analytics = build_app(store, AppSettings(data_dir=tmp_path / "d1", public_url=PUBLIC, rate=None,
                                                      analytics_dir=tmp_path / "an"))
        bare = build_app(store, AppSettings(data_dir=tmp_path / "d2", public_url=PUBLIC, rate=None))
        with TestClient(with_analytics), TestClient(bare):
            paths = {p for p, _ in _routes(with_analytics.routes, "")}
            assert {"/analytics/forecasts", "/analytics/alerts", "/analytics/indicators/{name}"} <= paths
            assert "/analytics/forecasts" not in {p for p, _ in _routes(bare.routes, "")}
    finally:
        store.close()
