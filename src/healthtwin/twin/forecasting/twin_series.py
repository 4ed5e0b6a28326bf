"""The same ensemble on the twin's own weekly series (twin/series.py: counts per region or district and
syndrome), so the ministry sees the next weeks with bands beside the FluSight-scored method.

A series here is anything with `key`, `syndrome`, `dates` (the first day of each week) and `counts`, as
`twin.series.Series` is; the forecasts are for the 1..4 weeks after each series' last week.

A twin series counts cases, so its quantiles are made those of a count (`count_quantiles`): the levels
below the median are rounded down to a whole number and those above it up. At the few cases a week of a
region or district the ensemble's continuous bands end between two counts, and an observed 3 just above an
upper end of 2.6 falls outside; the count's own quantiles are whole numbers and contain the continuous
band. On the planted season (bench/forecast_planted.py, 3,000 citizens) this took the regions' 95%
coverage from 0.87 to 0.95 and lowered their WIS; at the FluSight states' hundreds of admissions a week
the rounding is immaterial, and FluSight's forecasts do not pass through here."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from . import ensemble
from .levels import MEDIAN, QUANTILE_LEVELS

WEEKS_AHEAD = 4


class WeeklySeries(Protocol):
    key: tuple[str, ...]
    syndrome: str
    dates: list[dt.date]
    counts: list[int]


@dataclass(frozen=True)
class SeriesForecast:
    key: tuple[str, ...]
    syndrome: str
    weeks: list[dt.date]  # the first day of each forecast week
    quantiles: np.ndarray  # (weeks, 23) at QUANTILE_LEVELS

    def band(self, central: float) -> tuple[np.ndarray, np.ndarray]:
        """The lower and upper ends of the central interval (0.5, 0.8, 0.9, 0.95 or 0.98)."""
        lower = QUANTILE_LEVELS.index(round((1 - central) / 2, 3))
        upper = QUANTILE_LEVELS.index(round((1 + central) / 2, 3))
        return self.quantiles[:, lower], self.quantiles[:, upper]

    @property
    def median(self) -> np.ndarray:
        return self.quantiles[:, QUANTILE_LEVELS.index(0.5)]


def count_quantiles(quantiles: np.ndarray) -> np.ndarray:
    """The quantiles (..., 23) of a count: below the median rounded down, above it rounded up (never
    below 0), the median kept, so every central band becomes the whole-number band around it."""
    q = np.maximum(np.asarray(quantiles, dtype=float), 0.0).copy()
    q[..., :MEDIAN] = np.floor(q[..., :MEDIAN])
    q[..., MEDIAN + 1:] = np.ceil(q[..., MEDIAN + 1:])
    return q


def forecast_weekly(series: Iterable[WeeklySeries], weeks: int = WEEKS_AHEAD,
                    models: Sequence[ensemble.Model] | None = None,
                    residents: dict[tuple[str, ...], float] | None = None) -> list[SeriesForecast]:
    """Forecasts of every series, fitted as one panel per syndrome (the pooled growth model learns from
    every place of that syndrome at once, as it learns from every state in FluSight). `residents` (place
    key -> population, `twin.series.residents`) lets the members that read rates per 100,000 do so."""
    by_syndrome: dict[str, list[WeeklySeries]] = {}
    for s in series:
        if len(s.counts):
            by_syndrome.setdefault(s.syndrome, []).append(s)
    out: list[SeriesForecast] = []
    for syndrome, members in sorted(by_syndrome.items()):
        panel = {"/".join(s.key) or "national": np.asarray(s.counts, dtype=float) for s in members}
        population = {"/".join(s.key) or "national": residents[tuple(s.key)] for s in members
                      if residents and tuple(s.key) in residents}
        combined, _ = ensemble.forecast(panel, weeks, models, population=population)
        for s in members:
            last = s.dates[-1]
            ahead = [last + dt.timedelta(weeks=k) for k in range(1, weeks + 1)]
            quantiles = count_quantiles(combined["/".join(s.key) or "national"])
            out.append(SeriesForecast(tuple(s.key), syndrome, ahead, quantiles))
    return out
