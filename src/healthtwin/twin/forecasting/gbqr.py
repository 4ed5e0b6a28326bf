"""The gradient-boosted quantile member: LightGBM's quantile loss, pooled over locations and horizons.

Why: the growth regressions are linear in recent growth, so near a turning point they carry the growth on;
the FluSight teams that scored best in 2023-24 (UMass "flusion" among them) used gradient-boosted trees
with the quantile loss, which can learn that growth at a high level turns over. This member follows
that design on the data the panel gives (no calendar: a panel is counts, with each series' residents
where known):

* each series is put on log(1 + count) (`log=True`, the ensemble's form, chosen on 2022-23 and 2024-25)
  or the fourth root (flusion's) and divided by its own 95th percentile on that scale (over the history
  known on the forecast date), so a state's and the nation's waves look alike;
* one model per quantile level (15 of the 23, the rest interpolated), fitted to every location-week and every horizon 1..steps at once, the
  horizon a feature; the target is the change of the scaled value over the horizon;
* features of a week use that week and the ones before it only: the level, the changes over 1, 2 and 4
  weeks, the level against the means of the last 4 and 8 weeks and against the series' high of the past
  52, the panel's mean weekly change (the wave as the country sees it) and the log of the series' scale
  (its size, where counts are noisier on a small scale);
* with `wave=True` (the ensemble's member since 2026-12-07) also the wave's size: the counts of the last
  16 weeks against the largest such total of the past two years. A wave turns as its susceptibles run
  out, so how far this one has come against the last says more about its turn than its height does;
  alone the member's relative WIS fell from 0.767 / 0.691 to 0.684 / 0.674 in 2022-23 and from 0.730 /
  0.683 to 0.685 / 0.644 in 2024-25 (natural / log);
* with `rate=True` (the ensemble's member since 2026-12-07, given each series' residents by
  `forecast(..., population=)`) also the week's admissions per 100,000 and those of the last 16 weeks:
  the wave's intensity and how much of the population it has reached, comparable between places and
  seasons where the size against the last wave is not. Alone, in the season runs (the nowcast read,
  unwidened): 0.684 / 0.674 -> 0.659 / 0.668 in 2022-23, 0.685 / 0.644 -> 0.680 / 0.638 in 2024-25. A
  panel without populations has NaN there in every row, fitted and forecast alike, and the member
  reads the other features only.

The quantiles are sorted (the levels are fitted separately and can cross) and transformed back. LightGBM
runs with a fixed seed, `deterministic=True` and NUM_THREADS threads: the same panel gives the same
forecast. Nothing is fitted per location or date."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .growth import aligned, rates, wave_size
from .levels import LEVELS, tidy
from .models import Panel, Quantiles, filled

NUM_THREADS = 1  # on the 2-core machine, shared: 2.3 ms a tree against 15 ms with 2 threads (2026-12-03, load 5)
PEAK_WEEKS = 52  # the high a week stands against: the past year, which holds last season's peak
MIN_ROWS = 500  # fewer training rows are too few for leaves of 40 rows at the 1% and 99% levels
# The levels fitted: the tails and every tenth, 15 of the 23; the 0.15, 0.25 ... 0.85 between them are
# interpolated linearly in the level (a third less time; the fitted curve is smooth there).
FITTED = np.array([0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99])


def _scale(z: np.ndarray) -> np.ndarray:
    """Each row's 95th percentile of its known values (at least 1: a series of zeros stays as it is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = np.nanpercentile(z, 95, axis=1)
    return np.maximum(np.nan_to_num(s, nan=1.0), 1.0)


def features(x: np.ndarray, scale: np.ndarray, counts: np.ndarray | None = None,
             per_100k: np.ndarray | None = None, wave: bool = True) -> np.ndarray:
    """Features (series, weeks, 9, 10 with `counts`: the wave's size, and 2 more with `per_100k`: the
    rates) of every week of the scaled series x (series, weeks) from that week and the ones before it only.
    `per_100k` (series,) is 100,000 over each series' residents (NaN where unknown)."""
    def diff(k: int) -> np.ndarray:
        out = np.full_like(x, np.nan)
        out[:, k:] = x[:, k:] - x[:, :-k]
        return out

    by_week = pd.DataFrame(x.T)
    mean4 = by_week.rolling(4, min_periods=4).mean().to_numpy().T
    mean8 = by_week.rolling(8, min_periods=8).mean().to_numpy().T
    peak = by_week.rolling(PEAK_WEEKS, min_periods=8).max().to_numpy().T
    one = diff(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weeks before any series starts
        panel_change = np.nanmean(one, axis=0)
    size = np.broadcast_to(np.log(scale)[:, None], x.shape)
    columns = [x, one, diff(2), diff(4), x - mean4, x - mean8, x - peak, np.broadcast_to(panel_change, x.shape), size]
    if counts is not None and wave:
        columns.append(wave_size(counts))
    if counts is not None and per_100k is not None:
        columns.extend(rates(counts, per_100k))
    return np.stack(columns, axis=-1)


@dataclass(frozen=True)
class GradientBoostedQuantiles:
    name: str = "gbqr"
    trees: int = 100
    learning_rate: float = 0.08
    leaves: int = 15
    min_leaf: int = 40  # rows a leaf needs: the tails are fitted from few points
    window: int | None = 156  # weeks of each series' history fitted on (three seasons): bounds the time
    seed: int = 0
    log: bool = False  # log(1 + count) in place of the fourth root (a candidate)
    wave: bool = False  # the wave's size against the largest of the past two years as a feature (the ensemble's)
    seeds: tuple[int, ...] = ()  # further seeds whose forecasts are averaged with seed's (a candidate)
    rate: bool = False  # the rates per 100,000 as features, from the population (the ensemble's)

    @property
    def uses_population(self) -> bool:
        return self.rate

    def forecast(self, panel: Panel, steps: int, population: dict[str, float] | None = None) -> Quantiles:
        import lightgbm as lgb

        keys = [k for k, v in panel.items() if len(filled(v)) > 4]
        if not keys:
            return {}
        forward = np.log1p if self.log else (lambda y: np.sqrt(np.sqrt(y)))
        known = [np.maximum(filled(panel[k]), 0.0)[-(self.window or 0):] for k in keys]
        z = aligned([forward(c) for c in known])
        scale = _scale(z)
        x = z / scale[:, None]
        per_100k = None
        if self.rate:
            per_100k = np.array([100_000 / (population or {}).get(k, np.nan) for k in keys])
        f = features(x, scale, aligned(known) if self.wave or self.rate else None, per_100k, self.wave)
        rows, targets = [], []
        for step in range(1, steps + 1):
            past = f[:, :-step, :].reshape(-1, f.shape[-1])
            y = (x[:, step:] - x[:, :-step]).reshape(-1)
            keep = np.isfinite(y) & np.isfinite(past[:, 0])
            rows.append(np.column_stack([past[keep], np.full(keep.sum(), step)]))
            targets.append(y[keep])
        train, y = np.concatenate(rows), np.concatenate(targets)
        if len(y) < MIN_ROWS:
            raise ValueError("too little history for the gradient-boosted quantiles")
        now = f[:, -1, :]
        query = np.concatenate([np.column_stack([now, np.full(len(keys), step)]) for step in range(1, steps + 1)])
        data = lgb.Dataset(train, y, params={"verbose": -1, "max_bin": 63}, free_raw_data=False)
        change = np.zeros((len(FITTED), len(query)))
        seeds = (self.seed, *self.seeds)
        for seed in seeds:
            for j, tau in enumerate(FITTED):
                params = dict(objective="quantile", alpha=float(tau), learning_rate=self.learning_rate,
                              num_leaves=self.leaves, min_data_in_leaf=self.min_leaf, bagging_fraction=0.7,
                              bagging_freq=1, feature_fraction=0.8, seed=seed, deterministic=True,
                              force_row_wise=True, num_threads=NUM_THREADS, verbose=-1, max_bin=63)
                booster = lgb.train(params, data, num_boost_round=self.trees)
                change[j] += booster.predict(query, num_threads=NUM_THREADS) / len(seeds)
        change = np.sort(change, axis=0)  # the levels are fitted apart and can cross: rearranged
        change = np.stack([np.interp(LEVELS, FITTED, column) for column in change.T])
        change = change.reshape(steps, len(keys), len(LEVELS))  # (steps, series, levels)
        level = x[:, -1]
        scaled = np.maximum(level[None, :, None] + change, 0.0) * scale[None, :, None]
        counts = np.expm1(scaled) if self.log else scaled ** 4
        return {k: tidy(counts[:, i, :]) for i, k in enumerate(keys)}
