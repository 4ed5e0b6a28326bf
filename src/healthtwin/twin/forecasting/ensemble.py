"""The quantile-averaging ensemble: each level's quantile is the weighted mean of the components' quantiles
at that level (Vincentisation), the combination the FluSight and COVID-19 hubs use (they take the median
over dozens of teams; with three components the mean keeps every component's say), taken on the
log(1 + count) scale, the scale every component models: a weighted geometric mean of the counts. Chosen on
2026-12-06 by the rule below over the same mean on the counts' scale (bench/flusight_weights.py, from one
season run's forecasts of each development season): the rule's mean fell from 0.6567 to 0.6430 (2022-23
0.753 / 0.647 -> 0.707 / 0.643, 2024-25 0.622 / 0.605 -> 0.611 / 0.611, 95% coverage 0.930 and 0.962). On
the counts' scale one component's high upper tail drags every level up; on the log scale a component that
is far off weighs by its ratio to the others, not by its count. The held-out 2023-24, scored once after
that choice: 0.757 (log 0.750), coverage 0.620/0.985, against 0.754 (0.735) with the counts' mean.

The components, their weights and the spread factor are the same for every date, location and later
season. They were chosen on the two seasons around the scored one, 2022-23 (forecast from the final target
file cut at each date, scored against our own flat baseline) and 2024-25 (the vintages, against the
corpus's FluSight-baseline), every second reference date of each (bench/flusight_select.py): of 756
weightings (steps of 0.2 over six candidates: the growth regression with and without the level against
the series' own mean, the six-week slope and the panel's mean change, and statsforecast theta on
log(1 + y)) and spread factors 1.0/1.1/1.2, the one with the least mean of natural- and log-scale relative
WIS over both seasons among those with 95% coverage between 0.90 and 0.97 in both and at least 0.2 on
theta. Theta is kept by design: it is the per-series statsforecast model, the part that runs distributed
(statsforecast on Spark), and the one component that does not share the growth regressions' errors.

* the growth regression with the relative level, the panel's mean change and the rates per 100,000
  (growth.rates) 0.4, theta on log(1 + y) 0.2, and the gradient-boosted quantiles on the scaled
  log(1 + y) with the wave's size and the rates among their features, in trees of 31 leaves (gbqr.py)
  0.4, widened by 1.2 (and calibrated from a grid from 0.8, calibration.py): chosen on 2026-12-07 by the
  same rule over the 126 weightings of six (the three, the slope regression, the boosted member with 15
  leaves and with 200 trees at half the rate) × 4 spreads, with the calibration's grid from 0.9 and from
  0.8, from season runs with the candidates at weight 0: 0.6120 against 0.6169 (2022-23 0.634 / 0.608,
  coverage 0.505 / 0.920; 2024-25 0.614 / 0.592, 0.537 / 0.948); the slope regression (0.2 until then)
  got no weight; the held-out 2023-24, scored once after: 0.733 (log 0.694), coverage 0.575 / 0.976.
  Before that, the same day, the rates entered the pooled regression by the same rule over the 126
  weightings of six (the pooled regression with and without them, the relative-trend one with them) × 4
  spreads, from season runs with the candidates at weight 0: 0.6169 against 0.6284 (2022-23 0.648 /
  0.626, coverage 0.921; 2024-25 0.601 / 0.593, 0.947); the held-out 2023-24, scored once after: 0.739
  (log 0.711), coverage 0.596 / 0.979; the slope regression with the rates was worse alone in both
  seasons and got no weight; theta fitted on its last 26 or 52 weeks only was worse alone and got none
  either. Before that, the same day, the rates joined the
  boosted member by the same rule over the 70 weightings of five (the member with and without them) × 4
  spreads: the member with them took the other's 0.4, 0.6284 against 0.6340 (2022-23 0.668 / 0.630,
  coverage 0.913; 2024-25 0.612 / 0.605, 0.945); the held-out 2023-24, scored once after that choice:
  0.738 (log 0.717), coverage 0.570 / 0.974. The weights and spread before that were chosen
  on 2026-12-07 by the same rule with the full method (nowcast and calibration) over the 35 weightings
  of the four and spreads 1.0-1.3 (bench/flusight_reweigh.py): 0.6340, against 0.6360 for the previous
  weights with the new member and 0.6430 for the previous ensemble (boosted member without the wave's
  size, 0.4/0.2/0.2/0.2 at 1.2; chosen on 2026-12-03 by bench/flusight_members.py, 0.6610 there under
  the counts' average and fixed spreads). The held-out 2023-24, scored once after the choice: 0.745
  (log 0.716), coverage 0.568/0.974, against 0.757 (0.750), 0.620/0.985 before. ETS and ARIMA are left
  out: they scored 0.97-1.46 alone in 2022-23, and ARIMA costs four times the rest together.
* the spread around the median is widened by 1.2 on the log scale: every component's intervals are
  fitted in sample and cover less out of sample (78-85% for their 95% intervals in 2022-23)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .baseline import flat_baseline
from .gbqr import GradientBoostedQuantiles
from .growth import GrowthRegression
from .levels import MEDIAN, tidy
from .models import LOG, Panel, Quantiles, filled, theta

log = logging.getLogger(__name__)

MIN_WEEKS = 12  # a shorter series gets the flat baseline: too little to fit a model to


class Model(Protocol):
    name: str

    def forecast(self, panel: Panel, steps: int) -> Quantiles: ...


WEIGHTS = {"growth-qr-relative-pooled-rate": 0.4, "theta-log": 0.2, "gbqr-log-wave-rate-31": 0.4}
SPREAD = 1.2  # widening of the ensemble's quantiles around its median, on the log(1 + y) scale


def default_models() -> list[Model]:
    """The ensemble's components, the same for every date, location and season."""
    return [GrowthRegression("growth-qr-relative-pooled-rate", relative=True, pooled=True, rate=True),
            theta(LOG),
            GradientBoostedQuantiles("gbqr-log-wave-rate-31", log=True, wave=True, rate=True, leaves=31)]


def average(components: dict[str, Quantiles], weights: dict[str, float] | None = None,
            log_scale: bool = True) -> Quantiles:
    """Weighted quantile average per series over the components that forecast it (weights renormalised), on
    the log(1 + count) scale (`log_scale`, the ensemble's) or the counts' own."""
    keys = set().union(*components.values()) if components else set()
    out: Quantiles = {}
    for key in keys:
        names = [n for n, c in components.items() if key in c]
        w = np.array([(weights or {}).get(n, 1.0) for n in names])
        if w.sum() <= 0:
            w = np.ones(len(names))
        stacked = np.maximum(np.array([components[n][key] for n in names], dtype=float), 0.0)
        if log_scale:
            out[key] = tidy(np.expm1(np.tensordot(w / w.sum(), np.log1p(stacked), axes=1)))
        else:
            out[key] = tidy(np.tensordot(w / w.sum(), stacked, axes=1))
    return out


def widen(quantiles: np.ndarray, factor: float) -> np.ndarray:
    """Quantiles spread by `factor` around their median on the log(1 + y) scale."""
    z = np.log1p(np.maximum(quantiles, 0.0))
    median = z[..., MEDIAN:MEDIAN + 1]
    return tidy(np.expm1(median + factor * (z - median)))


def run(model: Model, panel: Panel, steps: int, population: dict[str, float] | None = None) -> Quantiles:
    """One component's forecast, handed the residents if it reads rates (`uses_population`)."""
    if getattr(model, "uses_population", False):
        return model.forecast(panel, steps, population=population)
    return model.forecast(panel, steps)


def forecast(panel: Panel, steps: int, models: Sequence[Model] | None = None, spread: float = SPREAD,
             population: dict[str, float] | None = None) -> tuple[Quantiles, dict[str, Quantiles]]:
    """The ensemble's quantiles (steps, 23) per series, and each component's. `spread` 1.0 leaves the
    average unwidened, for calibration.py to set the spread from the method's own past errors.
    `population` (series -> residents, where known) goes to the components that read it."""
    models = default_models() if models is None else list(models)
    fit = {k: v for k, v in panel.items() if np.isfinite(filled(v)).sum() >= MIN_WEEKS}
    components: dict[str, Quantiles] = {}
    for model in models:
        try:
            components[model.name] = run(model, fit, steps, population)
        except Exception as exc:  # noqa: BLE001 - one failing component must not lose the forecast
            log.warning("forecast component %s failed: %s", model.name, exc)
    combined = {k: widen(q, spread) for k, q in average(components, WEIGHTS).items()}
    for key, values in panel.items():
        if key not in combined:
            combined[key] = flat_baseline(values, steps)
    return combined, components
