"""A patient series: one antigen series of the supporting data as it tracks one patient's doses."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .dates import parse_date
from .patient import Dose


@dataclass
class DoseResult:
    dose: Dose
    status: str
    reason: str | None = None
    target: int | None = None  # index of the target dose this dose satisfied (when valid)
    reasons: list[str] = field(default_factory=list)  # every failed check, the first being `reason`

    def __post_init__(self) -> None:
        if self.reason and not self.reasons:
            self.reasons = [self.reason]


@dataclass
class PatientSeries:
    antigen: str
    series: dict[str, Any]
    results: list[DoseResult] = field(default_factory=list)
    satisfied: list[tuple[int, Dose]] = field(default_factory=list)  # (target dose index, dose) in order
    target: int = 0  # the next target dose to satisfy
    complete: bool = False
    status: str = ""
    forecast_dose: int | None = None  # index of the target dose forecast
    earliest: date | None = None
    recommended: date | None = None
    past_due: date | None = None
    latest: date | None = None
    score: int = 0

    @property
    def doses(self) -> list[dict[str, Any]]:
        return self.series["seriesDose"]

    @property
    def select(self) -> dict[str, Any]:
        return self.series.get("selectSeries", {})

    @property
    def group(self) -> str:
        return self.select.get("seriesGroup", "1")

    @property
    def priority(self) -> str:
        return self.select.get("seriesPriority") or "Z"

    @property
    def preference(self) -> int:
        return int(self.select.get("seriesPreference") or 99)

    @property
    def kind(self) -> str:
        return self.series.get("seriesType", "Standard")

    def valid_results(self) -> list[DoseResult]:
        return [r for r in self.results if r.status == "Valid"]

    def dose_number(self) -> int:
        """The forecast dose number: the target doses satisfied so far, plus one. A recurring dose counts
        once, and a seasonal one only if its last dose was given in the season (on or after its start)."""
        last: dict[int, date] = {}
        for target, dose in self.satisfied:
            last[target] = dose.given
        count = 0
        for target, given in last.items():
            season = self.doses[target].get("seasonalRecommendation")
            season = season[0] if isinstance(season, list) and season else season
            start = parse_date(season.get("startDate")) if isinstance(season, dict) else None
            if start is None or given >= start:
                count += 1
        return count + 1

    def target_date(self, index: int) -> date | None:
        for target, dose in self.satisfied:
            if target == index:
                return dose.given
        return None
