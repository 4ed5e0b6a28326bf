"""The dirty-duplicate option (population/duplicates.py): the clean population is unchanged by it, every
duplicate has its truth, and the differences appear at about the documented rates."""
from __future__ import annotations

import datetime as dt
from collections import Counter

from healthtwin.mpi import normalise
from healthtwin.population import duplicates
from healthtwin.population.generator import generate_stream

END = dt.date(2024, 12, 31)


def _patients(n: int, dirty: bool) -> tuple[list[dict], dict]:
    truth: dict = {}
    rows = [r for t, r in generate_stream(n, 7, end_date=END, events=set(), ground_truth=truth, dirty=dirty,
                                          patients_only=True)]
    return rows, truth


def test_duplicates_leave_the_clean_population_as_it_was():
    clean, _ = _patients(400, dirty=False)
    dirty, truth = _patients(400, dirty=True)
    assert [p for p in dirty if not p["id"].startswith("dup-")] == clean
    dups = [p for p in dirty if p["id"].startswith("dup-")]
    assert dups and {p["id"] for p in dups} == set(truth["mpi_duplicates"])
    ids = {p["id"] for p in clean}
    assert all(t["of"] in ids for t in truth["mpi_duplicates"].values())


def test_differences_appear_at_about_their_rates():
    rows, truth = _patients(6000, dirty=True)
    records = truth["mpi_duplicates"]
    citizens = {t["of"] for t in records.values()}
    assert abs(len(citizens) / 6000 - duplicates.DUPLICATE_RATE) < 0.015
    changes = Counter(c for t in records.values() for c in t["changes"])
    n = len(records)
    expected_missing = sum(s.share * s.fin_missing for s in duplicates.SOURCES)
    assert changes["fin-missing"] / n >= expected_missing - 0.05  # infants add to it
    for kind in ("russian", "typo", "patronymic", "suffix", "jan1", "moved"):
        assert changes[kind] > 0, kind
    by_id = {p["id"]: p for p in rows}
    # what each change says is what the record shows
    for rid, t in records.items():
        dup, orig = by_id[rid], by_id[t["of"]]
        if "jan1" in t["changes"]:
            assert dup["birthDate"][5:] == "01-01" and dup["birthDate"][:4] == orig["birthDate"][:4]
        if "fin-missing" in t["changes"]:
            assert all(i["system"] != "https://health.gov.az/fhir/sid/fin" for i in dup["identifier"])
        if t["changes"] == ["russian"]:
            assert normalise.key(dup["name"][0]["family"]) != "" and dup["name"][0]["family"] != orig["name"][0]["family"]


def test_transliterations_share_the_index_key():
    for name in ("Məmmədov", "Hüseynov", "Qurbanov", "Cəfərova", "Şükürov", "Xəlilov", "İsmayılov", "Hacıyev"):
        forms = {duplicates.to_cyrillic(name), duplicates.russian_latin(name), name.translate(duplicates._ENGLISH)}
        assert {normalise.key(f) for f in forms} == {normalise.key(name)}, (name, forms)
