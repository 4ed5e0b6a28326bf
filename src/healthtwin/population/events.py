"""Planted events: signals with a known ground truth, for testing surveillance and analytics.

Switch them with ``generate(..., events={...})`` (None = all, set() = none). Each writes
``ground_truth/<name>.json`` beside the data. In a sharded run every shard writes the cases of its own
patients; the event definition is identical across shards and case lists/counts add up.

* influenza       - an unusually strong influenza season in the last complete winter of the window:
                    extra ILI episodes with a Gaussian epidemic curve peaking in the third week of January.
* measles         - a measles cluster in one non-capital district during the last ~5 months of the window,
                    fed by an immunity gap (MCV coverage x0.8 in that district's recent birth cohorts).
* hospital_crunch - six weeks in which one regional hospital receives ~3x its normal inpatient load
                    (diversion from the whole economic region, longer stays), pushing occupancy over capacity.
"""
from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter
from typing import Any

from .common import Person, dstr, poisson
from .geography import BY_SLUG, DISTRICTS
from .institutions import NATIONAL_POPULATION, Site

ALL_EVENTS = frozenset({"influenza", "measles", "hospital_crunch"})
_MEASLES_CANDIDATES = [d.slug for d in DISTRICTS if d.region != "baki" and d.share * NATIONAL_POPULATION > 80_000]
_CRUNCH_CANDIDATES = ["ganca", "sumqayit", "lankaran", "saki", "mingacevir", "naxcivan-s", "barda", "quba"]


def _iso_week(day: int) -> str:
    y, w, _ = dt.date.fromordinal(day).isocalendar()
    return f"{y}-W{w:02d}"


class Events:
    """Definitions of the enabled events plus the cases planted in this shard."""

    def __init__(self, enabled: set[str] | None, seed: int, start: int, end: int, patients: int, sites: list[Site]):
        self.enabled = set(ALL_EVENTS if enabled is None else enabled)
        unknown = self.enabled - ALL_EVENTS
        if unknown:
            raise ValueError(f"unknown events {sorted(unknown)}; choose from {sorted(ALL_EVENTS)}")
        rng = random.Random(f"events-{seed}")
        self.patients = patients
        end_d = dt.date.fromordinal(end)
        y = end_d.year if end_d >= dt.date(end_d.year, 3, 15) else end_d.year - 1
        self.flu_start = dt.date(y - 1, 12, 1).toordinal()
        self.flu_end = dt.date(y, 3, 15).toordinal()
        self.flu_peak = dt.date(y, 1, 20).toordinal()
        self.flu = "influenza" in self.enabled and self.flu_start >= start
        self.flu_cases: list[tuple[str, int]] = []
        self.measles_district = _MEASLES_CANDIDATES[rng.randrange(len(_MEASLES_CANDIDATES))]
        self.measles_start = end - 150
        self.measles_peak = end - 105
        self.measles_end = end - 40
        self.measles = "measles" in self.enabled and self.measles_start >= start
        self.measles_cases: list[dict[str, Any]] = []
        slug = _CRUNCH_CANDIDATES[rng.randrange(len(_CRUNCH_CANDIDATES))]
        self.crunch_site = sites[BY_SLUG[slug].index]
        self.crunch_end = end - 60
        self.crunch_start = self.crunch_end - 42
        self.crunch = "hospital_crunch" in self.enabled and self.crunch_start - 90 >= start
        self.crunch_admissions: list[str] = []
        self.census: Counter[int] = Counter()  # day -> occupied beds at the crunch hospital (this shard)

    # --- influenza --------------------------------------------------------------------------------
    def flu_extra_days(self, p: Person) -> list[int]:
        """Days of extra ILI episodes planted for this person."""
        if not self.flu:
            return []
        age = p.age_at(self.flu_peak)
        rate = 0.22 if age < 15 else (0.12 if age >= 65 else 0.08)
        out = []
        for _ in range(poisson(p.rng, rate)):
            d = int(round(p.rng.gauss(self.flu_peak, 16.0)))
            if self.flu_start <= d <= self.flu_end and p.alive_on(d) and p.win_start <= d <= p.win_end:
                out.append(d)
        return out

    # --- measles ----------------------------------------------------------------------------------
    def mcv_factor(self, p: Person) -> float:
        """Immunity gap in the cluster district for cohorts born in the last ten years."""
        if self.measles and p.district.slug == self.measles_district and p.birth > self.measles_start - 3653:
            return 0.8
        return 1.0

    def measles_onset(self, p: Person) -> int | None:
        if not self.measles or p.district.slug != self.measles_district:
            return None
        age = p.age_at(self.measles_peak)
        if age < 0.5 or age > 35:
            return None
        doses = sum(1 for d in p.mcv_doses if d < self.measles_start)
        base = (0.35 if age < 15 else 0.06) if doses == 0 else (0.02 if doses == 1 else 0.003)
        if p.rng.random() >= base:
            return None
        d = int(p.rng.triangular(self.measles_start, self.measles_end, self.measles_peak))
        return d if p.alive_on(d) and p.win_start <= d <= p.win_end else None

    # --- hospital crunch -----------------------------------------------------------------------------
    def crunch_days(self, p: Person) -> list[int]:
        """Extra admissions of residents of the crunch hospital's economic region during the crunch."""
        if not self.crunch or p.district.region != self.crunch_site.district.region:
            return []
        age = p.age_at(self.crunch_start)
        rate = (0.05 if age >= 65 else 0.012) * (2.0 if p.district.slug == self.crunch_site.district.slug else 1.0)
        out = []
        for _ in range(poisson(p.rng, rate)):
            d = self.crunch_start + p.rng.randrange(42)
            if p.alive_on(d) and p.win_start <= d <= p.win_end:
                out.append(d)
        return out

    def note_stay(self, location_id: str, enc_id: str, start: int, end: int, planted: bool) -> None:
        if not self.crunch or location_id != self.crunch_site.location:
            return
        if planted:
            self.crunch_admissions.append(enc_id)
        lo, hi = self.crunch_start - 90, self.crunch_end + 30
        for d in range(max(start, lo), min(end, hi) + 1):
            self.census[d] += 1

    # --- output ------------------------------------------------------------------------------------
    def ground_truth(self, shard: tuple[int, int]) -> dict[str, dict[str, Any]]:
        scale = self.patients / NATIONAL_POPULATION
        out: dict[str, dict[str, Any]] = {}
        if "influenza" in self.enabled:
            weeks = Counter(_iso_week(d) for _, d in self.flu_cases)
            out["influenza"] = {
                "event": "influenza", "active": self.flu, "shard": list(shard),
                "description": "Strong influenza season: extra ILI episodes (Condition J11.1 / SNOMED 6142004) on top of the seasonal baseline",
                "season_start": dstr(self.flu_start), "season_end": dstr(self.flu_end), "peak_date": dstr(self.flu_peak),
                "epidemic_curve_sd_days": 16, "extra_episodes_per_person": {"<15": 0.22, "15-64": 0.08, "65+": 0.12},
                "planted_cases": len(self.flu_cases), "planted_by_iso_week": dict(sorted(weeks.items())),
                "planted_encounters": sorted(e for e, _ in self.flu_cases),
            }
        if "measles" in self.enabled:
            d = BY_SLUG[self.measles_district]
            out["measles"] = {
                "event": "measles", "active": self.measles, "shard": list(shard),
                "description": "Measles cluster (Condition B05.9 / SNOMED 14189004) in one district after an immunity gap",
                "district": d.slug, "district_name": d.name, "region": d.region_name,
                "period_start": dstr(self.measles_start), "period_peak": dstr(self.measles_peak),
                "period_end": dstr(self.measles_end), "mcv_coverage_factor_in_district_cohorts": 0.8,
                "attack_probability": {"0_doses_<15y": 0.35, "0_doses_15-35y": 0.06, "1_dose": 0.02, "2_doses": 0.003},
                "cases": sorted(self.measles_cases, key=lambda c: (c["onset"], c["patient"])),
            }
        if "hospital_crunch" in self.enabled:
            s = self.crunch_site
            out["hospital_crunch"] = {
                "event": "hospital_crunch", "active": self.crunch, "shard": list(shard),
                "description": "Inpatient surge at one hospital (diversion from its economic region, longer stays)",
                "organization": f"Organization/{s.hospital}", "location": f"Location/{s.location}",
                "district": s.district.slug, "region": s.district.region_name,
                "period_start": dstr(self.crunch_start), "period_end": dstr(self.crunch_end),
                "beds_national_scale": s.beds, "sample_fraction": scale,
                "beds_at_sample_scale": round(s.beds * scale, 3),
                "planted_admissions": len(self.crunch_admissions),
                "planted_encounters": sorted(self.crunch_admissions),
                "daily_census_this_shard": {dstr(k): v for k, v in sorted(self.census.items())},
            }
        return out


def excess_factor(day: int, peak: int, sd: float = 16.0) -> float:
    """Relative height of the planted epidemic curve (used by docs and tests)."""
    return math.exp(-0.5 * ((day - peak) / sd) ** 2)
