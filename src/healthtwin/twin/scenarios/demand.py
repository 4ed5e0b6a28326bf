"""CHIME-style hospital demand of a scenario, per hospital, region and nationally, against the beds.

Admissions on day t are the diagnosed cases of day t - delay times the share of the group's cases that the
record shows admitted (admissions with a diagnosis of the group / cases of the group over the year before
the start: the record's own severity, unless given); ICU admissions are a share of those and ventilated
patients a share of ICU. Each region's admissions go to the hospitals its residents were admitted to in
that year, in the same proportions (CHIME's "market share", read from the record; by beds where a region
had none). The census of each kind is CHIME's: the admissions of the last length-of-stay days
(`chime.census`). A hospital's occupied beds are its census before the scenario (the mean of the 14 days to
the start, every cause) plus the scenario's census; capacity is its beds × bed_scale. The results say on
which day a hospital, a region and the country first need more beds than they have, for how many days, and
by how many beds at the worst. The Locations state no ICU beds, so ICU and ventilator demand has no capacity
to compare with.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .chime import census

DEFAULTS = {"admissions_per_case": None, "icu_share": 0.1, "ventilated_share": 0.5, "los_days": None,
            "icu_los_days": 7.0, "ventilated_los_days": 8.0, "admission_delay_days": 2.0}


@dataclass(frozen=True)
class Severity:
    admissions_per_case: float | None  # None: the record's
    icu_share: float
    ventilated_share: float
    los_days: float | None  # None: the record's mean stay of the group's admissions
    icu_los_days: float
    ventilated_los_days: float
    admission_delay_days: float

    @classmethod
    def from_inputs(cls, raw: dict[str, Any] | None) -> "Severity":
        raw = raw or {}
        if not isinstance(raw, dict) or set(raw) - set(DEFAULTS):
            raise ValueError(f"severity takes {', '.join(DEFAULTS)}")
        values = {**DEFAULTS, **raw}
        for key, value in values.items():
            if value is None and DEFAULTS[key] is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
                    (key.endswith("share") or key == "admissions_per_case") and value > 1 or value > 365:
                raise ValueError(f"severity.{key} must be a number from 0 to {1 if 'share' in key else 365}")
        return cls(**{k: (None if v is None else float(v)) for k, v in values.items()})  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _over(series: np.ndarray, capacity: float, days: list[str]) -> dict[str, Any]:
    excess = series - capacity
    over = np.nonzero(excess > 1e-9)[0]
    worst = int(np.argmax(excess))
    return {"capacity": round(capacity, 4), "over_capacity_from": days[int(over[0])] if len(over) else None,
            "days_over_capacity": int(len(over)), "worst_day": days[worst],
            "peak_occupied": round(float(series.max()), 4), "peak_excess_beds": round(max(float(excess[worst]), 0.0), 4),
            "peak_occupancy": round(float(series.max() / capacity), 4) if capacity else None}


def hospital_demand(infections: np.ndarray, rho: float, sev: Severity, data: dict[str, Any], bed_scale: float,
                    start: dt.date) -> dict[str, Any]:
    """infections: (days, R, A) new infections per day of the scenario."""
    days_n = infections.shape[0]
    days = [(start + dt.timedelta(days=d)).isoformat() for d in range(days_n)]
    regions = data["regions"]
    per_case = sev.admissions_per_case
    if per_case is None:
        per_case = data["group_admissions_year"] / data["group_cases_year"] if data["group_cases_year"] else 0.0
    los = sev.los_days if sev.los_days is not None else (data["group_los_mean"] or 5.0)
    delay = int(round(sev.admission_delay_days))
    cases = rho * infections.sum(axis=2)  # (days, R)
    admits = np.zeros_like(cases)
    if delay < days_n:
        admits[delay:] = per_case * cases[:days_n - delay]
    icu, vent = admits * sev.icu_share, admits * sev.icu_share * sev.ventilated_share
    hospitals = data["hospitals"]
    index = {h["hospital"]: k for k, h in enumerate(hospitals)}
    share = np.zeros((len(regions), len(hospitals)))
    for r, h, n in data["admission_shares"]:
        if r in regions and h in index:
            share[regions.index(r), index[h]] += n
    for k, r in enumerate(regions):
        if share[k].sum() == 0:  # no admissions in the year: by the beds of the region's hospitals
            for h in hospitals:
                share[k, index[h["hospital"]]] = h["beds"] if h["region"] == r else 0.0
    share = share / np.maximum(share.sum(axis=1, keepdims=True), 1e-12)
    h_admits = admits @ share  # (days, H)
    h_census = census(h_admits, int(round(los)))
    baseline = np.array([h["census_mean_14d"] for h in hospitals])
    capacity = np.array([h["beds"] * bed_scale for h in hospitals])
    occupied = baseline[None, :] + h_census
    out_h = []
    for k, h in enumerate(hospitals):
        out_h.append({"hospital": h["hospital"], "name": h["name"], "region": h["region"], "district": h["district"],
                      "baseline_census": round(float(baseline[k]), 4), "admissions": np.round(h_admits[:, k], 4).tolist(),
                      "occupied": np.round(occupied[:, k], 4).tolist(), **_over(occupied[:, k], capacity[k], days)})
    out_r = []
    for name in sorted({h["region"] for h in hospitals}):
        cols = [k for k, h in enumerate(hospitals) if h["region"] == name]
        occ = occupied[:, cols].sum(axis=1)
        home = regions.index(name) if name in regions else None
        out_r.append({"region": name, "occupied": np.round(occ, 4).tolist(),
                      "admissions": np.round(h_admits[:, cols].sum(axis=1), 4).tolist(),
                      "icu_census": np.round(census(icu[:, home], int(round(sev.icu_los_days))), 4).tolist()
                      if home is not None else None,
                      "ventilated_census": np.round(census(vent[:, home], int(round(sev.ventilated_los_days))),
                                                    4).tolist() if home is not None else None,
                      **_over(occ, float(capacity[cols].sum()), days)})
    national = occupied.sum(axis=1)
    return {"admissions_per_case": per_case, "los_days": los, "icu_share": sev.icu_share,
            "ventilated_share": sev.ventilated_share, "admission_delay_days": delay,
            "national": {"occupied": np.round(national, 4).tolist(),
                         "admissions": np.round(admits.sum(axis=1), 4).tolist(),
                         "icu_census": np.round(census(icu.sum(axis=1), int(round(sev.icu_los_days))), 4).tolist(),
                         "ventilated_census": np.round(census(vent.sum(axis=1), int(round(sev.ventilated_los_days))),
                                                       4).tolist(),
                         **_over(national, float(capacity.sum()), days)},
            "regions": out_r, "hospitals": out_h,
            "over_capacity": sorted(({"hospital": h["hospital"], "name": h["name"], "from": h["over_capacity_from"],
                                      "peak_excess_beds": h["peak_excess_beds"]} for h in out_h
                                     if h["over_capacity_from"]), key=lambda h: (h["from"], -h["peak_excess_beds"]))}


__all__ = ["Severity", "hospital_demand"]
