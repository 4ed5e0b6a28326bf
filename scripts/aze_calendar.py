"""Azerbaijan's national immunization calendar as CDSi supporting data (read by gen_cdsi_rules.py).

The calendar of the Ministry of Health of the Republic of Azerbaijan (sources and doubts in
docs/registries.md, "Immunization"): HepB within 12 hours of birth; BCG and OPV on days 4-7;
DTP-HepB-Hib (pentavalent) with OPV at 2, 3 and 4 months; PCV at 2, 4 and 6 months; MMR at 12 months and
6 years; DTP and OPV at 18 months; DT at 6 years. Rotavirus is not on the calendar as published, so it is
not here. Each dose's window follows WHO practice where the calendar is silent: the minimum age is the
calendar age less the grace of 4 days (absolute minimum), a minimum of 4 weeks between infant doses, and
past due one month after the calendar age.

The vaccine definitions (CVX map, vaccine groups, live-virus conflicts, observations) are the WHO file's,
plus the CDC map's entries for the CVX codes the calendar accepts and the WHO file lacks: 102 (DTP-Hib-HepB,
the older code of the same pentavalent that polyclinics and the population generator record), 146 (the
hexavalent DTaP-IPV-Hib-HepB some private clinics give) and 28 (paediatric DT, the 6-year booster). Without
them a pentavalent dose coded 102 counted for nothing and every such child showed DTP, HepB and Hib overdue.
"""
from __future__ import annotations

import copy
from typing import Any

# antigen -> (vaccine group, [(calendar age, minimum interval from the previous dose or None, CVX codes)])
PENTA = ["198", "102", "146", "01", "20", "120", "130"]
DTP_ONLY = ["01", "20", "115", "130"]
POLIO = ["178", "02", "10", "89", "120", "130", "146"]
DT = ["28", "09", "138", "01", "20", "115"]
CALENDAR: dict[str, tuple[str, list[tuple[str, str | None, list[str]]], str | None]] = {
    "Tuberculosis": ("BCG", [("4 days", None, ["19"])], None),
    "HepB": ("HepB", [("0 days", None, ["08", "45"]), ("2 months", "4 weeks", ["198", "102", "146", "51", "08", "45"]),
                      ("3 months", "4 weeks", ["198", "102", "146", "51", "08", "45"]),
                      ("4 months", "4 weeks", ["198", "102", "146", "51", "08", "45"])], None),
    "Diphtheria": ("DTP", [("2 months", None, PENTA), ("3 months", "4 weeks", PENTA),
                           ("4 months", "4 weeks", PENTA), ("18 months", "6 months", DTP_ONLY),
                           ("6 years", "4 years", DT)], None),
    "Tetanus": ("DTP", [("2 months", None, PENTA), ("3 months", "4 weeks", PENTA),
                        ("4 months", "4 weeks", PENTA), ("18 months", "6 months", DTP_ONLY + ["35"]),
                        ("6 years", "4 years", DT + ["35"])], None),
    "Pertussis": ("DTP", [("2 months", None, PENTA), ("3 months", "4 weeks", PENTA),
                          ("4 months", "4 weeks", PENTA), ("18 months", "6 months", DTP_ONLY)], "7 years"),
    "Hib": ("Hib", [("2 months", None, ["198", "102", "146", "51", "120", "17", "48"]),
                    ("3 months", "4 weeks", ["198", "102", "146", "51", "120", "17", "48"]),
                    ("4 months", "4 weeks", ["198", "102", "146", "51", "120", "17", "48"])], "5 years"),
    "Polio": ("Polio", [("4 days", None, ["178", "02", "89"]),
                        ("2 months", "4 weeks", POLIO), ("3 months", "4 weeks", POLIO),
                        ("4 months", "4 weeks", POLIO), ("18 months", "6 months", POLIO)], None),
    "Pneumococcal": ("PCV", [("2 months", None, ["133", "152", "215"]),
                             ("4 months", "4 weeks", ["133", "152", "215"]),
                             ("6 months", "4 weeks", ["133", "152", "215"])], "5 years"),
    "Measles": ("MMR", [("12 months", None, ["03", "94", "04", "05"]),
                        ("6 years", "4 weeks", ["03", "94", "04", "05"])], None),
    "Mumps": ("MMR", [("12 months", None, ["03", "94", "07"]), ("6 years", "4 weeks", ["03", "94", "07"])], None),
    "Rubella": ("MMR", [("12 months", None, ["03", "94", "04", "06"]),
                        ("6 years", "4 weeks", ["03", "94", "04", "06"])], None),
}


def _dose(number: int, age: str, interval: str | None, cvxs: list[str], names: dict[str, str],
          max_age: str | None) -> dict[str, Any]:
    early = f"{age} - 4 days" if age not in ("0 days", "4 days") else "0 days"
    age_row: dict[str, Any] = {"absMinAge": early, "minAge": age if age != "4 days" else "0 days",
                               "earliestRecAge": age, "latestRecAge": f"{age} + 1 month"}
    if max_age:
        age_row["maxAge"] = max_age
    vaccines = [{"vaccineType": names.get(c, c), "cvx": c, "beginAge": "0 days"} for c in cvxs]
    dose: dict[str, Any] = {
        "doseNumber": f"Dose {number}", "age": [age_row],
        "preferableVaccine": [dict(vaccines[0], forecastVaccineType="Y")] + vaccines[1:],
        "allowableVaccine": vaccines, "recurringDose": "No",
    }
    if interval:
        dose["interval"] = [{"fromPrevious": "Y", "absMinInt": f"{interval} - 4 days", "minInt": interval,
                             "earliestRecInt": interval}]
    return dose


# CVX codes the calendar accepts that the WHO file's map lacks; their antigens come from the CDC map.
FROM_CDC_MAP = ("102", "146", "28")


def azerbaijan(who: dict[str, Any], cdc: dict[str, Any]) -> dict[str, Any]:
    schedule = copy.deepcopy(who["schedule"])
    cvx_map = schedule["cvxToAntigenMap"]["cvxMap"]
    have = {m["cvx"] for m in cvx_map}
    cdc_map = {m["cvx"]: m for m in cdc["schedule"]["cvxToAntigenMap"]["cvxMap"]}
    cvx_map.extend(copy.deepcopy(cdc_map[c]) for c in FROM_CDC_MAP if c not in have)
    names = {m["cvx"]: m.get("shortDescription", m["cvx"]) for m in schedule["cvxToAntigenMap"]["cvxMap"]}
    antigens: dict[str, Any] = {}
    for antigen, (group, doses, max_age) in CALENDAR.items():
        base = copy.deepcopy(who["antigens"].get(antigen, {}))
        series = {
            "seriesName": f"Azerbaijan {antigen} {len(doses)}-dose series", "targetDisease": antigen,
            "vaccineGroup": group, "seriesType": "Standard",
            "selectSeries": {"defaultSeries": "Yes", "productPath": "No", "seriesGroupName": "Standard",
                             "seriesGroup": "1", "seriesPriority": "A", "seriesPreference": "1"},
            "seriesDose": [_dose(i + 1, age, interval, cvxs, names, max_age)
                           for i, (age, interval, cvxs) in enumerate(doses)],
        }
        antigens[antigen] = {key: value for key, value in base.items() if key in ("immunity", "contraindications")}
        antigens[antigen]["series"] = [series]
    wanted = {group for group, _, _ in CALENDAR.values()}
    schedule["vaccineGroups"]["vaccineGroup"] = [g for g in schedule["vaccineGroups"]["vaccineGroup"]
                                                 if g["name"] in wanted]
    schedule["vaccineGroupToAntigenMap"]["vaccineGroupMap"] = [
        m for m in schedule["vaccineGroupToAntigenMap"]["vaccineGroupMap"] if m["name"] in wanted]
    return {"name": "Azerbaijan national calendar (Ministry of Health)", "schedule": schedule,
            "antigens": antigens}
