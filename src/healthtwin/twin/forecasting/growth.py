"""The epidemic-aware component: pooled quantile regression of future growth on recent growth.

An influenza wave is growth that slows, peaks and turns into decline; how fast the growth of the last weeks
carries on, and how uncertain it is at a given level of counts, is much the same from one jurisdiction to
the next. So one model is fitted to every series of the panel at once (every location-week of the data
known on the forecast date): on the log(1 + count) scale, the change over k = 1..4 weeks is regressed on the
last three weekly changes and the current level, separately for each of the 23 quantile levels (Koenker &
Bassett quantile regression, statsmodels). The level term lets the spread depend on the size of the
counts (small counts are noisier on the log scale). Nothing is fitted per location or per date: the same
specification is refitted on whatever history the forecast date knows."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .levels import LEVELS, tidy
from .models import Panel, Quantiles, filled

LAGS = 3  # weekly changes used as predictors


def _features(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Design rows at times t of one series z (log scale): intercept, last LAGS changes, level."""
    columns = [np.ones(len(t))]
    for lag in range(LAGS):
        columns.append(z[t - lag] - z[t - lag - 1])
    columns.append(z[t])
    return np.column_stack(columns)


@dataclass(frozen=True)
class GrowthRegression:
    name: str = "growth-qr"
    window: int | None = 156  # weeks of each series' history fitted on (three seasons): bounds the time

    def forecast(self, panel: Panel, steps: int) -> Quantiles:
        from statsmodels.regression.quantile_regression import QuantReg

        series = {key: np.log1p(np.maximum(filled(v), 0.0))[-(self.window or 0):] for key, v in panel.items()}
        usable = {k: z for k, z in series.items() if len(z) > LAGS + 1}
        result: Quantiles = {k: np.zeros((steps, len(LEVELS))) for k in usable}
        if not usable:
            return {}
        now = {k: _features(z, np.array([len(z) - 1])) for k, z in usable.items()}
        for step in range(1, steps + 1):
            xs, ys = [], []
            for z in usable.values():
                t = np.arange(LAGS, len(z) - step)
                if len(t):
                    xs.append(_features(z, t))
                    ys.append(z[t + step] - z[t])
            if not xs:
                raise ValueError("too little history for the growth regression")
            x, y = np.vstack(xs), np.concatenate(ys)
            coefficients = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # IRLS iteration-limit warnings: the fit is still usable
                for tau in LEVELS:
                    coefficients.append(QuantReg(y, x).fit(q=tau, max_iter=2000).params)
            beta = np.array(coefficients)  # (23, features)
            for key, z in usable.items():
                result[key][step - 1] = z[-1] + now[key] @ beta.T
        return {k: tidy(np.expm1(q)) for k, q in result.items()}
