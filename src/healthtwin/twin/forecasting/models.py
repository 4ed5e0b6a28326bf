"""Component models: statsforecast's ETS, ARIMA and theta fitted to each series on a variance-stabilising
scale (log(1 + y) or sqrt(y)), their Gaussian prediction intervals read off at the 23 FluSight levels and
transformed back to counts.

A panel is `{series id: weekly counts, oldest first, ending at the last observed week}`; a model returns
`{series id: quantiles (steps, 23)}` for 1..steps weeks after each series' last week. statsforecast fits
every series of a panel in one call, which is also what its Spark/Dask/Ray backends (through fugue)
distribute: the same model objects run on a cluster by handing `StatsForecast.forecast` a Spark DataFrame."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .levels import LEVELS, MEDIAN, tidy

Panel = dict[str, np.ndarray]
Quantiles = dict[str, np.ndarray]

# Interval widths (percent) whose ends are the 22 non-median FluSight levels: 98% -> (0.01, 0.99) ... 10%.
INTERVALS = [int(round(100 * (1 - 2 * tau))) for tau in LEVELS[:MEDIAN]]


@dataclass(frozen=True)
class Scale:
    """A variance-stabilising transform of counts and its inverse."""
    name: str
    forward: Callable[[np.ndarray], np.ndarray]
    back: Callable[[np.ndarray], np.ndarray]


LOG = Scale("log", lambda y: np.log1p(np.maximum(y, 0.0)), lambda z: np.expm1(z))
SQRT = Scale("sqrt", lambda y: np.sqrt(np.maximum(y, 0.0)), lambda z: np.square(np.maximum(z, 0.0)))


def filled(values: np.ndarray) -> np.ndarray:
    """Interior gaps interpolated linearly and leading gaps dropped: the models need a regular series."""
    s = pd.Series(np.asarray(values, dtype=float))
    s = s.iloc[int(s.first_valid_index() or 0):] if s.notna().any() else s.iloc[0:0]
    return s.interpolate(limit_direction="both").to_numpy()


@dataclass(frozen=True)
class StatsForecastModel:
    """One statsforecast model on one scale, fitted to each series of a panel separately."""
    name: str
    make: Callable[[], object]  # a fresh statsforecast model (they hold fitted state)
    scale: Scale
    window: int | None = None  # weeks of history to fit on (None: all)

    def forecast(self, panel: Panel, steps: int) -> Quantiles:
        from statsforecast import StatsForecast

        ids, frames = [], []
        for key, values in panel.items():
            y = filled(values)
            if self.window:
                y = y[-self.window:]
            ids.append(key)
            frames.append(pd.DataFrame({"unique_id": key, "ds": np.arange(len(y)), "y": self.scale.forward(y)}))
        if not frames:
            return {}
        engine = StatsForecast(models=[self.make()], freq=1, n_jobs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on short or flat series
            out = engine.forecast(df=pd.concat(frames, ignore_index=True), h=steps, level=INTERVALS)
        column = [c for c in out.columns if c not in ("unique_id", "ds") and "-lo-" not in c and "-hi-" not in c][0]
        lows = [f"{column}-lo-{w}" for w in INTERVALS]
        highs = [f"{column}-hi-{w}" for w in reversed(INTERVALS)]
        result: Quantiles = {}
        for key, rows in out.groupby("unique_id", sort=False):
            z = rows[lows + [column] + highs].to_numpy(dtype=float)
            result[str(key)] = tidy(self.scale.back(z))
        return result


def ets(scale: Scale = LOG) -> StatsForecastModel:
    from statsforecast.models import AutoETS
    return StatsForecastModel(f"ets-{scale.name}", lambda: AutoETS(season_length=1), scale)


def arima(scale: Scale = LOG) -> StatsForecastModel:
    from statsforecast.models import AutoARIMA
    return StatsForecastModel(f"arima-{scale.name}", lambda: AutoARIMA(season_length=1), scale)


def theta(scale: Scale = SQRT) -> StatsForecastModel:
    from statsforecast.models import AutoTheta
    return StatsForecastModel(f"theta-{scale.name}", lambda: AutoTheta(season_length=1), scale)
