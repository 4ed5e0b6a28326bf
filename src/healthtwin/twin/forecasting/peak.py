"""The growth regression that knows how near its own peak a series stands, so it damps growth there.

The growth regressions (`growth.py`) carry recent growth on linearly, so they overshoot at turning points:
a series that grew 40% a week keeps being forecast to grow when it is already at the height of its past
seasons. This component is the same pooled quantile regression of the change of log(1 + count) over the
next k weeks (every location-week of the data known on the forecast date, each of the 23 levels, each
horizon), with predictors that say where in its wave a series stands and let growth depend on it:

* the last three weekly changes, the current level and the six-week slope (as `growth.py`);
* the level against the series' own highest count of the past PEAK_WEEKS weeks (0 at a new high, negative
  below it: last season's peak is the scale of this one);
* the six-week slope and the last change each multiplied by that standing: growth near the own high weighs
  differently from growth far below it, which a linear model can only learn through such a product;
* the national change: the weekly change of the panel's total (all series summed where all are observed),
  this week and last, the wave as the whole country sees it (the hierarchical part: a state's forecast
  leans on the national trend, which is less noisy than its own).

Nothing is fitted per location or date."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .growth import TREND_WEEKS, aligned, lagged_changes
from .levels import LEVELS, tidy
from .models import Panel, Quantiles, filled
from .quantreg import quantile_regression

PEAK_WEEKS = 52  # the own high a week stands against: the past year, which holds last season's peak


def design(z: np.ndarray, counts: np.ndarray, lags: int = 3) -> np.ndarray:
    """Predictors (series, weeks, features) from each week and the weeks before it only."""
    change, lagged = lagged_changes(z, lags)
    columns = [np.ones_like(z), *lagged]
    by_week = pd.DataFrame(z.T)
    slope = ((by_week - by_week.shift(TREND_WEEKS)) / TREND_WEEKS).to_numpy().T
    standing = z - by_week.rolling(PEAK_WEEKS, min_periods=8).max().to_numpy().T
    columns += [z, slope, standing, slope * standing, change * standing]
    complete = np.isfinite(counts).all(axis=0)
    total = np.where(complete, np.log1p(np.nansum(np.maximum(counts, 0), axis=0)), np.nan)
    national = np.concatenate([[np.nan], np.diff(total)])
    previous = np.concatenate([[np.nan], national[:-1]])
    columns += [np.broadcast_to(national, z.shape), np.broadcast_to(previous, z.shape)]
    return np.stack(columns, axis=-1)


@dataclass(frozen=True)
class PeakAwareGrowth:
    name: str = "growth-qr-peak"
    window: int | None = 156  # weeks of each series' history fitted on, as growth.py

    def forecast(self, panel: Panel, steps: int) -> Quantiles:
        keys = [k for k, v in panel.items() if len(filled(v)) > 4]
        if not keys:
            return {}
        counts = aligned([np.maximum(filled(panel[k]), 0.0)[-(self.window or 0):] for k in keys])
        z = np.log1p(counts)
        x_all = design(z, counts)
        now = np.nan_to_num(x_all[:, -1, :])  # a series shorter than the lags: missing changes count as flat
        result = np.zeros((len(keys), steps, len(LEVELS)))
        for step in range(1, steps + 1):
            x = x_all[:, :-step, :].reshape(-1, x_all.shape[-1])
            y = (z[:, step:] - z[:, :-step]).reshape(-1)
            keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
            if keep.sum() < 10 * x_all.shape[-1]:
                raise ValueError("too little history for the peak-aware growth regression")
            beta = quantile_regression(x[keep], y[keep], LEVELS)
            seen = x[keep]  # predictors held inside the seen range, as growth.py does, against extrapolation
            held = np.clip(now, np.quantile(seen, 0.005, axis=0), np.quantile(seen, 0.995, axis=0))
            result[:, step - 1, :] = z[:, -1:] + held @ beta.T
        return {k: tidy(np.expm1(result[i])) for i, k in enumerate(keys)}
