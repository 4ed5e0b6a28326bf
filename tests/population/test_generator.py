"""Determinism, sharding, references, manifest and planted events of the population generator."""
from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import orjson
import pytest

from healthtwin.population import generate, generate_stream, write_ndjson_stream
from healthtwin.population.demography import FIN_ALPHABET, fin

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
END = dt.date(2024, 12, 31)


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_is_byte_identical(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, 250, 42, end_date=END)
    generate(b, 250, 42, end_date=END)
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys() and "manifest.json" in fa
    for name in fa:
        assert fa[name] == fb[name], name
    c = tmp_path / "c"
    generate(c, 250, 43, end_date=END)
    assert _files(c)["Patient.ndjson"] != fa["Patient.ndjson"]


def test_shards_are_disjoint_and_union_equals_unsharded(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    generate(whole, 300, 9, end_date=END)
    parts = [tmp_path / f"s{i}" for i in range(3)]
    for i, d in enumerate(parts):
        generate(d, 300, 9, shard=(i, 3), end_date=END)
    patients = [set(re.findall(rb'"id":"(pat-\d+)"', (d / "Patient.ndjson").read_bytes())) for d in parts]
    assert not (patients[0] & patients[1]) and not (patients[1] & patients[2]) and not (patients[0] & patients[2])
    for f in whole.glob("*.ndjson"):
        union = sorted(line for d in parts if (d / f.name).exists() for line in (d / f.name).read_bytes().splitlines())
        assert union == sorted(f.read_bytes().splitlines()), f.name
    # institutions come from shard 0 only
    assert not (parts[1] / "Organization.ndjson").exists()
    # ground-truth cases add up across shards
    w = orjson.loads((whole / "ground_truth" / "influenza.json").read_bytes())
    s = [orjson.loads((d / "ground_truth" / "influenza.json").read_bytes()) for d in parts]
    assert sum(x["planted_cases"] for x in s) == w["planted_cases"]
    assert sorted(e for x in s for e in x["planted_encounters"]) == w["planted_encounters"]


def test_references_resolve_and_ids_are_valid(small_resources: dict[str, list[dict]]) -> None:
    known = {f"{t}/{r['id']}" for t, rs in small_resources.items() for r in rs}
    for t, rs in small_resources.items():
        ids = [r["id"] for r in rs]
        assert len(ids) == len(set(ids)), f"duplicate ids in {t}"
        for r in rs:
            assert r["resourceType"] == t and ID_RE.match(r["id"]), r["id"]
    refs = set(re.findall(r'"reference":"([^"]+)"', "".join(
        orjson.dumps(r).decode() for rs in small_resources.values() for r in rs)))
    assert refs, "no references found"
    missing = sorted(refs - known)
    assert not missing, missing[:10]


def test_manifest_shape(small_dir: Path) -> None:
    m = orjson.loads((small_dir / "manifest.json").read_bytes())
    assert set(m) >= {"transactionTime", "request", "requiresAccessToken", "output"}
    assert m["requiresAccessToken"] is False
    for o in m["output"]:
        assert o["url"] == f"{o['type']}.ndjson" and "/" not in o["url"]
        assert o["count"] == len((small_dir / o["url"]).read_bytes().splitlines())
    types = {o["type"] for o in m["output"]}
    assert types >= {"Patient", "Organization", "Location", "Practitioner", "PractitionerRole", "Encounter",
                     "Condition", "Observation", "Immunization", "MedicationRequest", "MedicationDispense",
                     "Procedure", "Coverage", "Claim", "ExplanationOfBenefit", "RelatedPerson", "ServiceRequest"}


def test_laboratory_results_answer_orders_addressed_to_the_laboratory(small_resources: dict[str, list[dict]]) -> None:
    """A laboratory reports against its orders, so every laboratory result is `basedOn` a ServiceRequest of the
    same patient and encounter whose performer is the laboratory that produced it."""
    orders = {r["id"]: r for r in small_resources["ServiceRequest"]}
    lab_results = [o for o in small_resources["Observation"]
                   if (o.get("category") or [{"coding": [{}]}])[0]["coding"][0].get("code") == "laboratory"]
    assert lab_results and orders
    for o in lab_results:
        (based,) = o["basedOn"]
        order = orders[based["reference"].removeprefix("ServiceRequest/")]
        assert order["subject"] == o["subject"] and order["encounter"] == o["encounter"]
        assert order["performer"] == o["performer"] and order["performer"][0]["reference"].startswith(
            "Organization/org-lab-")
        assert {c["code"] for c in o["code"]["coding"]} <= {c["code"] for c in order["code"]["coding"]}
        assert order["intent"] == "order" and order["authoredOn"] <= o["effectiveDateTime"]


def test_prescriptions_carry_a_national_prescription_number(small_resources: dict[str, list[dict]]) -> None:
    """A pharmacy finds a prescription by the number the patient presents: each MedicationRequest has one,
    unique, in the national prescription system, and not the resource id."""
    numbers = []
    for m in small_resources["MedicationRequest"]:
        (ident,) = m["identifier"]
        assert ident["system"] == "https://health.gov.az/fhir/sid/prescription"
        assert re.fullmatch(r"[0-9]{12}", ident["value"]) and ident["value"] not in m["id"]
        numbers.append(ident["value"])
    assert numbers and len(numbers) == len(set(numbers))


def test_window_ends_today_unless_an_end_date_is_given(tmp_path: Path) -> None:
    """Without `end_date` the population is about the six years up to the day it is generated; with one it
    is reproducible whatever the day."""
    from healthtwin.population.generator import window
    today = dt.date.today()
    assert window(None, None) == (today.year - 5, today)
    assert window(None, END) == (2019, END)
    assert window(2023, END) == (2023, END)
    m = generate(tmp_path / "today", 5, 1, events=set())
    assert m["transactionTime"].startswith(today.isoformat())
    assert f"start_year={today.year - 5}&end_date={today.isoformat()}" in m["request"]


def test_stream_writer_matches_files(small_dir: Path) -> None:
    from tests.population.conftest import SMALL_N, SMALL_SEED

    buf = io.BytesIO()
    summary = write_ndjson_stream(buf, SMALL_N, SMALL_SEED, start_year=2019, end_date=END)
    m = orjson.loads((small_dir / "manifest.json").read_bytes())
    assert summary["counts"] == {o["type"]: o["count"] for o in m["output"]}
    lines = buf.getvalue().splitlines()
    assert len(lines) == sum(summary["counts"].values())
    assert set(summary["ground_truth"]) == {"influenza", "measles", "hospital_crunch"}


def test_events_are_switchable(tmp_path: Path) -> None:
    generate(tmp_path / "none", 50, 1, events=set(), end_date=END)
    assert not (tmp_path / "none" / "ground_truth").exists()
    generate(tmp_path / "m", 50, 1, events={"measles"}, end_date=END)
    assert [p.name for p in (tmp_path / "m" / "ground_truth").iterdir()] == ["measles.json"]
    with pytest.raises(ValueError):
        list(generate_stream(5, 1, events={"zombies"}))


def test_planted_events_leave_a_signal(small_dir: Path) -> None:
    flu = orjson.loads((small_dir / "ground_truth" / "influenza.json").read_bytes())
    assert flu["active"] and flu["planted_cases"] > 0 and flu["planted_by_iso_week"]
    truth: dict = {}
    for _ in generate_stream(6000, 21, start_year=2024, end_date=END, events={"hospital_crunch", "measles"},
                             ground_truth=truth):
        pass
    crunch = truth["hospital_crunch"]
    census = crunch["daily_census_this_shard"]
    inside = sum(v for d, v in census.items() if crunch["period_start"] <= d <= crunch["period_end"]) / 43
    before = sum(v for d, v in census.items() if d < crunch["period_start"]) / 90
    assert crunch["active"] and crunch["planted_admissions"] > 0
    assert inside > 2 * before and inside > crunch["beds_at_sample_scale"]
    measles = truth["measles"]
    assert measles["active"] and measles["district"]
    assert all(measles["period_start"] <= c["onset"] <= measles["period_end"] for c in measles["cases"])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        list(generate_stream(10, 1, shard=(3, 3)))
    with pytest.raises(ValueError):
        list(generate_stream(10, 1, start_year=2030, end_date=END))


def test_fin_unique_and_well_formed() -> None:
    values = [fin(i, 5) for i in range(20000)]
    assert len(set(values)) == len(values)
    assert all(len(v) == 7 and set(v) <= set(FIN_ALPHABET) for v in values)


def test_names_follow_azerbaijani_conventions(small_resources: dict[str, list[dict]]) -> None:
    for p in small_resources["Patient"]:
        n = p["name"][0]
        suffix = "oğlu" if p["gender"] == "male" else "qızı"
        assert n["given"][1].endswith(suffix)
        fam = n["family"]
        if fam.endswith(("ov", "yev")):
            assert p["gender"] == "male"
        if fam.endswith(("ova", "yeva")):
            assert p["gender"] == "female"
        assert p["telecom"][0]["value"].startswith("+994")
    children = [p for p in small_resources["Patient"] if "link" in p]
    assert children and all(p["link"][0]["other"]["reference"].startswith("RelatedPerson/") for p in children)


def test_hba1c_follows_diabetes_and_treatment(small_resources: dict[str, list[dict]]) -> None:
    diabetics = {c["subject"]["reference"] for c in small_resources["Condition"]
                 if any(x["code"] == "E11.9" for x in c["code"]["coding"])}
    by_patient: dict[str, list[tuple[str, float]]] = {}
    for o in small_resources["Observation"]:
        if o["code"]["coding"][0]["code"] == "4548-4":
            by_patient.setdefault(o["subject"]["reference"], []).append((o["effectiveDateTime"], o["valueQuantity"]["value"]))
    dm = [v for p, vs in by_patient.items() if p in diabetics for _, v in vs]
    non = [v for p, vs in by_patient.items() if p not in diabetics for _, v in vs]
    assert dm and sum(dm) / len(dm) > 6.5
    if non:
        assert sum(non) / len(non) < 6.0
    # newly diagnosed diabetics: first HbA1c (untreated) above the last one (on metformin)
    drops = [vs[0][1] - vs[-1][1] for p, vs in by_patient.items() if p in diabetics and len(vs) >= 3]
    assert drops and sum(drops) / len(drops) > 0


def test_the_codes_the_population_uses_are_in_its_terminology(small_resources: dict[str, list[dict]]) -> None:
    """Every coding of a system the national terminology publishes (ICD-10, SNOMED CT, LOINC, ATC, CVX, the
    tariff) names a concept of its CodeSystem with the same display: the generator's tables and the published
    code systems cannot drift apart."""
    published = {cs["url"]: {c["code"]: c.get("display") for c in cs["concept"]} for cs in small_resources["CodeSystem"]}
    seen: set[tuple[str, str]] = set()

    def walk(node):
        if isinstance(node, dict):
            if node.get("system") in published and "code" in node:
                assert node["code"] in published[node["system"]], node
                if "display" in node:
                    assert published[node["system"]][node["code"]] == node["display"], node
                seen.add((node["system"], node["code"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    for rtype, resources in small_resources.items():
        if rtype not in ("CodeSystem", "ValueSet"):
            walk(resources)
    assert {system for system, _ in seen} == set(published)
