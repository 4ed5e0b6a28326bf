"""Research pseudonyms: stable within a project, unlinkable across projects, no direct identifiers left."""
from __future__ import annotations

import secrets

import orjson
import pytest

from healthtwin.security.pseudonym import Pseudonymizer, pseudonym, suppress_small_cells

from .test_crypto import FIN, PATIENT, SECRETS

KEY = secrets.token_bytes(32)


def test_stable_within_project_different_across():
    p = Pseudonymizer(KEY)
    assert p.pseudonym("diabetes-2025", FIN) == p.pseudonym("diabetes-2025", FIN)
    assert p.pseudonym("diabetes-2025", FIN) != p.pseudonym("cardio-2025", FIN)
    assert p.pseudonym("diabetes-2025", FIN) != p.pseudonym("diabetes-2025", "010190-123B")
    assert pseudonym("diabetes-2025", FIN, KEY) == p.pseudonym("diabetes-2025", FIN)
    assert pseudonym("diabetes-2025", FIN, secrets.token_bytes(32)) != p.pseudonym("diabetes-2025", FIN)
    import hashlib
    assert p.pseudonym("x", FIN) not in hashlib.sha256(FIN.encode()).hexdigest()  # not a plain hash
    with pytest.raises(ValueError):
        p.pseudonym("", FIN)
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")


def test_patient_loses_direct_identifiers():
    p = Pseudonymizer(KEY)
    out = p.pseudonymize_resource(PATIENT, "proj")
    dump = orjson.dumps(out)
    for secret in SECRETS + ["p1", "00100"]:
        assert secret.encode() not in dump, secret
    assert out["birthDate"] == "1990-01" and out["gender"] == "female"
    assert out["id"] == p.pseudonym("proj", "Patient/p1")
    assert out["identifier"][0] == {"system": "urn:oid:1.2.246.21", "use": "official",
                                    "value": p.pseudonym("proj", "urn:oid:1.2.246.21|" + FIN)}
    assert out["address"] == [{"city": "Helsinki", "postalCode": "001"}]
    assert out["managingOrganization"]["reference"] == "Organization/" + p.pseudonym("proj", "Organization/hus")
    assert PATIENT["name"][0]["family"] == "Virtanen"  # input untouched


def test_references_stay_linkable_within_a_project():
    p = Pseudonymizer(KEY)
    obs = {"resourceType": "Observation", "id": "o1", "status": "final",
           "subject": {"reference": "https://old.example/fhir/Patient/p1/_history/3", "display": "Aino Virtanen"},
           "performer": [{"reference": "Practitioner/9", "display": "Dr Bob"},
                         {"identifier": {"system": "urn:oid:1.2.246.21", "value": FIN}, "type": "Patient"}],
           "note": [{"text": "Aino said her neighbour Virtanen ..."}],
           "hasMember": [{"reference": "#c1"}], "contained": [{"resourceType": "Observation", "id": "c1",
                                                             "subject": {"reference": "Patient/p1"}}],
           "focus": [{"reference": "Patient?identifier=urn:oid:1.2.246.21|" + FIN}],
           "meta": {"versionId": "3", "lastUpdated": "2025-01-01T00:00:00Z", "source": "#hus-123"}}
    out = p.pseudonymize_resource(obs, "proj")
    pat = p.pseudonymize_resource(PATIENT, "proj")
    assert out["subject"] == {"reference": f"Patient/{pat['id']}"}
    assert out["contained"][0]["subject"] == {"reference": f"Patient/{pat['id']}"}
    assert out["hasMember"] == [{"reference": "#c1"}] and out["contained"][0]["id"] == "c1"
    dump = orjson.dumps(out)
    for secret in (FIN, "Virtanen", "Aino", "Dr Bob", "old.example", "hus-123"):
        assert secret.encode() not in dump, secret
    assert "note" not in out and "meta" not in out
    other = p.pseudonymize_resource(obs, "another")
    assert other["subject"] != out["subject"]


def test_bundle_entries():
    p = Pseudonymizer(KEY)
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": "https://x/fhir/Patient/p1", "resource": PATIENT},
                        {"fullUrl": "urn:uuid:2b7f6d2e-0000-4000-8000-000000000001",
                         "resource": {"resourceType": "Observation", "subject": {"reference": "Patient/p1"}}}]}
    out = p.pseudonymize_resource(bundle, "proj")
    dump = orjson.dumps(out)
    for secret in SECRETS:
        assert secret.encode() not in dump
    pid = out["entry"][0]["resource"]["id"]
    assert out["entry"][0]["fullUrl"] == f"Patient/{pid}"
    assert out["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{pid}"
    assert out["entry"][1]["fullUrl"].startswith("urn:uuid:") and "2b7f6d2e" not in out["entry"][1]["fullUrl"]


def test_small_cells_are_suppressed():
    rows = [{"area": "A", "sex": "f", "n": 120, "pct": 60.0}, {"area": "A", "sex": "m", "n": 3, "pct": 1.5},
            {"area": "A", "sex": "x", "n": 77, "pct": 38.5}, {"area": "B", "sex": "f", "n": 0, "pct": 0.0},
            {"area": "B", "sex": "m", "n": 5, "pct": 100.0}, {"area": "C", "sex": "f", "n": 4, "pct": 50.0},
            {"area": "C", "sex": "m", "n": 4, "pct": 50.0}]
    out = suppress_small_cells(rows, "n", also=["pct"])
    assert [r["n"] for r in out] == [120, None, 77, 0, 5, None, None]
    assert out[1]["pct"] is None and out[1]["suppressed"] and "suppressed" not in out[0]
    assert rows[1]["n"] == 3  # input untouched
    # Area A's total (200) is public elsewhere: one hidden cell would be 200 - 120 - 77. Hide the next one too.
    comp = suppress_small_cells(rows, "n", group_by=["area"], also=["pct"])
    assert [r["n"] for r in comp] == [120, None, None, 0, 5, None, None]
    assert suppress_small_cells(rows, "n", threshold=10)[4]["n"] is None


def test_analytics_birth_month_keeps_the_indicators_rules_exact():
    """The birth date the analytics store holds (month, day coded) gives every answer the indicators take from
    the full date: age in completed years on 1 July, alive on 1 July, birth cohort, survival to the first
    birthday (DuckDB's `birth + INTERVAL 1 YEAR`: 29 February ends on the 28th)."""
    import datetime as dt

    from healthtwin.security.pseudonym import coarse_birth_date

    def age(birth: dt.date, period: int) -> int:
        july = dt.date(period, 7, 1)
        return july.year - birth.year - ((july.month, july.day) < (birth.month, birth.day))

    def first_birthday(d: dt.date) -> dt.date:
        return d.replace(year=d.year + 1, day=min(d.day, 28 if d.month == 2 else 31))

    day = dt.date(2019, 12, 25)
    while day < dt.date(2021, 1, 5):
        for died in (None, day + dt.timedelta(days=300), first_birthday(day) - dt.timedelta(days=1),
                     first_birthday(day), first_birthday(day) - dt.timedelta(days=day.day)):
            coded = coarse_birth_date(day.isoformat(), died.isoformat() if died else None)
            pseudo = dt.date.fromisoformat(coded)
            assert coded[:7] == day.isoformat()[:7]
            assert [age(pseudo, p) for p in (2020, 2021, 2030)] == [age(day, p) for p in (2020, 2021, 2030)]
            assert all((pseudo <= dt.date(p, 7, 1)) == (day <= dt.date(p, 7, 1)) for p in (2019, 2020, 2021))
            if died is not None:
                assert (died >= first_birthday(pseudo)) == (died >= first_birthday(day)), (day, died)
        day += dt.timedelta(days=1)
    assert coarse_birth_date("1990-05") == "1990-05" and coarse_birth_date("1990") == "1990"


def test_analytics_keys_are_keyed_and_consistent():
    """Ids and references get the same key (views still join), under a key of their own."""
    from healthtwin.security.pseudonym import AnalyticsKeys

    keys, other = AnalyticsKeys(b"k" * 32), AnalyticsKeys(b"o" * 32)
    obs = orjson.dumps({"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"},
                        "code": {"coding": [{"system": "http://loinc.org", "code": "1-8", "display": "x"}]},
                        "performer": [{"reference": "Practitioner/d1", "display": "Dr Aino Virtanen"}]})
    pat = orjson.dumps({"resourceType": "Patient", "id": "p1", "birthDate": "1990-05-17",
                        "name": [{"family": "Virtanen"}], "identifier": [{"value": "010190-123A"}]})
    o, p = orjson.loads(keys.resource("Observation", "o1", obs)), orjson.loads(keys.resource("Patient", "p1", pat))
    assert o["subject"]["reference"] == f"Patient/{p['id']}" and p["id"] == keys.key("Patient", "p1") != "p1"
    assert o["id"] == keys.key("Observation", "o1") != other.key("Observation", "o1")
    assert p["birthDate"] == "1990-05-01" and "name" not in p and "identifier" not in p
    assert b"Virtanen" not in keys.resource("Observation", "o1", obs) and o["code"]["coding"][0]["display"] == "x"
