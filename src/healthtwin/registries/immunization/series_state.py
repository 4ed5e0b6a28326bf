"""A patient series: one antigen series of the supporting data as it tracks one patient's doses."""
from __future__ import annotations

from datetime import date
from typing import Any

from .patient import NOT_VALID, VALID, Dose
from .targets import read_once, target

COUNTED = (VALID, NOT_VALID)
INADVERTENT = "Inadvertent Vaccine"


class DoseResult:
    """One dose's verdict in a series (a plain class with slots: a child's forecast makes a score of them)."""
    __slots__ = ("dose", "status", "reason", "target", "reasons")

    def __init__(self, dose: Dose, status: str, reason: str | None = None, target: int | None = None,
                 reasons: list[str] | None = None) -> None:
        self.dose = dose
        self.status = status
        self.reason = reason
        self.target = target  # index of the target dose this dose satisfied (when valid)
        # every failed check, the first being `reason`
        self.reasons = reasons if reasons else [reason] if reason else []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DoseResult) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        return (f"DoseResult(dose={self.dose!r}, status={self.status!r}, reason={self.reason!r}, "
                f"target={self.target!r}, reasons={self.reasons!r})")


class SeriesPlan:
    """What a series of the supporting data says once and for all: its selection fields and target doses."""
    __slots__ = ("select", "group", "priority", "preference", "kind", "targets")

    def __init__(self, series: dict[str, Any]) -> None:
        self.select = series.get("selectSeries", {})
        self.group = self.select.get("seriesGroup", "1")
        self.priority = self.select.get("seriesPriority") or "Z"
        self.preference = int(self.select.get("seriesPreference") or 99)
        self.kind = series.get("seriesType", "Standard")
        self.targets = [target(d) for d in series["seriesDose"]]


_PLANS: dict[int, tuple[dict[str, Any], SeriesPlan]] = {}


def series_plan(series: dict[str, Any]) -> SeriesPlan:
    return read_once(_PLANS, series, SeriesPlan)


class PatientSeries:
    """One antigen series of the supporting data as it tracks one patient's doses."""
    __slots__ = ("antigen", "series", "results", "satisfied", "target", "complete", "status", "forecast_dose",
                 "earliest", "recommended", "past_due", "latest", "score", "previous", "plan", "targets")

    def __init__(self, antigen: str, series: dict[str, Any]) -> None:
        self.antigen = antigen
        self.series = series
        self.results: list[DoseResult] = []
        self.satisfied: list[tuple[int, Dose]] = []  # (target dose index, dose) in order
        self.target = 0  # the next target dose to satisfy
        self.complete = False
        self.status = ""
        self.forecast_dose: int | None = None  # index of the target dose forecast
        self.earliest: date | None = None
        self.recommended: date | None = None
        self.past_due: date | None = None
        self.latest: date | None = None
        self.score = 0
        # the most recent dose evaluated Valid or Not Valid, other than an inadvertent one
        self.previous: Dose | None = None
        self.plan = plan = series_plan(series)
        self.targets = plan.targets

    @property
    def select(self) -> dict[str, Any]:
        return self.plan.select

    @property
    def group(self) -> str:
        return self.plan.group

    @property
    def priority(self) -> str:
        return self.plan.priority

    @property
    def preference(self) -> int:
        return self.plan.preference

    @property
    def kind(self) -> str:
        return self.plan.kind

    @property
    def doses(self) -> list[dict[str, Any]]:
        return self.series["seriesDose"]

    def add(self, result: DoseResult) -> None:
        self.results.append(result)
        if result.status in COUNTED and result.reason != INADVERTENT:
            self.previous = result.dose

    def valid_results(self) -> list[DoseResult]:
        return [r for r in self.results if r.status == "Valid"]

    def dose_number(self) -> int:
        """The forecast dose number: the target doses satisfied so far, plus one. A recurring dose counts
        once, and a seasonal one only if its last dose was given in the season (on or after its start)."""
        last: dict[int, date] = {}
        for target, dose in self.satisfied:
            last[target] = dose.given
        count = 0
        plans = self.targets
        for target, given in last.items():
            start = plans[target].season_start
            if start is None or given >= start:
                count += 1
        return count + 1

    def target_date(self, index: int) -> date | None:
        for target, dose in self.satisfied:
            if target == index:
                return dose.given
        return None
