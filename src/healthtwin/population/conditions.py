"""Chronic conditions (age/sex prevalence), acute episodes (seasonal incidence) and causes of death.

Chronic prevalence is specified as the probability of having been diagnosed by a given age; onset is
drawn so that the prevalence curve is reproduced at every age (inverse of the cumulative curve).
Numbers and their sources are listed in docs/population.md.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from .common import COND_CAT, COND_CLIN, COND_VER, ICD10, SNOMED, Person, Resource, dstr


@dataclass(frozen=True)
class Chronic:
    key: str
    snomed: str
    snomed_display: str
    icd10: str
    icd_display: str
    points: tuple[tuple[int, float, float], ...]  # (age, prevalence male, prevalence female)
    death_mult: float  # multiplier of the annual death probability once present
    visits_per_year: float  # extra follow-up visits
    sex: str | None = None  # restrict to one sex
    cause_of_death: str | None = None  # ICD-10 cause used when this condition leads the certificate


CHRONIC: list[Chronic] = [
    Chronic("htn", "38341003", "Hypertensive disorder, systemic arterial", "I10", "Essential (primary) hypertension",
            ((0, 0, 0), (18, 0.01, 0.01), (30, 0.08, 0.06), (40, 0.20, 0.19), (50, 0.36, 0.40), (60, 0.50, 0.56),
             (70, 0.60, 0.66), (100, 0.65, 0.70)), 1.25, 2.0, None, "I11.9"),
    Chronic("t2dm", "44054006", "Diabetes mellitus type 2", "E11.9", "Type 2 diabetes mellitus without complications",
            ((0, 0, 0), (20, 0.002, 0.002), (30, 0.012, 0.012), (40, 0.04, 0.04), (50, 0.09, 0.10),
             (60, 0.14, 0.16), (70, 0.17, 0.19), (100, 0.17, 0.18)), 1.6, 3.0, None, "E11.9"),
    Chronic("ihd", "414545008", "Ischemic heart disease", "I25.9", "Chronic ischaemic heart disease, unspecified",
            ((0, 0, 0), (35, 0.0, 0.0), (45, 0.03, 0.015), (55, 0.08, 0.05), (65, 0.16, 0.12),
             (75, 0.25, 0.21), (100, 0.30, 0.27)), 2.2, 2.0, None, "I25.1"),
    Chronic("copd", "13645005", "Chronic obstructive lung disease", "J44.9",
            "Chronic obstructive pulmonary disease, unspecified",
            ((0, 0, 0), (35, 0.0, 0.0), (45, 0.02, 0.007), (55, 0.05, 0.015), (65, 0.09, 0.03), (100, 0.12, 0.04)),
            2.0, 1.5, None, "J44.9"),
    Chronic("asthma", "195967001", "Asthma", "J45.9", "Asthma, unspecified",
            ((0, 0, 0), (3, 0.0, 0.0), (10, 0.035, 0.025), (40, 0.035, 0.04), (100, 0.04, 0.045)), 1.05, 1.0),
    Chronic("ckd", "709044004", "Chronic kidney disease", "N18.9", "Chronic kidney disease, unspecified",
            ((0, 0, 0), (40, 0.0, 0.0), (50, 0.02, 0.02), (60, 0.05, 0.05), (70, 0.09, 0.10), (100, 0.14, 0.15)),
            1.8, 2.0, None, "N18.5"),
    Chronic("breast_ca", "254837009", "Malignant neoplasm of breast", "C50.9", "Malignant neoplasm of breast, unspecified",
            ((0, 0, 0), (30, 0, 0.0), (45, 0, 0.004), (60, 0, 0.010), (100, 0, 0.014)), 3.0, 3.0, "female", "C50.9"),
    Chronic("lung_ca", "363358000", "Malignant tumor of lung", "C34.9", "Malignant neoplasm of bronchus or lung, unspecified",
            ((0, 0, 0), (40, 0.0, 0.0), (60, 0.003, 0.0006), (100, 0.006, 0.0012)), 8.0, 3.0, None, "C34.9"),
    Chronic("stomach_ca", "363349007", "Malignant tumor of stomach", "C16.9", "Malignant neoplasm of stomach, unspecified",
            ((0, 0, 0), (40, 0.0, 0.0), (60, 0.002, 0.001), (100, 0.004, 0.002)), 6.0, 3.0, None, "C16.9"),
    Chronic("colon_ca", "363406005", "Malignant neoplasm of colon", "C18.9", "Malignant neoplasm of colon, unspecified",
            ((0, 0, 0), (40, 0.0, 0.0), (60, 0.002, 0.0015), (100, 0.005, 0.004)), 3.0, 3.0, None, "C18.9"),
    # Beta-thalassaemia is congenital: prevalence is flat from birth. Carrier ~3.7 % (premarital
    # screening 2015-); major is rare because of screening and reduced survival.
    # No SNOMED code could be verified for the carrier state: the trait is coded in ICD-10 only.
    Chronic("thal_trait", "", "Beta thalassaemia trait (carrier)", "D56.3", "Thalassaemia trait",
            ((0, 0.037, 0.037), (100, 0.037, 0.037)), 1.0, 0.0),
    Chronic("thal_major", "65959000", "Beta thalassemia", "D56.1", "Beta thalassaemia",
            ((0, 0.0003, 0.0003), (30, 0.0002, 0.0002), (45, 0.0, 0.0), (100, 0.0, 0.0)), 4.0, 12.0),
]
CHRONIC_BY_KEY = {c.key: c for c in CHRONIC}


def _table(c: Chronic, sex_index: int) -> list[float]:
    """Cumulative prevalence by single year of age 0..100 (linear between points)."""
    pts = c.points
    out = []
    for age in range(101):
        for (a0, *v0), (a1, *v1) in zip(pts, pts[1:], strict=False):
            if a0 <= age <= a1:
                f = (age - a0) / (a1 - a0) if a1 > a0 else 0.0
                out.append(v0[sex_index] + (v1[sex_index] - v0[sex_index]) * f)
                break
    return out


_TABLES = {(c.key, s): _table(c, i) for c in CHRONIC for i, s in enumerate(("male", "female"))}


def prevalence(key: str, age: float, sex: str) -> float:
    return _TABLES[(key, sex)][min(int(age), 100)]


def sample_chronic(rng: random.Random, age_end: float, sex: str) -> dict[str, float]:
    """Condition key -> onset age in years. Congenital conditions start at birth."""
    out: dict[str, float] = {}
    a = min(int(age_end), 100)
    for c in CHRONIC:
        if c.sex and c.sex != sex:
            continue
        tab = _TABLES[(c.key, sex)]
        p = tab[a]
        if p <= 0.0 or rng.random() >= p:
            continue
        if c.key.startswith("thal"):
            out[c.key] = 0.0
            continue
        target = rng.random() * p
        onset = bisect.bisect_left(tab, target, 0, a + 1)  # first age where the curve reaches target
        out[c.key] = min(age_end, onset + rng.random())
    if "thal_major" in out:
        out.pop("thal_trait", None)
    return out


@dataclass(frozen=True)
class Acute:
    key: str
    snomed: str
    display: str
    icd10: str
    icd_display: str
    rate: tuple[float, float, float]  # episodes per person-year: child (<15), adult, older (65+)
    months: tuple[float, ...]  # relative incidence Jan..Dec
    p_emer: float
    p_imp: float
    los: tuple[int, int]  # inpatient length of stay range, days


_FLAT = (1.0,) * 12
ACUTE: list[Acute] = [
    Acute("ili", "6142004", "Influenza", "J11.1", "Influenza with other respiratory manifestations, virus not identified",
          (0.35, 0.12, 0.15), (3.0, 2.6, 1.5, 0.6, 0.3, 0.2, 0.2, 0.2, 0.4, 0.8, 1.4, 2.4), 0.05, 0.01, (3, 7)),
    Acute("gastro", "25374005", "Gastroenteritis", "A09", "Infectious gastroenteritis and colitis, unspecified",
          (0.25, 0.06, 0.05), (0.6, 0.6, 0.7, 0.9, 1.3, 1.8, 2.1, 2.0, 1.4, 0.9, 0.7, 0.6), 0.08, 0.02, (2, 5)),
    Acute("pharyngitis", "363746003", "Acute pharyngitis", "J02.9", "Acute pharyngitis, unspecified",
          (0.30, 0.08, 0.04), (1.6, 1.5, 1.3, 1.0, 0.8, 0.6, 0.5, 0.5, 0.8, 1.1, 1.3, 1.5), 0.01, 0.0, (1, 2)),
    Acute("otitis", "65363002", "Otitis media", "H66.9", "Otitis media, unspecified",
          (0.12, 0.01, 0.005), (1.4, 1.4, 1.2, 1.0, 0.8, 0.7, 0.7, 0.7, 0.8, 1.0, 1.2, 1.4), 0.02, 0.0, (1, 2)),
    Acute("pneumonia", "233604007", "Pneumonia", "J18.9", "Pneumonia, unspecified organism",
          (0.02, 0.006, 0.025), (1.8, 1.7, 1.4, 1.0, 0.7, 0.5, 0.5, 0.5, 0.6, 0.9, 1.3, 1.6), 0.30, 0.45, (5, 12)),
    Acute("uti", "68566005", "Urinary tract infectious disease", "N39.0", "Urinary tract infection, site not specified",
          (0.01, 0.04, 0.06), _FLAT, 0.05, 0.03, (3, 6)),
    Acute("sprain", "44465007", "Sprain of ankle", "S93.4", "Sprain and strain of ankle",
          (0.02, 0.02, 0.01), (0.8, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.3, 1.1, 1.0, 0.8, 0.7), 0.7, 0.0, (1, 1)),
    Acute("appendicitis", "74400008", "Appendicitis", "K35.8", "Acute appendicitis, other and unspecified",
          (0.0012, 0.0011, 0.0004), _FLAT, 1.0, 1.0, (3, 6)),
]
ACUTE_BY_KEY = {a.key: a for a in ACUTE}

# Day-of-year sampling tables, 366 entries each, so that an episode date is one bisect away.
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DOY: dict[str, list[float]] = {}
for _ac in ACUTE:
    acc, cum = 0.0, []
    for _m, _nd in enumerate(_MONTH_DAYS):
        for _ in range(_nd):
            acc += _ac.months[_m]
            cum.append(acc)
    _DOY[_ac.key] = [x / acc for x in cum]
MONTH_MEAN = {a.key: sum(a.months) / 12.0 for a in ACUTE}


def day_of_year(rng: random.Random, key: str) -> int:
    """0-based day of a (leap) year, following the seasonal profile."""
    return min(bisect.bisect_left(_DOY[key], rng.random()), 365)


def acute_rate(a: Acute, age: float) -> float:
    return a.rate[0] if age < 15 else (a.rate[2] if age >= 65 else a.rate[1])


# The WHO ICD-10 titles of the causes certificates name where the leading condition's own code is not the
# cause (Chronic.cause_of_death); the condition's title was written beside them before.
CAUSE_DISPLAY = {"I11.9": "Hypertensive heart disease without (congestive) heart failure",
                 "I25.1": "Atherosclerotic heart disease", "N18.5": "Chronic kidney disease, stage 5"}

# Generic causes of death when no modelled chronic condition leads (ICD-10, display, age floor).
OTHER_CAUSES: list[tuple[str, str]] = [
    ("I64", "Stroke, not specified as haemorrhage or infarction"), ("I21.9", "Acute myocardial infarction, unspecified"),
    ("J18.9", "Pneumonia, unspecified organism"), ("K74.6", "Other and unspecified cirrhosis of liver"),
    ("C80.9", "Malignant neoplasm, primary site unspecified"), ("R54", "Senility"),
]
YOUNG_CAUSES: list[tuple[str, str]] = [
    ("V89.2", "Person injured in unspecified motor-vehicle accident, traffic"), ("W74", "Unspecified drowning"),
    ("I46.1", "Sudden cardiac death, so described"), ("C91.0", "Acute lymphoblastic leukaemia"),
]
INFANT_CAUSES: list[tuple[str, str]] = [
    ("P07.3", "Other preterm infants"), ("P22.0", "Respiratory distress syndrome of newborn"),
    ("Q24.9", "Congenital malformation of heart, unspecified"), ("P36.9", "Bacterial sepsis of newborn, unspecified"),
]


def condition_resource(p: Person, rid: str, snomed: str, display: str, icd: str, icd_display: str, onset: int,
                       abatement: int | None, encounter: str | None, recorder: str | None,
                       category: str = "problem-list-item") -> Resource:
    """A Condition with SNOMED CT and ICD-10 codings."""
    res: Resource = {
        "resourceType": "Condition", "id": rid,
        "clinicalStatus": {"coding": [{"system": COND_CLIN, "code": "resolved" if abatement else "active"}]},
        "verificationStatus": {"coding": [{"system": COND_VER, "code": "confirmed"}]},
        "category": [{"coding": [{"system": COND_CAT, "code": category}]}],
        "code": {"coding": ([{"system": SNOMED, "code": snomed, "display": display}] if snomed else [])
                 + [{"system": ICD10, "code": icd, "display": icd_display}], "text": display},
        "subject": p.ref, "onsetDateTime": dstr(onset), "recordedDate": dstr(onset),
    }
    if abatement:
        res["abatementDateTime"] = dstr(abatement)
    if encounter:
        res["encounter"] = {"reference": f"Encounter/{encounter}"}
    if recorder:
        res["recorder"] = {"reference": f"Practitioner/{recorder}"}
    return res
