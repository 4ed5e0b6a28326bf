"""Blocking: a duplicate without a FIN that has two things wrong at once (a mistyped year, a mistyped name and a
changed date) still shares a blocking key with its citizen, through the rule made for that combination, so
the batch deduplication compares the pair and `$match` offers the citizen."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from healthtwin.composition import AppSettings, build_app
from healthtwin.mpi import features, model
from healthtwin.request import OpenPolicy


def _patient(family, given, father, birth, district="Nəsimi rayonu") -> dict:
    parts = [given, f"{father} oğlu"] if father else [given]
    return {"resourceType": "Patient", "active": True, "gender": "male", "birthDate": birth,
            "name": [{"use": "official", "family": family, "given": parts}],
            "address": [{"district": district, "city": "Bakı"}]}


CITIZEN = _patient("Məmmədov", "Rəşad", "Elçin", "1980-02-11")
# (what went wrong, the duplicate, the one rule it still shares with CITIZEN)
CASES = [
    ("year mistyped, moved", _patient("Məmmədov", "Rəşad", "Elçin", "1986-02-11", "Xətai rayonu"),
     ("given_key", "family_stem", "birth_month_day")),
    ("surname mistyped (stem and phonetic key changed), age estimated as 1 January",
     _patient("Məmbədov", "Rəşad", "Elçin", "1980-01-01"), ("given_key", "father_key", "birth_year")),
    ("first name mistyped (key and phonetic key changed), day mistyped",
     _patient("Məmmədov", "Rəşat", "Elçin", "1980-02-17"), ("family_key", "father_key", "birth_year")),
]


def _shared_rules(a: dict, b: dict) -> set[tuple[str, ...]]:
    left, right = features.of_patient(a), features.of_patient(b)
    return {rule for rule in model.BLOCKING_RULES
            if all(left[c] is not None and left[c] == right[c] for c in rule)}


@pytest.mark.parametrize("what, duplicate, rule", CASES, ids=[c[0] for c in CASES])
def test_two_errors_at_once_leave_one_rule_that_blocks_the_pair(what, duplicate, rule):
    assert _shared_rules(CITIZEN, duplicate) == {rule}, what


def test_every_rule_pairs_a_name_with_a_date_or_a_second_name():
    dates = {"birth", "birth_year", "birth_month_day"}
    for rule in model.BLOCKING_RULES:
        if rule == ("fin",):
            continue
        names = [c for c in rule if c not in dates]
        assert names and (len(names) >= 2 or set(rule) & dates), rule


@pytest.fixture
def c(store, tmp_path):
    with TestClient(build_app(store, AppSettings(data_dir=tmp_path / "d", rate=None), policy=OpenPolicy())) as client:
        yield client


def test_match_offers_the_citizen_for_each_two_error_duplicate(c):
    r = c.post("/fhir/Patient", json=CITIZEN)
    assert r.status_code == 201, r.text
    citizen = r.json()["id"]
    c.post("/fhir/Patient", json=_patient("Quliyev", "Tural", "Vaqif", "1980-02-11"))  # a stranger born that day
    for what, duplicate, _rule in CASES:
        body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": duplicate}]}
        found = c.post("/fhir/Patient/$match", json=body)
        assert found.status_code == 200, found.text
        ids = [e["resource"]["id"] for e in found.json().get("entry", [])]
        assert ids[:1] == [citizen], what
