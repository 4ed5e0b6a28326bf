"""The national immunization calendar of Azerbaijan and a coverage / drop-out / delay model.

Calendar (Ministry of Health, as published on pediatriya.az): HepB within 12 h of birth; BCG and OPV on
day 4-7; DTwP-HepB-Hib (pentavalent) + OPV at 2, 3 and 4 months (IPV with the 4-month visit); PCV at
2, 4 and 6 months; MMR at 12 months and 6 years; DTP + OPV booster at 18 months; DT at 6 years.
Rotavirus is listed but disabled: it was not found in the published calendar (see docs).

Coverage: one latent "access" draw per child; dose k of a series is given when the draw is below the
dose's target coverage times the district factor. Because the draw is shared, series are nested
(DTP3 implies DTP1) and drop-out arises naturally. Each dose is late by a random delay; a fraction are
very late (catch-up).
"""
from __future__ import annotations

from dataclasses import dataclass

from .common import ATC, CVX, Person, dtstr

# National targets (WUENIC 2023 for DTP1/DTP3/MCV1; MoH 2016 report for BCG/HepB-BD; see docs).
TARGETS = {"BCG": 0.97, "HEPB0": 0.97, "DTP1": 0.92, "DTP2": 0.88, "DTP3": 0.83, "DTP4": 0.78,
           "MCV1": 0.96, "MCV2": 0.93, "PCV1": 0.92, "PCV2": 0.88, "PCV3": 0.83, "POL0": 0.96, "POL1": 0.93,
           "POL2": 0.91, "POL3": 0.89, "POL4": 0.82, "IPV1": 0.83, "DT": 0.90, "ROTA1": 0.0, "ROTA2": 0.0}


@dataclass(frozen=True)
class Dose:
    key: str  # coverage key above
    series: str  # "DTP", "MCV", ...
    number: int
    age_days: int
    cvx: str
    cvx_display: str
    atc: str
    atc_display: str
    enabled: bool = True


SCHEDULE: list[Dose] = [
    Dose("HEPB0", "HepB", 1, 0, "08", "hepatitis B vaccine, pediatric or pediatric/adolescent dosage", "J07BC01", "hepatitis B, purified antigen"),
    Dose("BCG", "BCG", 1, 5, "19", "Bacillus Calmette-Guerin vaccine", "J07AN01", "tuberculosis, live attenuated"),
    Dose("POL0", "Polio", 0, 5, "178", "Non-US bivalent oral polio vaccine (types 1, 3)", "J07BF04", "poliomyelitis oral, bivalent, live attenuated"),
    Dose("DTP1", "DTP", 1, 61, "102", "DTP- Haemophilus influenzae type b conjugate and hepatitis b vaccine", "J07CA11", "diphtheria-hemophilus influenzae B-pertussis-tetanus-hepatitis B"),
    Dose("POL1", "Polio", 1, 61, "178", "Non-US bivalent oral polio vaccine (types 1, 3)", "J07BF04", "poliomyelitis oral, bivalent, live attenuated"),
    Dose("PCV1", "PCV", 1, 61, "133", "pneumococcal conjugate vaccine, 13 valent", "J07AL02", "pneumococcus purified polysaccharides antigen conjugated"),
    Dose("ROTA1", "Rota", 1, 61, "119", "rotavirus, live, monovalent vaccine", "J07BH01", "rota virus, live attenuated", False),
    Dose("DTP2", "DTP", 2, 91, "102", "DTP- Haemophilus influenzae type b conjugate and hepatitis b vaccine", "J07CA11", "diphtheria-hemophilus influenzae B-pertussis-tetanus-hepatitis B"),
    Dose("POL2", "Polio", 2, 91, "178", "Non-US bivalent oral polio vaccine (types 1, 3)", "J07BF04", "poliomyelitis oral, bivalent, live attenuated"),
    Dose("ROTA2", "Rota", 2, 91, "119", "rotavirus, live, monovalent vaccine", "J07BH01", "rota virus, live attenuated", False),
    Dose("DTP3", "DTP", 3, 122, "102", "DTP- Haemophilus influenzae type b conjugate and hepatitis b vaccine", "J07CA11", "diphtheria-hemophilus influenzae B-pertussis-tetanus-hepatitis B"),
    Dose("POL3", "Polio", 3, 122, "178", "Non-US bivalent oral polio vaccine (types 1, 3)", "J07BF04", "poliomyelitis oral, bivalent, live attenuated"),
    Dose("IPV1", "IPV", 1, 122, "10", "poliovirus vaccine, inactivated", "J07BF03", "poliomyelitis, trivalent, inactivated, whole virus"),
    Dose("PCV2", "PCV", 2, 122, "133", "pneumococcal conjugate vaccine, 13 valent", "J07AL02", "pneumococcus purified polysaccharides antigen conjugated"),
    Dose("PCV3", "PCV", 3, 183, "133", "pneumococcal conjugate vaccine, 13 valent", "J07AL02", "pneumococcus purified polysaccharides antigen conjugated"),
    Dose("MCV1", "MCV", 1, 365, "03", "measles, mumps and rubella virus vaccine", "J07BD52", "measles, combinations with mumps and rubella, live attenuated"),
    Dose("DTP4", "DTP", 4, 548, "01", "diphtheria, tetanus toxoids and pertussis vaccine", "J07AJ52", "pertussis, inactivated, whole cell, combinations with toxoids"),
    Dose("POL4", "Polio", 4, 548, "178", "Non-US bivalent oral polio vaccine (types 1, 3)", "J07BF04", "poliomyelitis oral, bivalent, live attenuated"),
    Dose("MCV2", "MCV", 2, 2191, "03", "measles, mumps and rubella virus vaccine", "J07BD52", "measles, combinations with mumps and rubella, live attenuated"),
    Dose("DT", "DT", 1, 2191, "28", "DT (pediatric)", "J07AM51", "tetanus toxoid, combinations with diphtheria toxoid"),
]
_VC = {d.key: {"coding": [{"system": CVX, "code": d.cvx, "display": d.cvx_display},
                          {"system": ATC, "code": d.atc, "display": d.atc_display}], "text": d.cvx_display}
       for d in SCHEDULE}
_PERF_FN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0443", "code": "AP",
                        "display": "Administering Provider"}]}
_ROUTE = {"IM": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
                             "code": "IM", "display": "Injection, intramuscular"}]},
          "PO": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
                             "code": "PO", "display": "Swallow, oral"}]}}
P_VERY_LATE = 0.12  # share of given doses that are months late (catch-up at a later visit)


def immunize(p: Person, history_start: int, end: int, performer_id: str, mcv_factor: float = 1.0) -> list[int]:
    """Emit the childhood immunizations of one person; returns the days MCV doses were given."""
    rng = p.rng
    access = rng.random()
    factor = p.district.vacc_factor
    mcv_days: list[int] = []
    prev_day = {}  # series -> day of previous dose, to respect minimum 4-week intervals
    for d in SCHEDULE:
        if not d.enabled:
            continue
        target = TARGETS[d.key] * factor * (mcv_factor if d.series == "MCV" else 1.0)
        if access >= min(target, 0.995):
            continue
        delay = 0 if d.age_days == 0 else int(rng.expovariate(1 / 12.0))
        if d.age_days and rng.random() < P_VERY_LATE:
            delay += rng.randrange(30, 240)
        day = p.birth + d.age_days + delay
        last = prev_day.get(d.series)
        if last is not None and day < last + 28:
            day = last + 28
        prev_day[d.series] = day
        if day > end or (p.death is not None and day > p.death):
            continue
        if d.series == "MCV":
            mcv_days.append(day)
        if day < history_start:
            continue
        lot_year = int(dtstr(day)[:4])
        p.emit("Immunization", {
            "resourceType": "Immunization", "id": p.new_id("imm"), "status": "completed",
            "vaccineCode": _VC[d.key], "patient": p.ref, "occurrenceDateTime": dtstr(day, 540 + rng.randrange(480)),
            "primarySource": True, "lotNumber": f"{d.series.upper()}{lot_year % 100:02d}{rng.randrange(100, 999)}",
            "route": _ROUTE["PO" if d.series in ("Polio", "Rota") else "IM"],
            "performer": [{"function": _PERF_FN, "actor": {"reference": f"Practitioner/{performer_id}"}}],
            "protocolApplied": [{"series": d.series, "doseNumberPositiveInt": d.number} if d.number
                                else {"series": d.series, "doseNumberString": "0"}],
        })
    return mcv_days
