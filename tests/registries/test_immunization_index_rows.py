"""The recommendation's one-walk index extraction (index_rows.py) gives exactly the compiled extractor's rows,
in its order, on the registry's own recommendations (children of every age, every schedule) and on altered
ones (elements removed, repeated, of odd shapes); and it is used only while the type's parameters are the
ones it was written for."""
from __future__ import annotations

import copy
import datetime as dt
import random

import pytest

from healthtwin.fhir.search_params import SearchRegistry
from healthtwin.registries.immunization import due, index_rows, rules
from healthtwin.registries.immunization.live import recommendations_for

TYPE = "ImmunizationRecommendation"
ON = dt.date(2026, 12, 2)


@pytest.fixture(scope="module")
def registry() -> SearchRegistry:
    registry = SearchRegistry.load()
    due.register(registry)
    return registry


def _children(n: int, schedule: rules.Schedule, rng: random.Random) -> list[tuple[dict, list[dict], list]]:
    """Children of 0-17 years with random doses of the schedule's vaccines (some on odd dates, some twice)."""
    cvx = sorted(schedule.cvx_antigens)
    out = []
    for i in range(n):
        birth = ON - dt.timedelta(days=rng.randrange(0, 18 * 365))
        patient = {"resourceType": "Patient", "id": f"c{i}", "birthDate": birth.isoformat(),
                   "gender": rng.choice(["male", "female", "unknown"])}
        doses = []
        for k in range(rng.randrange(0, 25)):
            given = birth + dt.timedelta(days=rng.randrange(0, max(1, (ON - birth).days + 30)))
            doses.append({"resourceType": "Immunization", "id": f"c{i}-{k}", "status": "completed",
                          "patient": {"reference": f"Patient/c{i}"}, "occurrenceDateTime": given.isoformat(),
                          "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx",
                                                      "code": rng.choice(cvx)}]}})
        out.append((patient, doses, []))
    return out


def _recommendations(rng: random.Random) -> list[dict]:
    out = []
    for key in ("aze", "cdc", "who"):
        for case in _children(60, rules.load(key), rng):
            try:
                out += recommendations_for(case, ON + dt.timedelta(days=rng.randrange(-400, 400)), (key,))
            except ValueError:
                continue  # a record the engine cannot assess under that schedule: not what is tested here
    return out


def _altered(resource: dict, rng: random.Random) -> dict:
    """The resource with a few random changes of the kinds a client could send."""
    res = copy.deepcopy(resource)
    entries = res.get("recommendation") or []
    for _ in range(rng.randrange(1, 4)):
        entry = rng.choice(entries) if entries else {}
        found = entry.get("dateCriterion")
        criterion = (found[0] if found else None) if type(found) is list else found
        change = rng.randrange(16)
        if change == 0 and entries:
            entries.append(copy.deepcopy(entry))  # a duplicated entry: the same rows, deduplicated
        elif change == 1:
            entry.pop(rng.choice(["vaccineCode", "dateCriterion", "forecastStatus", "targetDisease"]), None)
        elif change == 2 and criterion:
            criterion["code"]["coding"].append({"system": "http://loinc.org", "code": "30980-7"})
        elif change == 3 and criterion:
            criterion["value"] = rng.choice(["2027", "2027-03", "not a date", "2027-02-30", 5])
        elif change == 4 and criterion:
            criterion["code"] = {"coding": [{"code": ["30980-7"]}]}
        elif change == 5 and criterion:
            entry["dateCriterion"] = criterion  # one object, not a list
        elif change == 6:
            entry["vaccineCode"] = [{"text": "Ünïcode  Group"}, {"coding": [{"code": "X", "display": "Y"}]}]
        elif change == 7:
            res["meta"] = {"tag": {"system": "s", "code": "c"}, "profile": ["http://example.org/p"]}
        elif change == 8:
            res["meta"] = {"security": [{"system": "s", "code": "R"}]}
        elif change == 9:
            entry["supportingImmunization"] = [{"reference": "Immunization/x"}]
        elif change == 10:
            entry["supportingPatientInformation"] = [{"reference": "Observation/o"}]
        elif change == 11:
            res["identifier"] = [{"system": "s", "value": "v", "type": {"coding": [{"system": "t", "code": "MR"}]}},
                                 {"value": "w"}]
        elif change == 12:
            res["patient"] = {"reference": "Patient/p", "identifier": {"system": "fin", "value": "1"}}
        elif change == 13:
            res.pop(rng.choice(["date", "patient", "identifier", "meta", "recommendation"]), None)
        elif change == 14:
            entry["forecastStatus"] = [{"text": "Due"}, {"coding": [{"system": "x", "code": "due"}]}]
        elif change == 15 and criterion:
            criterion["value"] = [criterion.get("value"), "2030-01-01"]
    return res


def _rows_or_error(fn, resource: dict):
    try:
        return fn(resource)
    except Exception as exc:  # noqa: BLE001 - both paths must fail alike on a shape neither can read
        return type(exc)


def test_one_walk_is_in_use_and_equals_the_compiled_extractor(registry):
    fast = registry.index_extractor(TYPE)
    compiled = registry.extractor(TYPE)
    assert fast is not compiled  # the registry uses the one walk for the parameters it was written for
    rng = random.Random(20261202)
    recommendations = _recommendations(rng)
    assert len(recommendations) >= 150
    assert {r["meta"]["tag"][0]["code"] for r in recommendations} == {"aze", "cdc", "who"}
    assert sum(len(compiled(r)) for r in recommendations) > 20 * len(recommendations)
    for resource in recommendations:
        assert fast(resource) == compiled(resource)
    for n in range(3000):
        resource = _altered(rng.choice(recommendations), rng)
        assert _rows_or_error(fast, resource) == _rows_or_error(compiled, resource), resource
    odd = [{"resourceType": TYPE}, {"resourceType": TYPE, "recommendation": ["x"]},
           {"resourceType": TYPE, "recommendation": {"vaccineCode": {"text": "one"}}},
           {"resourceType": TYPE, "meta": ["x"]}, {"resourceType": TYPE, "recommendation": [{"dateCriterion": ["x"]}]}]
    for resource in odd:
        assert _rows_or_error(fast, resource) == _rows_or_error(compiled, resource), resource


def test_a_parameter_added_for_the_type_brings_the_compiled_extractor_back(registry):
    registry = SearchRegistry.load()
    due.register(registry)
    assert registry.index_extractor(TYPE) is not registry.extractor(TYPE)
    registry.add({"resourceType": "SearchParameter", "url": "http://example.org/SearchParameter/ir-reason",
                  "code": "reason", "base": [TYPE], "type": "token", "status": "active",
                  "expression": "ImmunizationRecommendation.recommendation.forecastReason"})
    assert registry.index_extractor(TYPE) is registry.extractor(TYPE)
    resource = {"resourceType": TYPE, "recommendation": [{"forecastReason": [{"text": "aged out"}]}]}
    assert ("reason", "token", None, None, "aged out") in registry.index_extractor(TYPE)(resource)
    assert index_rows.SIGNATURE != registry.signature(TYPE)
