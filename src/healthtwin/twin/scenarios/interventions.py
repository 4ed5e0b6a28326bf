"""Interventions as parameters of a scenario: when they start and end and how strongly they act.

* vaccination: a campaign reaching `coverage` of the chosen age groups evenly over `days` from `start`,
  with an all-or-nothing vaccine protecting a share `efficacy` of those it reaches. Doses go to everyone
  alike whatever their state (no test before vaccinating), so only the susceptible share of each day's doses
  protects anyone: S -> V at efficacy * S * (newly reached) / (not yet reached).
* school closure: from `start` to `end` the school contacts fall by `effect` (1: schools shut).
* distancing: work and other contacts fall by `reduction`.
* masks: transmission per contact falls by `efficacy` * `adherence` outside the home (applied to all
  contacts but the home's). Defaults: efficacy 0.2, after the pooled community trials of Jefferson et al.
  2023 (Cochrane CD006207; effect small and uncertain), adherence 0.5.

Days count from the scenario's start (day 0 is the first day simulated); an end is exclusive.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .contacts import AGE_GROUPS


class InterventionError(ValueError):
    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.location = location


@dataclass(frozen=True)
class Vaccination:
    start: int
    days: int
    coverage: float
    efficacy: float = 0.6
    ages: tuple[str, ...] = AGE_GROUPS


@dataclass(frozen=True)
class Window:
    kind: str  # school_closure | distancing | masks
    start: int
    end: int
    strength: float  # effect, reduction, or efficacy * adherence


@dataclass
class Interventions:
    vaccinations: list[Vaccination] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    def weights(self, day: float) -> dict[str, float]:
        w = {"home": 1.0, "school": 1.0, "work": 1.0, "other": 1.0}
        for x in self.windows:
            if x.start <= day < x.end:
                if x.kind == "school_closure":
                    w["school"] *= 1 - x.strength
                elif x.kind == "distancing":
                    w["work"] *= 1 - x.strength
                    w["other"] *= 1 - x.strength
        masks = [x.strength for x in self.windows if x.kind == "masks" and x.start <= day < x.end]
        if masks:  # masks act on contacts outside the home
            for s in ("school", "work", "other"):
                w[s] *= 1 - max(masks)
        return w

    def vaccinate(self, y: np.ndarray, day: int, sizes: np.ndarray) -> np.ndarray:
        """After day `day`: the campaigns' doses of that day (S -> V)."""
        for v in self.vaccinations:
            if not v.start <= day < v.start + v.days:
                continue
            reached = v.coverage * (day - v.start) / v.days  # share reached before this day
            new = v.coverage / v.days
            cols = [AGE_GROUPS.index(a) for a in v.ages]
            moved = v.efficacy * y[0][:, cols] * new / (1 - reached)
            y = y.copy()
            y[0][:, cols] -= moved
            y[4][:, cols] += moved
        return y


def parse(items: list[dict[str, Any]] | None, days: int) -> Interventions:
    """Interventions from a run's inputs, checked (InterventionError names the bad field)."""
    out = Interventions()
    for k, raw in enumerate(items or []):
        where = f"interventions[{k}]"
        if not isinstance(raw, dict):
            raise InterventionError("an intervention is an object with a 'type'", where)
        kind = raw.get("type")
        start = _number(raw, "start", where, 0, days, 0)
        if kind == "vaccination":
            ages = raw.get("ages", list(AGE_GROUPS))
            if not isinstance(ages, list) or not ages or any(a not in AGE_GROUPS for a in ages):
                raise InterventionError(f"ages: a list of {', '.join(AGE_GROUPS)}", f"{where}.ages")
            out.vaccinations.append(Vaccination(int(start), int(_number(raw, "days", where, 1, 3650, 30)),
                                                _number(raw, "coverage", where, 0, 0.999),
                                                _number(raw, "efficacy", where, 0, 1, 0.6), tuple(ages)))
        elif kind in ("school_closure", "distancing", "masks"):
            end = _number(raw, "end", where, start, 100000, days)
            if kind == "school_closure":
                strength = _number(raw, "effect", where, 0, 1, 1.0)
            elif kind == "distancing":
                strength = _number(raw, "reduction", where, 0, 1)
            else:
                strength = _number(raw, "efficacy", where, 0, 1, 0.2) * _number(raw, "adherence", where, 0, 1, 0.5)
            out.windows.append(Window(kind, int(start), int(end), strength))
        else:
            raise InterventionError("type is vaccination, school_closure, distancing or masks", f"{where}.type")
    return out


def _number(raw: dict[str, Any], key: str, where: str, low: float, high: float,
            default: float | None = None) -> float:
    value = raw.get(key, default)
    if value is None:
        raise InterventionError(f"{key} is required", f"{where}.{key}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InterventionError(f"{key} must be a number from {low} to {high}", f"{where}.{key}")
    return float(value)
