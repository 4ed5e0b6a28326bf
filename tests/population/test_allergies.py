"""The generated drug allergies: their shares (population/allergies.py, docs/population.md), their shape, and
that the prescribing allergy check matches them."""
from __future__ import annotations

import collections
import datetime as dt
from functools import lru_cache

from healthtwin.population import allergies, generate_stream
from healthtwin.registries.prescribing import checks

N = 3000


@lru_cache(maxsize=1)
def _generated() -> tuple[int, list[dict], dict[str, dict]]:
    people, found, patients = 0, [], {}
    for rtype, res in generate_stream(N, 13, start_year=2019, end_date=dt.date(2024, 12, 31)):
        if rtype == "Patient":
            people += 1
            patients[res["id"]] = res
        elif rtype == "AllergyIntolerance":
            found.append(res)
    return people, found, patients


def test_each_class_is_recorded_at_its_published_share_and_never_for_an_infant():
    people, found, patients = _generated()
    by_class = collections.Counter(a["code"]["coding"][0]["code"] for a in found)
    for _key, code, _name, share, _reactions in allergies.CLASSES:
        assert abs(by_class[code] / people - share) < 0.015, (code, by_class[code], people)
    assert len({a["id"] for a in found}) == len(found)
    for a in found:
        born = dt.date.fromisoformat(patients[a["patient"]["reference"].split("/")[1]]["birthDate"])
        assert dt.date.fromisoformat(a["recordedDate"]) > born + dt.timedelta(days=365)
        assert a["recordedDate"] <= "2024-12-31"
        assert a["criticality"] == ("high" if a["reaction"][0]["severity"] == "severe" else "low")


def test_the_allergy_check_matches_every_generated_allergy_to_a_drug_of_its_class():
    _people, found, _patients = _generated()
    drug = {"J01C": "J01CA04", "J01E": "J01EE01", "M01A": "M01AE01"}
    for a in found:
        cls = a["code"]["coding"][0]["code"]
        order = {"resourceType": "MedicationRequest", "medicationCodeableConcept": {
            "coding": [{"system": checks.ATC, "code": drug[cls]}]}}
        (finding,) = checks.allergies([("draft", order)], [a])
        assert finding.implicated == (f"AllergyIntolerance/{a['id']}",)
        other = {"resourceType": "MedicationRequest", "medicationCodeableConcept": {
            "coding": [{"system": checks.ATC, "code": "C10AA05"}]}}
        assert checks.allergies([("draft", other)], [a]) == []
