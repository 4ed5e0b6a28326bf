"""Generated marginals against the statistics documented in docs/population.md.

One population of 20,000 residents (window 2022-2024, planted events off so that they do not bias the
baseline) is generated once; each test compares one documented statistic within a stated tolerance
(about 3-4 binomial standard errors at this size, plus model slack where the doc says so).
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

import pytest

from healthtwin.population import generate_stream
from healthtwin.population.geography import REGION_NAMES

N = 20_000
END = dt.date(2024, 12, 31)
START_YEAR = 2022

# Documented statistics (docs/population.md), as fractions.
AGE_BANDS = {(0, 15): 0.216, (15, 65): 0.694, (65, 200): 0.090}  # SSC 2023/24 structure (approximated)
MALE_SHARE = 0.498  # SSC 1 Jan 2024: 49.8 % men
URBAN_SHARE = 0.545  # SSC 1 Jan 2024
REGION_SHARES = {"Bakı": 0.230, "Abşeron-Xızı": 0.086, "Gəncə-Daşkəsən": 0.059, "Qazax-Tovuz": 0.067,
                 "Quba-Xaçmaz": 0.054, "Qarabağ": 0.073, "Lənkəran-Astara": 0.092, "Mərkəzi Aran": 0.071,
                 "Mil-Muğan": 0.051, "Dağlıq Şirvan": 0.031, "Naxçıvan": 0.046, "Şəki-Zaqatala": 0.061,
                 "Şirvan-Salyan": 0.049, "Şərqi Zəngəzur": 0.030}
ADULT_PREVALENCE = {"I10": (0.275, 0.02), "E11.9": (0.068, 0.01), "I25.9": (0.041, 0.008),
                    "J44.9": (0.019, 0.005), "J45.9": (0.034, 0.006), "N18.9": (0.022, 0.005)}
THAL_TRAIT = (0.037, 0.005)  # all ages
COVERAGE = {("DTP", 1): (0.92, 0.035), ("DTP", 3): (0.83, 0.045), ("MCV", 1): (0.96, 0.025),
            ("BCG", 1): (0.97, 0.02)}
MCV2 = (0.93, 0.03)
CRUDE_DEATH_RATE = (0.0059, 0.0012)  # SSC 2023: 5.9 per 1000


@pytest.fixture(scope="module")
def pop() -> dict:
    patients: dict[str, dict] = {}
    conds: dict[str, set[str]] = defaultdict(set)
    doses: dict[str, Counter] = defaultdict(Counter)
    for rtype, r in generate_stream(N, 2024, start_year=START_YEAR, end_date=END, events=set()):
        if rtype == "Patient":
            patients[r["id"]] = r
        elif rtype == "Condition":
            conds[r["code"]["coding"][-1]["code"]].add(r["subject"]["reference"][8:])
        elif rtype == "Immunization":
            doses[r["patient"]["reference"][8:]][r["protocolApplied"][0]["series"]] += 1
    return {"patients": patients, "conds": conds, "doses": doses}


def _age(p: dict) -> float:
    return (END - dt.date.fromisoformat(p["birthDate"])).days / 365.25


def _alive(pop: dict) -> list[dict]:
    return [p for p in pop["patients"].values() if "deceasedDateTime" not in p]


def test_age_pyramid(pop: dict) -> None:
    everyone = list(pop["patients"].values())  # sampled residents, age they reach at END
    for (lo, hi), share in AGE_BANDS.items():
        got = sum(lo <= _age(p) < hi for p in everyone) / len(everyone)
        assert abs(got - share) < 0.012, (lo, hi, got, share)


def test_sex_ratio_and_urban_share(pop: dict) -> None:
    alive = _alive(pop)
    male = sum(p["gender"] == "male" for p in alive) / len(alive)
    assert abs(male - MALE_SHARE) < 0.015, male
    urban = sum(p["address"][0]["extension"][0]["valueBoolean"] for p in alive) / len(alive)
    assert abs(urban - URBAN_SHARE) < 0.02, urban


def test_regional_shares(pop: dict) -> None:
    assert set(REGION_SHARES) == set(REGION_NAMES.values())
    counts = Counter(p["address"][0]["state"] for p in pop["patients"].values())
    for region, share in REGION_SHARES.items():
        got = counts[region] / N
        assert abs(got - share) < max(0.006, 4 * (share * (1 - share) / N) ** 0.5), (region, got, share)


def test_chronic_prevalence(pop: dict) -> None:
    adults = {p["id"] for p in _alive(pop) if _age(p) >= 18}
    for icd, (target, tol) in ADULT_PREVALENCE.items():
        got = len(pop["conds"][icd] & adults) / len(adults)
        assert abs(got - target) < tol, (icd, got, target)
    alive = {p["id"] for p in _alive(pop)}
    got = len(pop["conds"]["D56.3"] & alive) / len(alive)
    assert abs(got - THAL_TRAIT[0]) < THAL_TRAIT[1], got
    major = len(pop["conds"]["D56.1"] & alive) / len(alive)
    assert major < 0.001


def test_vaccination_coverage(pop: dict) -> None:
    kids = [p["id"] for p in _alive(pop) if 2 <= _age(p) < 5]  # cohorts past the 24-month mark
    assert len(kids) > 400
    for (series, n), (target, tol) in COVERAGE.items():
        got = sum(pop["doses"][k][series] >= n for k in kids) / len(kids)
        assert abs(got - target) < tol, (series, n, got, target)
    school = [p["id"] for p in _alive(pop) if 7 <= _age(p) < 10]  # past the 6-year MMR2 visit
    got = sum(pop["doses"][k]["MCV"] >= 2 for k in school) / len(school)
    assert abs(got - MCV2[0]) < MCV2[1], got
    # drop-out: DTP3 never exceeds DTP1 for anyone, and some children are late or missed
    assert all(pop["doses"][k]["DTP"] <= 4 for k in kids)


def test_crude_death_rate(pop: dict) -> None:
    start = dt.date(START_YEAR, 1, 1)
    person_years = sum((END - max(start, dt.date.fromisoformat(p["birthDate"]))).days / 365.25
                       for p in pop["patients"].values())
    deaths = sum("deceasedDateTime" in p for p in pop["patients"].values())
    rate = deaths / person_years
    assert abs(rate - CRUDE_DEATH_RATE[0]) < CRUDE_DEATH_RATE[1], rate
