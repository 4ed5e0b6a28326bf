"""The epidemic-aware component: pooled quantile regression of future growth on recent growth.

An influenza wave is growth that slows, peaks and turns into decline; how fast the growth of the last weeks
carries on, and how uncertain it is at a given level of counts, is much the same from one jurisdiction to
the next. So one model is fitted to every series of the panel at once (every location-week of the data
known on the forecast date): on the log(1 + count) scale, the change over k = 1..4 weeks is regressed on the
last three weekly changes and the current level, separately for each of the 23 quantile levels (Koenker &
Bassett quantile regression, `quantreg.py`). The level term lets the spread depend on the size of the
counts (small counts are noisier on the log scale). Two optional predictors say where in its wave a series
stands: its level against its own mean of the last two years (`relative`: a count high for that place is
near a peak whatever the place's size) and its six-week slope (`trend`: the longer run of the wave beside
the last three weekly changes); with each series' residents, the admissions per 100,000 of the week and of
the last 16 weeks (`rate`, `rates`: how intense the wave is and how much of the population it has reached,
comparable between places and seasons; the ensemble's pooled member since 2026-12-07). Nothing is fitted
per location or per date: the same specification is refitted on whatever history the forecast date knows."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .levels import LEVELS, tidy
from .models import Panel, Quantiles, filled
from .quantreg import quantile_regression

RELATIVE_WEEKS = 104  # the own mean the level is set against: two seasons
TREND_WEEKS = 6  # the slope window: longer than the three lags, so not a combination of them

def aligned(series: list[np.ndarray]) -> np.ndarray:
    """The series as rows of one matrix, aligned on their last week, NaN before each one's first."""
    width = max(len(z) for z in series)
    out = np.full((len(series), width), np.nan)
    for i, z in enumerate(series):
        out[i, width - len(z):] = z
    return out


WAVE_WEEKS = 16  # a wave's length, for its size against the last one


def wave_size(counts: np.ndarray) -> np.ndarray:
    """(series, weeks): log of the counts of the last WAVE_WEEKS weeks against the largest such total of the
    past two years (0 when this wave is the largest yet, below 0 before it has grown to that size): how far
    the current wave has come against the one before, where a wave turns as its susceptibles run out."""
    total = pd.DataFrame(counts.T).rolling(WAVE_WEEKS, min_periods=WAVE_WEEKS).sum()
    largest = total.rolling(104, min_periods=1).max()
    return (np.log1p(total) - np.log1p(largest)).to_numpy().T


def rates(counts: np.ndarray, per_100k: np.ndarray) -> list[np.ndarray]:
    """log(1 + the week's admissions per 100,000) and log(1 + those of the last WAVE_WEEKS weeks): how
    intense the wave is and how much of the population it has reached, comparable between places and
    seasons where the wave's size against the last one is not (a first big wave, a season unlike the last)."""
    weekly = counts * per_100k[:, None]
    total = pd.DataFrame(weekly.T).rolling(WAVE_WEEKS, min_periods=WAVE_WEEKS).sum().to_numpy().T
    return [np.log1p(weekly), np.log1p(total)]


def lagged_changes(z: np.ndarray, lags: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The weekly changes of z (series, weeks) and, for lag 0..lags-1, the change `lag` weeks before each
    week (NaN where there is none): the recent-growth predictors the pooled members share."""
    change = np.full_like(z, np.nan)
    change[:, 1:] = z[:, 1:] - z[:, :-1]
    columns = []
    for lag in range(lags):
        shifted = np.full_like(z, np.nan)
        shifted[:, lag:] = change[:, : z.shape[1] - lag]
        columns.append(shifted)
    return change, columns


def _design(z: np.ndarray, lags: int, pooled: bool, relative: bool = False, trend: bool = False,
            wave: bool = False, per_100k: np.ndarray | None = None) -> np.ndarray:
    """Predictors (series, weeks, features) on the log scale: intercept, the last `lags` weekly changes,
    the level, (relative) the level less the series' mean of the last RELATIVE_WEEKS, (trend) the mean
    weekly change over the last TREND_WEEKS, and (pooled) the mean weekly change over all series in that
    week and the week before, the wave as the whole panel sees it. Each uses only weeks up to its own."""
    change, lagged = lagged_changes(z, lags)
    columns = [np.ones_like(z), *lagged, z]
    by_week = pd.DataFrame(z.T)
    if relative:
        columns.append(z - by_week.rolling(RELATIVE_WEEKS, min_periods=8).mean().to_numpy().T)
    if trend:
        columns.append(((by_week - by_week.shift(TREND_WEEKS)) / TREND_WEEKS).to_numpy().T)
    if wave:  # held at -3 below: a wave under a twentieth of the last is as far from its turn as none
        columns.append(np.maximum(wave_size(np.expm1(z)), -3.0))
    if per_100k is not None:  # the rates per 100,000, this week and over the last WAVE_WEEKS
        columns.extend(rates(np.expm1(z), per_100k))
    if pooled:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # weeks before any series starts: NaN, dropped below
            mean = np.nanmean(change, axis=0)
        previous = np.concatenate([[np.nan], mean[:-1]])
        columns.append(np.broadcast_to(mean, z.shape))
        columns.append(np.broadcast_to(previous, z.shape))
    return np.stack(columns, axis=-1)


@dataclass(frozen=True)
class GrowthRegression:
    name: str = "growth-qr"
    lags: int = 3  # weekly changes used as predictors
    pooled: bool = False  # add the panel's mean weekly change as predictors
    relative: bool = False  # add the level against the series' own recent mean
    trend: bool = False  # add the six-week slope
    wave: bool = False  # add the wave's size against the largest of the past two years (a candidate)
    rate: bool = False  # add the rates per 100,000 where every series' residents are known (the pooled member's)
    window: int | None = 156  # weeks of each series' history fitted on (three seasons): bounds the time

    @property
    def uses_population(self) -> bool:
        return self.rate

    def forecast(self, panel: Panel, steps: int, population: dict[str, float] | None = None) -> Quantiles:
        keys = [k for k, v in panel.items() if len(filled(v)) > self.lags + 1]
        if not keys:
            return {}
        z = aligned([np.log1p(np.maximum(filled(panel[k]), 0.0))[-(self.window or 0):] for k in keys])
        per_100k = None
        if self.rate and population and all(population.get(k, 0) > 0 for k in keys):
            per_100k = np.array([100_000 / population[k] for k in keys])
        design = _design(z, self.lags, self.pooled, self.relative, self.trend, self.wave, per_100k)
        now = design[:, -1, :]
        if np.isnan(now).any():
            now = np.nan_to_num(now)  # a series shorter than the lags: its missing changes count as flat
        result = np.zeros((len(keys), steps, len(LEVELS)))
        for step in range(1, steps + 1):
            x = design[:, :-step, :].reshape(-1, design.shape[-1])
            y = (z[:, step:] - z[:, :-step]).reshape(-1)
            keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
            if keep.sum() < 10 * design.shape[-1]:
                raise ValueError("too little history for the growth regression")
            beta = quantile_regression(x[keep], y[keep], LEVELS)  # (23, features)
            # Predictors outside what the fit has seen (a surge steeper than any before) are held at the
            # edge of the seen range: a linear quantile model extrapolated past its data overshoots.
            seen = x[keep]
            held = np.clip(now, np.quantile(seen, 0.005, axis=0), np.quantile(seen, 0.995, axis=0))
            result[:, step - 1, :] = z[:, -1:] + held @ beta.T
        return {k: tidy(np.expm1(result[i])) for i, k in enumerate(keys)}
