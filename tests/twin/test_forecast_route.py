"""`GET /analytics/forecasts`: the ensemble's bands on a generated population's weekly series, under the real
access policy (analysts yes, clinicians no), with bad input answered by an OperationOutcome."""
from __future__ import annotations

import pytest

from healthtwin.request import Caller

LEVELS = ("0.025", "0.25", "0.5", "0.75", "0.975")


@pytest.fixture
def client(world, store, tmp_path):
    from starlette.testclient import TestClient

    from healthtwin.api.services import Services
    from healthtwin.composition import create_app
    from healthtwin.security.policy import SmartPolicy
    from healthtwin.twin.forecasting.web import Forecasts

    mat, _, _ = world
    services = Services.build(store, None, None, tmp_path / "data")
    services.policy = SmartPolicy(store, services.registry, services.parser)
    identify = lambda request: Caller(subject="who", kind="person",  # noqa: E731
                                      roles=frozenset({request.headers.get("x-role", "clinician")}))
    forecasts = Forecasts(services, mat.data_dir, identify=identify)
    app = create_app(store, services=services)
    app.router.routes[0:0] = forecasts.routes
    with TestClient(app) as c:
        yield c, forecasts


def test_each_region_gets_monotone_bands_for_weeks_0_to_3(client, world):
    c, forecasts = client
    r = c.get("/analytics/forecasts", params={"syndrome": "ili", "level": "region"}, headers={"x-role": "analyst"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "ensemble" in body["method"] and body["series"]
    mat, _, _ = world
    from healthtwin.twin.series import weekly_counts
    expected = {tuple(s.key): s for s in weekly_counts(mat.con, "ili", level="region")}
    assert {tuple(s["key"]) for s in body["series"]} == set(expected)
    for s in body["series"]:
        assert [f["horizon"] for f in s["forecast"]] == [0, 1, 2, 3]
        for f in s["forecast"]:
            q = [f["quantiles"][k] for k in LEVELS]
            assert q == sorted(q) and q[0] >= 0
        raw = expected[tuple(s["key"])].counts[-12:]
        assert len(s["observed"]["counts"]) == len(s["observed"]["weeks"]) == len(raw)
        for shown, n in zip(s["observed"]["counts"], raw):  # small cells suppressed, the rest as counted
            assert shown == ("<5" if 0 < n < 5 else n)
    region = body["series"][0]["key"][0]
    one = c.get("/analytics/forecasts", params={"syndrome": "ili", "region": region, "weeks": "3"},
                headers={"x-role": "analyst"}).json()
    assert [s["key"][0] for s in one["series"]] == [region] and len(one["series"][0]["observed"]["weeks"]) == 3
    assert one["series"][0]["forecast"] == body["series"][0]["forecast"]  # the same fit, from the cache
    assert len(forecasts._cache) == 1


def test_a_clinician_is_refused(client):
    c, _ = client
    r = c.get("/analytics/forecasts", params={"syndrome": "ili"}, headers={"x-role": "clinician"})
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("params, where", [({"syndrome": "flu-ish"}, "syndrome"), ({}, "syndrome"),
                                           ({"syndrome": "ili", "level": "street"}, "level"),
                                           ({"syndrome": "ili", "weeks": "many"}, "weeks"),
                                           ({"syndrome": "ili", "colour": "red"}, "colour")])
def test_bad_input_is_a_400_operation_outcome(client, params, where):
    c, _ = client
    r = c.get("/analytics/forecasts", params=params, headers={"x-role": "analyst"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["expression"] == [where]


def test_the_dashboards_groups_are_fitted_ahead_of_any_request(world, store, tmp_path):
    """A server's warm-up thread fits the groups it is given at start, so the first visitor reads a fit; the
    same watermark is not fitted twice."""
    import time

    from healthtwin.api.services import Services
    from healthtwin.twin.forecasting.web import Forecasts

    mat, _, _ = world
    services = Services.build(store, None, None, tmp_path / "data")
    forecasts = Forecasts(services, mat.data_dir, warm=[("ili", "region"), ("no-such-group", "region")],
                          poll_seconds=0.05)
    forecasts.start()
    try:
        deadline = time.time() + 300
        while forecasts.warmed is None and time.time() < deadline:
            time.sleep(0.05)
    finally:
        forecasts.stop()
    assert forecasts.warmed is not None
    assert [k[:2] for k in forecasts._cache] == [("ili", "region")]  # an unknown group is skipped
    assert forecasts.warm_once() is False  # nothing changed since
    answer = forecasts.answer({"syndrome": "ili", "level": "region", "weeks": 4, "region": set()})
    assert answer["series"] and len(forecasts._cache) == 1  # read from the warm cache
