"""The default validity of a prescription that states no dispenseRequest.validityPeriod: 30 days from its
authoredOn (registries/prescribing/validity.py), HEALTHTWIN_PRESCRIPTION_VALIDITY_DAYS to change it."""
from __future__ import annotations

import datetime as dt

import pytest

from healthtwin.registries.prescribing import validity

from . import rx


def _ago(days: int) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).isoformat(timespec="seconds")


def _setup(client, rid="mr1", **kw):
    client.put("/fhir/Patient/p1", json=rx.patient())
    r = client.put(f"/fhir/MedicationRequest/{rid}", json=rx.prescription(rid, **kw))
    assert r.status_code == 201, r.text


def test_without_a_validity_period_a_prescription_expires_30_days_after_it_was_written(client):
    _setup(client, "old", authored=_ago(31))
    r = client.post("/fhir/MedicationDispense", json=rx.dispense("old"))
    assert r.status_code == 409, r.text
    says = r.json()["issue"][0]["diagnostics"]
    assert "expired" in says and "30 days after authoredOn" in says
    assert client.get("/fhir/MedicationDispense", params={"_summary": "count"}).json()["total"] == 0
    _setup(client, "recent", authored=_ago(29))
    assert client.post("/fhir/MedicationDispense", json=rx.dispense("recent")).status_code == 201


def test_a_stated_validity_period_wins_over_the_default(client):
    later = (dt.date.today() + dt.timedelta(days=300)).isoformat()
    _setup(client, "chronic", authored=_ago(200), validity={"end": later})
    assert client.post("/fhir/MedicationDispense", json=rx.dispense("chronic")).status_code == 201
    # a period with a start only still gets the default end
    _setup(client, "started", authored=_ago(40), validity={"start": "2020-01-01"})
    assert client.post("/fhir/MedicationDispense", json=rx.dispense("started")).status_code == 409


def test_the_default_is_configured_by_the_environment(monkeypatch, tmp_path):
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    from healthtwin.request import OpenPolicy
    from healthtwin.store.sqlite import SQLiteStore
    monkeypatch.setenv(validity.ENV, "60")
    app = build_app(SQLiteStore(str(tmp_path / "v.sqlite")), AppSettings(data_dir=tmp_path / "d", rate=None),
                    policy=OpenPolicy())
    with TestClient(app) as client:
        _setup(client, "forty", authored=_ago(40))
        assert client.post("/fhir/MedicationDispense", json=rx.dispense("forty")).status_code == 201
        _setup(client, "seventy", authored=_ago(70))
        r = client.post("/fhir/MedicationDispense", json=rx.dispense("seventy"))
        assert r.status_code == 409 and "60 days after authoredOn" in r.text


@pytest.mark.parametrize("text, days", [("", 30), ("14", 14), ("none", None)])
def test_the_setting_is_read_strictly(monkeypatch, text, days):
    monkeypatch.setenv(validity.ENV, text)
    assert validity.default_days_from_env() == days


@pytest.mark.parametrize("bad", ["0", "-3", "thirty", "1.5"])
def test_a_bad_setting_is_a_clear_error(monkeypatch, bad):
    monkeypatch.setenv(validity.ENV, bad)
    with pytest.raises(ValueError, match=validity.ENV):
        validity.default_days_from_env()
