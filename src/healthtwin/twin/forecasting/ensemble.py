"""The quantile-averaging ensemble: each level's quantile is the mean of the components' quantiles at that
level (Vincentisation), the combination the FluSight and COVID-19 hubs use (they take the median over
dozens of teams; with three components the mean keeps every component's say)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .baseline import flat_baseline
from .levels import tidy
from .models import Panel, Quantiles, arima, ets, filled
from .growth import GrowthRegression

log = logging.getLogger(__name__)

MIN_WEEKS = 12  # a shorter series gets the flat baseline: too little to fit a model to


class Model(Protocol):
    name: str

    def forecast(self, panel: Panel, steps: int) -> Quantiles: ...


def default_models() -> list[Model]:
    """The ensemble's components, the same for every date, location and season."""
    return [ets(), arima(), GrowthRegression()]


def average(components: Sequence[Quantiles]) -> Quantiles:
    keys = set().union(*components) if components else set()
    out: Quantiles = {}
    for key in keys:
        members = [c[key] for c in components if key in c]
        out[key] = tidy(np.mean(members, axis=0))
    return out


def forecast(panel: Panel, steps: int, models: Sequence[Model] | None = None) -> tuple[Quantiles, dict[str, Quantiles]]:
    """The ensemble's quantiles (steps, 23) per series, and each component's."""
    models = default_models() if models is None else list(models)
    fit = {k: v for k, v in panel.items() if np.isfinite(filled(v)).sum() >= MIN_WEEKS}
    components: dict[str, Quantiles] = {}
    for model in models:
        try:
            components[model.name] = model.forecast(fit, steps)
        except Exception as exc:  # noqa: BLE001 - one failing component must not lose the forecast
            log.warning("forecast component %s failed: %s", model.name, exc)
    combined = average(list(components.values()))
    for key, values in panel.items():
        if key not in combined:
            combined[key] = flat_baseline(values, steps)
    return combined, components
