"""Indicators computed from the materialized views agree with plain Python counting over the NDJSON, and small
cells are suppressed. The reference below reads the generator's files directly and shares no code with the
views, the base tables or the indicator SQL."""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from healthtwin.analytics.indicators import (build_cubes, compute, indicator_views, load_indicators, parse_query,
                                             IndicatorError)
from healthtwin.analytics.materialize import Materializer, NdjsonSource
from healthtwin.analytics.refresh import refresh_all

PATIENTS = 2000
ABNORMAL = {"H", "L", "HH", "LL", "HU", "LU", "A", "AA"}


def _read(folder: Path, rtype: str) -> list[dict]:
    path = folder / f"{rtype}.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _pid(ref: dict | None) -> str | None:
    r = (ref or {}).get("reference", "")
    return r.split("/", 1)[1] if r.startswith("Patient/") else None


class Reference:
    """The indicators' definitions, recomputed naively from the resources."""

    def __init__(self, folder: Path) -> None:
        self.persons = {}
        for p in _read(folder, "Patient"):
            birth = _date(p.get("birthDate"))
            if birth is None:
                continue
            home = next((a for a in p.get("address", []) if a.get("use") == "home"), {})
            self.persons[p["id"]] = dict(sex=p.get("gender", "unknown"), region=home.get("state", "unknown"),
                                         district=home.get("district", "unknown"), birth=birth,
                                         death=_date(p.get("deceasedDateTime")))
        self.encounters = _read(folder, "Encounter")
        years = [_date(e["period"]["start"]).year for e in self.encounters]
        self.years = range(min(years), max(years) + 1)
        self.folder = folder

    @staticmethod
    def age(birth: dt.date, year: int) -> int:
        mid = dt.date(year, 7, 1)
        a = year - birth.year - ((mid.month, mid.day) < (birth.month, birth.day))
        return max(0, min(100, a))

    def alive_mid(self, p: dict, year: int) -> bool:
        mid = dt.date(year, 7, 1)
        return p["birth"] <= mid and (p["death"] is None or p["death"] > mid)

    def population(self, key) -> Counter:
        out: Counter = Counter()
        for p in self.persons.values():
            for y in self.years:
                if self.alive_mid(p, y):
                    out[key(p, y, self.age(p["birth"], y))] += 1
        return out

    def events(self, items, key) -> Counter:
        """items: (patient id, year, extra); counted in the cell of the person's mid-year attributes."""
        out: Counter = Counter()
        for pid, year, extra in items:
            p = self.persons.get(pid)
            if p is None or year not in self.years:
                continue
            out[key(p, year, self.age(p["birth"], year), extra)] += 1
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from healthtwin.population.generator import generate
    root = tmp_path_factory.mktemp("indicators")
    generate(root / "pop", PATIENTS, 11, end_date=dt.date(2024, 12, 31))
    mat = Materializer(NdjsonSource(root / "pop"), root / "out", indicator_views(), parquet=False)
    report = refresh_all(mat)
    assert not report.failed and all(v == "built" for v in report.extra["indicators"].values())
    yield mat, Reference(root / "pop")
    mat.close()


def figures(mat, name: str, params: dict, dims: list[str]) -> dict:
    res = compute(mat.con, load_indicators()[name], params, threshold=1)  # threshold 1: nothing suppressed
    return {tuple(f[d] for d in dims): (f["numerator"], f["denominator"]) for f in res["figures"]}


def compare(got: dict, num: Counter, den: Counter, den_key) -> None:
    keys = set(num) | {k for k in got}
    assert keys, "nothing to compare"
    for k in keys:
        assert got.get(k, (0, den[den_key(k)])) == (num.get(k, 0), den[den_key(k)]), k
    assert sum(v[0] for v in got.values()) == sum(num.values())


def test_population_by_region_sex_age(world) -> None:
    mat, ref = world
    got = figures(mat, "population", {"by": "region,sex,age", "age": "15-64"}, ["period", "region", "sex", "age"])
    band = lambda a: "85+" if a >= 85 else f"{a // 5 * 5}-{a // 5 * 5 + 4}"  # noqa: E731
    num = ref.population(lambda p, y, a: (y, p["region"], p["sex"], band(a)) if 15 <= a <= 64 else None)
    num.pop(None, None)
    den = ref.population(lambda p, y, a: y)  # the whole country, unfiltered
    compare(got, num, den, lambda k: k[0])


def test_chronic_prevalence(world) -> None:
    mat, ref = world
    groups = {"I10": "hypertension", "E11": "diabetes_type2", "I25": "ischaemic_heart_disease", "J44": "copd",
              "J45": "asthma", "N18": "chronic_kidney_disease", "C": "cancer", "D56.3": "thalassaemia_trait",
              "D56": "thalassaemia"}
    onset: dict[tuple[str, str], dt.date] = {}
    for c in _read(ref.folder, "Condition"):
        cat = c["category"][0]["coding"][0]["code"]
        icd = next((x["code"] for x in c["code"]["coding"] if x["system"].endswith("icd-10")), "")
        if cat != "problem-list-item":
            continue
        group = next((g for prefix, g in sorted(groups.items(), key=lambda kv: -len(kv[0]))
                      if icd.startswith(prefix)), None)
        if group is None and "I10" <= icd < "I16":
            group = "hypertension"
        if group is None and "I20" <= icd < "I26":
            group = "ischaemic_heart_disease"
        if group:
            d = _date(c.get("onsetDateTime") or c.get("recordedDate"))
            key = (_pid(c["subject"]), group)
            onset[key] = min(d, onset.get(key, d))
    num: Counter = Counter()
    for (pid, group), d in onset.items():
        p = ref.persons.get(pid)
        for y in ref.years:
            if p and ref.alive_mid(p, y) and d <= dt.date(y, 7, 1) and ref.age(p["birth"], y) >= 18:
                num[(y, p["region"], group)] += 1
    den = ref.population(lambda p, y, a: (y, p["region"]) if a >= 18 else None)
    got = figures(mat, "chronic_prevalence", {"by": "region", "age": "18+"}, ["period", "region", "condition"])
    compare(got, num, den, lambda k: k[:2])
    assert num[(max(ref.years), "Bakı", "hypertension")] > 20  # the check is not vacuous


def test_vaccination_coverage_and_dropout(world) -> None:
    mat, ref = world
    last = max(ref.years)
    def first_birthday(b: dt.date) -> dt.date:  # 29 February + 1 year is 28 February, as in SQL
        return dt.date(b.year + 1, b.month, 28 if (b.month, b.day) == (2, 29) else b.day)
    children = {pid: p for pid, p in ref.persons.items() if p["birth"].year > last - 15
                and (p["death"] is None or p["death"] >= first_birthday(p["birth"]))}
    doses: dict[str, set[str]] = defaultdict(set)
    for imm in _read(ref.folder, "Immunization"):
        if imm["status"] != "completed":
            continue
        pa = imm["protocolApplied"][0]
        doses[_pid(imm["patient"])].add(pa["series"] + str(pa.get("doseNumberPositiveInt", pa.get("doseNumberString", ""))))
    den = Counter((p["birth"].year, p["region"]) for p in children.values())
    num = Counter((p["birth"].year, p["region"], d) for pid, p in children.items() for d in doses[pid])
    got = figures(mat, "vaccination_coverage", {"by": "region"}, ["period", "region", "dose"])
    compare(got, num, den, lambda k: k[:2])
    dtp = got[(last - 3, "Bakı", "DTP3")]
    assert dtp[1] > 0 and 0.5 < dtp[0] / dtp[1] <= 1.0
    # Drop-out DTP1 -> DTP3 and MCV1 -> MCV2, nationally by cohort.
    pairs = {"DTP1-DTP3": ("DTP1", "DTP3"), "MCV1-MCV2": ("MCV1", "MCV2")}
    dnum, dden = Counter(), Counter()
    for pid, p in children.items():
        for pair, (a, b) in pairs.items():
            if a in doses[pid]:
                dden[(p["birth"].year, pair)] += 1
                dnum[(p["birth"].year, pair)] += b not in doses[pid]
    got = figures(mat, "vaccination_dropout", {"pair": "DTP1-DTP3,MCV1-MCV2"}, ["period", "pair"])
    assert got == {k: (dnum[k], dden[k]) for k in dden}


def test_encounters_hospitalisations_labs_prescriptions(world) -> None:
    mat, ref = world
    def popkey(p, y, a):
        return (y, p["sex"])
    den = ref.population(popkey)
    enc = [(_pid(e["subject"]), _date(e["period"]["start"]).year, e["class"]["code"]) for e in ref.encounters]
    num = ref.events(enc, lambda p, y, a, c: (y, p["sex"], c))
    compare(figures(mat, "encounter_rate", {"by": "sex,class"}, ["period", "sex", "class"]), num, den, lambda k: k[:2])
    num = ref.events([x for x in enc if x[2] == "IMP"], lambda p, y, a, c: (y, p["sex"]))
    compare(figures(mat, "hospitalisation_rate", {"by": "sex"}, ["period", "sex"]), num, den, lambda k: k[:2])

    labs = []
    for o in _read(ref.folder, "Observation"):
        if any(c.get("code") == "laboratory" for cat in o.get("category", []) for c in cat.get("coding", [])):
            loinc = next(c["code"] for c in o["code"]["coding"] if c["system"] == "http://loinc.org")
            interp = next((c["code"] for i in o.get("interpretation", []) for c in i.get("coding", [])), None)
            labs.append((_pid(o["subject"]), _date(o["effectiveDateTime"]).year, (loinc, interp)))
    num = ref.events(labs, lambda p, y, a, x: (y, x[0]) if x[1] in ABNORMAL else None)
    num.pop(None, None)
    tests = ref.events(labs, lambda p, y, a, x: (y, x[0]))
    got = figures(mat, "lab_abnormal_rate", {}, ["period", "test"])
    assert got == {k: (num.get(k, 0), n) for k, n in tests.items()}
    got = figures(mat, "lab_test_volume", {"sex": "female"}, ["period", "test"])
    fem = ref.events(labs, lambda p, y, a, x: (y, x[0]) if p["sex"] == "female" else None)
    fem.pop(None, None)
    fden = ref.population(lambda p, y, a: y if p["sex"] == "female" else None)
    compare(got, fem, fden, lambda k: k[0])

    rx = [(_pid(m["subject"]), _date(m["authoredOn"]).year,
           next(c["code"] for c in m["medicationCodeableConcept"]["coding"] if "whocc" in c["system"]))
          for m in _read(ref.folder, "MedicationRequest")]
    num = ref.events(rx, lambda p, y, a, atc: (y, atc[0]))
    compare(figures(mat, "prescriptions_atc", {"by": "atc_main"}, ["period", "atc_main"]), num,
            ref.population(lambda p, y, a: y), lambda k: k[0])


def test_deaths_and_claims(world) -> None:
    mat, ref = world
    causes = {}
    for o in _read(ref.folder, "Observation"):
        if o["code"]["coding"][0]["code"] == "69453-9":
            causes[_pid(o["subject"])] = o["valueCodeableConcept"]["coding"][0]["code"][:3]
    deaths = [(pid, p["death"].year, causes.get(pid, "unknown")) for pid, p in ref.persons.items() if p["death"]]
    num = ref.events(deaths, lambda p, y, a, c: (y, c))
    got = figures(mat, "deaths_by_cause", {}, ["period", "cause"])
    compare(got, num, ref.population(lambda p, y, a: y), lambda k: k[0])
    assert sum(num.values()) > 20

    claims = [(_pid(c["patient"]), _date(c["billablePeriod"]["start"]).year,
               (c["type"]["coding"][0]["code"], c["total"]["value"])) for c in _read(ref.folder, "Claim")]
    num = ref.events(claims, lambda p, y, a, x: (y, x[0]))
    compare(figures(mat, "claims_volume", {}, ["period", "claim_type"]), num,
            ref.population(lambda p, y, a: y), lambda k: k[0])
    cost: dict = defaultdict(float)
    for pid, y, (ctype, total) in claims:
        if pid in ref.persons and y in ref.years:
            cost[(y, ctype)] += total
    got = figures(mat, "claims_cost", {}, ["period", "claim_type"])
    assert set(got) == set(num)
    for k, (total, n) in got.items():
        assert n == num[k] and total == pytest.approx(cost[k])


def test_small_cells_are_suppressed(world) -> None:
    mat, _ = world
    ind = load_indicators()["chronic_prevalence"]
    res = compute(mat.con, ind, {"by": "district,sex,age"}, threshold=5)
    small = [f for f in res["figures"] if f["suppressed"]]
    shown = [f for f in res["figures"] if not f["suppressed"]]
    assert small and shown
    for f in small:
        assert f["numerator"] is None and f["value"] is None
    for f in shown:
        assert f["numerator"] == 0 or f["numerator"] >= 5
        assert f["denominator"] >= 5 and f["value"] is not None
    # The same cells without suppression: every suppressed one really was small.
    raw = {tuple(f[d] for d in res["by"]): f for f in compute(mat.con, ind, {"by": "district,sex,age"}, 1)["figures"]}
    for f in small:
        r = raw[tuple(f[d] for d in res["by"])]
        assert 0 < r["numerator"] < 5 or 0 < r["denominator"] < 5


def test_bad_requests_name_the_parameter() -> None:
    ind = load_indicators()["vaccination_coverage"]
    for params, where in (({"age": "1-4"}, "age"), ({"by": "colour"}, "by"), ({"period": "last year"}, "period")):
        with pytest.raises(IndicatorError) as exc:
            parse_query(ind, params)
        assert exc.value.location == where
    # dose is required in the breakdown: coverage is never summed across doses
    assert parse_query(ind, {"by": "region"}).by == ["period", "region", "dose"]


def test_cubes_rebuild_only_when_needed(world) -> None:
    mat, _ = world
    assert set(build_cubes(mat.con).values()) == {"current"}
    assert set(build_cubes(mat.con, force=True).values()) == {"built"}


def test_indicators_with_the_same_query_share_one_table(world) -> None:
    mat, _ = world
    inds = load_indicators()
    by_population = [i for i in inds.values() if " ".join(i.denominator_sql.split()) ==
                     "SELECT region, district, sex, age, period, denominator FROM base_population"]
    assert len(by_population) >= 2
    assert len({i.table("den") for i in by_population}) == 1
    shared = by_population[0].table("den")
    assert shared.startswith("ind__shared_den_")
    assert inds["claims_cost"].table("den") == "ind_claims_cost_den"  # a query of its own: a table of its own
    tables = {r[0] for r in mat.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert shared in tables and not any(f"ind_{i.name}_den" in tables for i in by_population)
    # A table no indicator uses any more (here: as an older version without sharing left it) goes at a rebuild.
    mat.con.execute(f"CREATE TABLE ind_{by_population[0].name}_den AS SELECT * FROM {shared}")
    build_cubes(mat.con, force=True)
    tables = {r[0] for r in mat.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert f"ind_{by_population[0].name}_den" not in tables
    assert {t for i in inds.values() for t in i.tables} <= tables


def test_http_routes_and_policy_hook(store, tmp_path) -> None:
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from healthtwin.analytics.web import Analytics
    from healthtwin.composition import create_app
    from healthtwin.api.services import Services
    from healthtwin.fhir.outcome import FHIRError
    from healthtwin.loading import load
    from healthtwin.population.generator import generate

    asked = []

    class Policy:
        def authorize(self, ctx, interaction, rtype, resource=None):
            asked.append((interaction, rtype))
            if ctx.header("x-role") == "guest" and interaction == "analytics":
                raise FHIRError(403, "analytics needs the analyst role", "forbidden")

    generate(tmp_path / "pop", 80, 4, end_date=dt.date(2024, 12, 31))
    services = Services.build(store, Policy())
    load(services, [str(tmp_path / "pop")], workers=1)
    analytics = Analytics(services, tmp_path / "analytics")
    app = create_app(store, services=services)
    app.router.routes.append(Mount("/analytics", app=analytics.app))
    with TestClient(app) as c:
        assert c.post("/analytics/refresh").status_code == 200
        listing = c.get("/analytics/indicators").json()
        assert {i["name"] for i in listing["indicators"]} == set(load_indicators())
        assert all({"numerator", "denominator", "period", "source"} <= set(i["definition"]) for i in listing["indicators"])
        r = c.get("/analytics/indicators/encounter_rate", params={"by": "region,class", "sex": "female", "age": "0-14"})
        body = r.json()
        assert r.status_code == 200 and body["by"] == ["period", "region", "class"]
        assert all({"period", "numerator", "denominator", "value", "suppressed"} <= set(f) for f in body["figures"])
        assert any(f["suppressed"] and f["value"] is None for f in body["figures"])
        r = c.get("/analytics/indicators/encounter_rate", params={"format": "csv", "class": "IMP"})
        assert r.headers["content-type"].startswith("text/csv") and r.text.startswith("period,class,numerator")
        assert c.get("/analytics/indicators/nothing").status_code == 404
        r = c.get("/analytics/indicators/population", params={"age": "old"})
        assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["age"]
        assert c.get("/analytics/indicators", headers={"x-role": "guest"}).status_code == 403
        status = c.get("/analytics/status").json()
        assert {v["name"] for v in status["views"]} >= {"patient", "encounter"}
    assert ("analytics", None) in asked
    analytics.stop()
