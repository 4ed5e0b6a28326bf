"""The detection run's alerts reach people: stored as Communications for the district's epidemiologist (from the
generated directory), once per week however often the run repeats; readable by that epidemiologist alone among
epidemiologists (FHIR and /analytics/alerts), by analysts, never by other roles; counts of 1-4 suppressed;
acknowledged once, by the recipient; bad input answered with an OperationOutcome."""
from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import pytest

from healthtwin.population.geography import BY_SLUG
from healthtwin.population.public_health import generate_public_health
from healthtwin.twin.surveillance import alerts, job, suppression
from healthtwin.twin.surveillance.injector import Scenario, inject

BASE = "http://testserver"
A, B = BY_SLUG["sumqayit"], BY_SLUG["xizi"]  # two districts of one region
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@dataclass
class S:
    key: tuple[str, ...]
    syndrome: str
    interval: str
    dates: list[dt.date]
    counts: list[int]


def _series(district, syndrome, extra=0, seed=0):
    c = inject(Scenario("mid", theta=2.0, gamma1=(0.4,), gamma2=(0.3,), phi=1.5), seed, k=0.0, years=6,
               past_outbreaks=0).counts.copy()
    c[-1] += extra
    start = dt.date(2019, 12, 30)
    return S((district.region_name, district.label), syndrome, "week",
             [start + dt.timedelta(weeks=i) for i in range(len(c))], [int(x) for x in c])


def _directory():
    """The generated public-health directory of the two districts, and the body their centres belong to."""
    keep = {A.slug, B.slug}
    out = [{"resourceType": "Organization", "id": "org-tabib", "name": "TƏBİB"}]
    for _rtype, res in generate_public_health(1):
        if any(res["id"].endswith("-" + s) for s in keep):
            out.append(res)
    return out


def _mint(tokens, subject, roles, fhir_user=None, kind="person", scopes=("user/*.rs",)):
    token, _ = tokens.mint(subject=subject, kind=kind, scopes=list(scopes), roles=list(roles), fhir_user=fhir_user)
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def world(store, tmp_path):
    from starlette.testclient import TestClient

    from healthtwin.api.services import Services
    from healthtwin.composition import AppSettings, build_app
    from healthtwin.security.keys import KeySet
    from healthtwin.security.policy import SmartPolicy
    from healthtwin.security.tokens import TokenService
    tokens = TokenService(KeySet.generate(), BASE, BASE + "/fhir")
    services = Services.build(store, None, None, tmp_path / "data")
    services.policy = SmartPolicy(store, services.registry, services.parser)
    app = build_app(store, AppSettings(data_dir=tmp_path / "data", public_url=BASE, rate=None), services=services,
                    tokens=tokens)
    h = {"admin": _mint(tokens, "root", ["administrator"], scopes=("user/*.cruds",)),
         "epi_a": _mint(tokens, "epi-a", ["epidemiologist"], f"PractitionerRole/prole-epi-{A.slug}"),
         "epi_a_prac": _mint(tokens, "epi-a2", ["epidemiologist"], f"Practitioner/prac-epi-{A.slug}"),
         "epi_b": _mint(tokens, "epi-b", ["epidemiologist"], f"PractitionerRole/prole-epi-{B.slug}"),
         "analyst": _mint(tokens, "ana", ["analyst"]),
         "clinician": _mint(tokens, "dr", ["clinician"], "Practitioner/prac-epi-xizi"),
         "auditor": _mint(tokens, "aud", ["auditor"])}
    with TestClient(app, base_url=BASE) as c:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in _directory()]}
        r = c.post("/fhir", json=bundle, headers=h["admin"])
        assert r.status_code == 200, r.text
        yield c, h, services


def _run(services, series):
    out = job.run(series, alerts.recipients(services.store, services.registry), now=NOW)
    return out, alerts.store_alerts(services.store, out.resources)


def _outbreak_in_a():
    return [_series(A, "ili", extra=60, seed=3), _series(B, "ili", seed=5)]


def _communications(client, headers, **params):
    r = client.get("/fhir/Communication", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def test_a_planted_outbreak_is_stored_once_for_its_districts_epidemiologist(world):
    c, h, services = world
    out, stored = _run(services, _outbreak_in_a())
    assert stored.created == out.raised >= 1 and stored.unrouted == 0
    every = _communications(c, h["admin"])
    mine = [x for x in every if A.label in x["topic"]["text"]]
    assert len(mine) == 1
    alert = mine[0]
    assert alert["recipient"][0]["reference"] == f"PractitionerRole/prole-epi-{A.slug}"
    assert alert["status"] == "in-progress"
    week = json.loads(base64.b64decode(alert["payload"][1]["contentAttachment"]["data"]))["week"]
    assert alert["identifier"][0]["value"] == f"ili/{A.region_name}/{A.label}/{week}"
    from healthtwin.fhir.validation import Validator
    assert [i for i in Validator().validate(alert) if i.severity in ("error", "fatal")] == []
    # the same week again (a restarted server, a second worker): nothing new, nothing rewritten
    again, stored2 = _run(services, _outbreak_in_a())
    assert stored2.created == 0 and stored2.updated == 0 and stored2.unchanged == again.raised
    after = _communications(c, h["admin"])
    assert sorted(x["id"] for x in after) == sorted(x["id"] for x in every)
    assert all(x["meta"]["versionId"] == "1" for x in after)


def test_each_epidemiologist_sees_their_own_districts_alerts_and_nothing_else(world):
    c, h, services = world
    _run(services, _outbreak_in_a())
    alert_id = next(x["id"] for x in _communications(c, h["admin"]) if A.label in x["topic"]["text"])
    # through the FHIR API
    assert c.get(f"/fhir/Communication/{alert_id}", headers=h["epi_a"]).status_code == 200
    assert c.get(f"/fhir/Communication/{alert_id}", headers=h["epi_a_prac"]).status_code == 200  # via their role
    assert c.get(f"/fhir/Communication/{alert_id}", headers=h["epi_b"]).status_code == 404
    assert alert_id not in [x["id"] for x in _communications(c, h["epi_b"])]
    assert alert_id in [x["id"] for x in _communications(c, h["analyst"])]
    # no patient-level data through the epidemiologist role
    for path in ("/fhir/Patient", "/fhir/Observation", "/fhir/Encounter"):
        assert c.get(path, headers=h["epi_a"]).status_code == 403
    # through /analytics/alerts
    def listed(who):
        r = c.get("/analytics/alerts", headers=h[who])
        assert r.status_code == 200, r.text
        return [a["id"] for d in r.json()["districts"] for a in d["alerts"]]
    assert alert_id in listed("epi_a") and alert_id in listed("analyst") and alert_id in listed("admin")
    assert alert_id not in listed("epi_b")
    for who in ("clinician", "auditor"):
        r = c.get("/analytics/alerts", headers=h[who])
        assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    assert c.get("/analytics/alerts").status_code == 401
    # epidemiologists are not analysts: the indicators stay closed to them
    assert c.get(f"/fhir/Communication/{alert_id}", headers=h["clinician"]).status_code in (403, 404)


def test_an_alert_spanning_two_districts_reaches_both_epidemiologists(world):
    c, h, services = world
    out, stored = _run(services, [_series(A, "ili", extra=90, seed=3), _series(B, "ili", extra=45, seed=5)])
    assert stored.unrouted == 0 and stored.unrouted_recipients == 0
    grouped = [x for x in _communications(c, h["admin"]) if x["topic"]["text"].endswith(A.label)]
    assert len(grouped) == 1, [x["topic"]["text"] for x in _communications(c, h["admin"])]
    alert = grouped[0]
    assert [r["reference"] for r in alert["recipient"]] == [f"PractitionerRole/prole-epi-{A.slug}",
                                                           f"PractitionerRole/prole-epi-{B.slug}"]
    for who in ("epi_a", "epi_b"):  # each reads it through the FHIR API and finds it in their listing
        assert c.get(f"/fhir/Communication/{alert['id']}", headers=h[who]).status_code == 200
        mine = c.get("/analytics/alerts", params={"district": B.label}, headers=h[who]).json()["districts"]
        assert alert["id"] in [a["id"] for d in mine for a in d["alerts"]]
    listed = next(a for d in mine for a in d["alerts"] if a["id"] == alert["id"])
    assert listed["districts"] == [A.label, B.label] and len(listed["recipients"]) == 2
    # the other district's epidemiologist acknowledges it: once, for both
    r = c.post(f"/analytics/alerts/{alert['id']}/acknowledge", headers=h["epi_b"])
    assert r.status_code == 200 and r.json()["status"] == "completed"


def test_the_listing_ranks_the_latest_week_per_district(world):
    c, h, services = world
    series = [_series(A, "ili", extra=60, seed=3), _series(A, "gastro", extra=25, seed=8),
              _series(B, "resp", extra=40, seed=5)]  # one syndrome per region and week is one group
    _run(services, series)
    body = c.get("/analytics/alerts", headers=h["analyst"]).json()
    by = {d["district"]: d for d in body["districts"]}
    assert set(by) >= {A.label, B.label}
    ranks = [a["rank"] for a in by[A.label]["alerts"]]
    assert ranks == sorted(ranks, reverse=True) and len(ranks) >= 1
    assert by[A.label]["alerts"][0]["signals"][0]["place"] == [A.region_name, A.label]
    only_b = c.get("/analytics/alerts", params={"district": B.label}, headers=h["analyst"]).json()["districts"]
    assert [d["district"] for d in only_b] == [B.label]


def test_counts_of_one_to_four_are_suppressed_in_what_leaves(world):
    c, h, services = world
    rng = np.random.default_rng(4)
    low = [int(x) for x in rng.poisson(1.2, 312)]  # a rare syndrome: most weeks 0-4 cases
    low[-1] = 14
    start = dt.date(2019, 12, 30)
    series = [S((A.region_name, A.label), "rare", "week", [start + dt.timedelta(weeks=i) for i in range(312)], low)]
    out, _ = _run(services, series)
    assert out.raised == 1
    body = c.get("/analytics/alerts", headers=h["epi_a"]).json()
    shown = body["districts"][0]["alerts"][0]["signals"][0]["chart"]["observed"]
    assert len(shown) == 52
    assert not any(isinstance(v, int) and 1 <= v <= 4 for v in shown)
    assert "<5" in shown and shown[-1] == 14
    raw = [int(x) for x in low[-52:]]
    assert shown == [("<5" if 1 <= v <= 4 else v) for v in raw]
    # the stored resource itself carries only suppressed counts (it too is read by non-clinicians)
    stored = _communications(c, h["epi_a"])[0]
    evidence = json.loads(base64.b64decode(stored["payload"][1]["contentAttachment"]["data"]))
    assert not any(isinstance(v, int) and 1 <= v <= 4 for v in evidence["signals"][0]["chart"]["observed"])


def test_a_small_lead_count_reads_fewer_than_five():
    assert suppression.count(3) == "<5" and suppression.count(0) == 0 and suppression.count(5) == 5
    sig = job.Signal(("R", "D"), "rare", dt.date(2026, 1, 5), 3.0, 0.2, 1e-4, True,
                     {"weeks": ["2026-01-05"], "observed": [3], "expected": [0.2]})
    comm = job.communication(job.Group("rare", "R", dt.date(2026, 1, 5), [sig]), None, NOW)
    assert comm["payload"][0]["contentString"].startswith("rare: fewer than 5 cases")
    evidence = json.loads(base64.b64decode(comm["payload"][1]["contentAttachment"]["data"]))
    assert evidence["signals"][0]["observed"] == "<5" and evidence["signals"][0]["chart"]["observed"] == ["<5"]


def test_the_recipient_acknowledges_once_and_a_rerun_keeps_it(world):
    c, h, services = world
    _run(services, _outbreak_in_a())
    alert_id = next(x["id"] for x in _communications(c, h["admin"]) if A.label in x["topic"]["text"])
    url = f"/analytics/alerts/{alert_id}/acknowledge"
    assert c.post(url, headers=h["epi_b"]).status_code == 404  # not theirs: as if absent
    assert c.post(url, headers=h["analyst"]).status_code == 403
    r = c.post(url, json={"note": "calling the polyclinics"}, headers=h["epi_a"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed"
    assert r.json()["acknowledged"]["by"].startswith(f"PractitionerRole/prole-epi-{A.slug}")
    stored = c.get(f"/fhir/Communication/{alert_id}", headers=h["epi_a"]).json()
    assert stored["status"] == "completed" and stored["received"] and "polyclinics" in stored["note"][-1]["text"]
    # the unread list no longer shows it; status=all does
    assert alert_id not in [a["id"] for d in c.get("/analytics/alerts", headers=h["epi_a"]).json()["districts"]
                            for a in d["alerts"]]
    assert alert_id in [a["id"] for d in c.get("/analytics/alerts", params={"status": "all"},
                                               headers=h["epi_a"]).json()["districts"] for a in d["alerts"]]
    # acknowledging again changes nothing; a re-run of the week does not undo it
    assert c.post(url, headers=h["epi_a_prac"]).json()["acknowledged"] == r.json()["acknowledged"]
    _, stored2 = _run(services, _outbreak_in_a())
    assert stored2.kept_acknowledged == 1
    assert c.get(f"/fhir/Communication/{alert_id}", headers=h["admin"]).json()["status"] == "completed"
    # and the epidemiologist cannot write the Communication through the FHIR API
    stored.pop("meta", None)
    stored["status"] = "in-progress"
    assert c.put(f"/fhir/Communication/{alert_id}", json=stored, headers=h["epi_a"]).status_code == 403


@pytest.mark.parametrize("path, params, body", [
    ("/analytics/alerts", {"status": "bogus"}, None),
    ("/analytics/alerts", {"since": "last-week"}, None),
    ("/analytics/alerts", {"limit": "0"}, None),
    ("/analytics/alerts", {"colour": "red"}, None),
    ("/analytics/alerts/bad%20id/acknowledge", {}, b"{}"),
    ("/analytics/alerts/{id}/acknowledge", {}, b"{not json"),
    ("/analytics/alerts/{id}/acknowledge", {}, b'{"note": 5}'),
])
def test_bad_input_is_an_operation_outcome_and_changes_nothing(world, path, params, body):
    c, h, services = world
    _run(services, _outbreak_in_a())
    alert_id = next(x["id"] for x in _communications(c, h["admin"]) if A.label in x["topic"]["text"])
    path = path.replace("{id}", alert_id)
    if body is None:
        r = c.get(path, params=params, headers=h["epi_a"])
    else:
        r = c.post(path, content=body, headers={**h["epi_a"], "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert c.get(f"/fhir/Communication/{alert_id}", headers=h["admin"]).json()["status"] == "in-progress"


def test_a_district_without_an_epidemiologist_is_counted_unrouted(world):
    c, h, services = world
    other = BY_SLUG["quba"]
    out, stored = _run(services, [_series(other, "ili", extra=60, seed=3)])
    assert out.raised >= 1 and stored.unrouted == out.raised
    assert _communications(c, h["epi_a"]) == []


def test_the_weekly_schedule_stores_its_alerts(world, tmp_path, monkeypatch):
    from healthtwin.twin import series as twin_series
    from healthtwin.twin.surveillance import schedule
    c, h, services = world

    class Closing:
        def close(self):
            pass
    monkeypatch.setattr(twin_series, "open_analytics", lambda folder: Closing())
    monkeypatch.setattr(job, "series_from_analytics", lambda con, syndromes, level: _outbreak_in_a())
    record = schedule.run_once(tmp_path, NOW, services)
    assert record["stored"]["created"] == record["raised"] >= 1
    assert any(A.label in x["topic"]["text"] for x in _communications(c, h["epi_a"]))
    assert schedule.run_once(tmp_path, NOW, services)["stored"]["created"] == 0


def test_the_composed_application_routes_alerts_before_the_analytics_mount(tmp_path):
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    from healthtwin.request import OpenPolicy
    from healthtwin.store.sqlite import SQLiteStore
    store = SQLiteStore(str(tmp_path / "composed.sqlite"))
    app = build_app(store, AppSettings(data_dir=tmp_path / "data", analytics_dir=tmp_path / "data", rate=None,
                                       audit=False), policy=OpenPolicy())
    with TestClient(app) as client:
        r = client.get("/analytics/alerts")
        assert r.status_code == 200 and r.json()["districts"] == []
        assert client.get("/analytics/indicators").status_code == 200
