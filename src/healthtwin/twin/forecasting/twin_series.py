"""The same ensemble on the twin's own weekly series (twin/series.py: counts per region or district and
syndrome), so the ministry sees the next weeks with bands beside the FluSight-scored method.

A series here is anything with `key`, `syndrome`, `dates` (the first day of each week) and `counts`, as
`twin.series.Series` is; the forecasts are for the 1..4 weeks after each series' last week."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from . import ensemble
from .levels import QUANTILE_LEVELS

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


def forecast_weekly(series: Iterable[WeeklySeries], weeks: int = WEEKS_AHEAD,
                    models: Sequence[ensemble.Model] | None = None) -> list[SeriesForecast]:
    """Forecasts of every series, fitted as one panel per syndrome (the pooled growth model learns from
    every place of that syndrome at once, as it learns from every state in FluSight)."""
    by_syndrome: dict[str, list[WeeklySeries]] = {}
    for s in series:
        if len(s.counts):
            by_syndrome.setdefault(s.syndrome, []).append(s)
    out: list[SeriesForecast] = []
    for syndrome, members in sorted(by_syndrome.items()):
        panel = {"/".join(s.key) or "national": np.asarray(s.counts, dtype=float) for s in members}
        combined, _ = ensemble.forecast(panel, weeks, models)
        for s in members:
            last = s.dates[-1]
            ahead = [last + dt.timedelta(weeks=k) for k in range(1, weeks + 1)]
            out.append(SeriesForecast(tuple(s.key), syndrome, ahead, combined["/".join(s.key) or "national"]))
    return out
