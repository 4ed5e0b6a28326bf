"""The analog component: what happened next in the past windows that looked most like the present one.

A wave's course is read from the record rather than from a formula: for every location-week of the data
known on the forecast date (every series of the panel, every week with k weeks after it), the shape of the
last weeks on the log(1 + count) scale is described by a few numbers (the last three weekly changes, the
four-week change, where the week stands against the series' own highest count of the past year, and the
level itself, which sets how noisy a count is). The present week of each series is compared with all of
them; each past window weighs by a Gaussian kernel of its standardised distance, whose bandwidth is the
distance to the NEIGHBOURS-th nearest (adaptive: as narrow where windows are many as where they are few),
and the forecast distribution of the change over k weeks is the kernel-weighted mixture of what followed
those windows, each smoothed by a normal of width SMOOTH times the spread of the weighted changes (so the
1% and 99% quantiles are not just the most extreme of a few neighbours).

Unlike the growth regressions it assumes no linear link between recent growth and future growth: near a
peak, the windows that had grown as fast and stood as close to their own year's high turned over, and
so does the forecast. It shares no fitted coefficients with them, which is what an ensemble member needs.
Nothing is fitted per location or date; a window's future is used only when it lies inside the data known
on the forecast date."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri

from .growth import aligned
from .levels import LEVELS, tidy
from .models import Panel, Quantiles, filled

PEAK_WEEKS = 52  # the own high a week is set against: the past year, so last season's peak counts
NEIGHBOURS = 60  # the kernel's bandwidth is the distance to this many-th nearest past window
KEEP = 150  # windows kept per forecast (the nearest); beyond them the kernel weighs next to nothing
SMOOTH = 0.35  # each neighbour's change is smoothed by a normal of this times the weighted spread
JITTER = 25  # points per neighbour of its smoothing normal
# The features' weights in the distance (after standardising each by its spread over the library): the
# recent changes carry the wave's phase, the standing against the own peak says how near the top it is,
# and the level weighs most: counts of like size have like noise on the log scale, so a large count's
# analogs are large counts (level weight 1, 3 or 6, bandwidth at the 30th or 60th neighbour, Gaussian or
# tricube kernel were compared on every fourth date of 2022-23 and 2024-25; 3, 60th, Gaussian was best).
FEATURE_WEIGHTS = np.array([1.0, 0.7, 0.5, 1.0, 1.0, 3.0])


def features(z: np.ndarray) -> np.ndarray:
    """Features (series, weeks, 6) of every week from that week and the ones before it only."""
    change = np.full_like(z, np.nan)
    change[:, 1:] = z[:, 1:] - z[:, :-1]
    lagged = [change]
    for lag in (1, 2):
        shifted = np.full_like(z, np.nan)
        shifted[:, lag:] = change[:, :-lag]
        lagged.append(shifted)
    four = np.full_like(z, np.nan)
    four[:, 4:] = z[:, 4:] - z[:, :-4]
    peak = pd.DataFrame(z.T).rolling(PEAK_WEEKS, min_periods=8).max().to_numpy().T
    return np.stack(lagged + [four, z - peak, z], axis=-1)


# A neighbour's change is spread over these standard-normal quantiles (equal shares) before the weighted
# quantiles are read: the mixture of normals, sampled evenly, at a small fraction of an exact inversion.
_NORMAL = ndtri((np.arange(JITTER) + 0.5) / JITTER)


def weighted_mixture_quantiles(samples: np.ndarray, weights: np.ndarray, width: np.ndarray) -> np.ndarray:
    """The LEVELS quantiles of mixtures of normals (rows: centres (n, m), weights (n, m), width (n,))."""
    points = (samples[:, :, None] + width[:, None, None] * _NORMAL[None, None, :]).reshape(len(samples), -1)
    mass = np.repeat(weights / weights.sum(axis=1, keepdims=True), JITTER, axis=1) / JITTER
    order = np.argsort(points, axis=1)
    points = np.take_along_axis(points, order, axis=1)
    cumulative = np.cumsum(np.take_along_axis(mass, order, axis=1), axis=1) - 0.5 * np.take_along_axis(mass, order, axis=1)
    return np.stack([np.interp(LEVELS, c, p) for c, p in zip(cumulative, points)])


@dataclass(frozen=True)
class AnalogForecast:
    name: str = "analog"
    window: int | None = None  # weeks of each series' history searched (None: all)
    neighbours: int = NEIGHBOURS
    weights: tuple[float, ...] = tuple(FEATURE_WEIGHTS)
    smooth: float = SMOOTH
    tricube: bool = False  # kernel: tricube over the `neighbours` nearest (else Gaussian, bandwidth there)

    def forecast(self, panel: Panel, steps: int) -> Quantiles:
        keys = [k for k, v in panel.items() if len(filled(v)) > 5]
        if not keys:
            return {}
        z = aligned([np.log1p(np.maximum(filled(panel[k]), 0.0))[-(self.window or 0):] for k in keys])
        x = features(z)
        now = x[:, -1, :]
        result = np.zeros((len(keys), steps, len(LEVELS)))
        for step in range(1, steps + 1):
            past = x[:, :-step, :].reshape(-1, x.shape[-1])
            future = (z[:, step:] - z[:, :-step]).reshape(-1)
            keep = np.isfinite(future) & np.isfinite(past).all(axis=1)
            if keep.sum() < NEIGHBOURS:
                raise ValueError("too little history for the analog forecast")
            past, future = past[keep], future[keep]
            scale = past.std(axis=0)
            scale[scale == 0] = 1.0
            query = np.nan_to_num(now, nan=0.0)  # a feature the present lacks counts as typical
            d = np.sqrt(((((query[:, None, :] - past[None, :, :]) / scale) ** 2) * np.array(self.weights)).sum(axis=-1))
            m = min(KEEP, d.shape[1])
            nearest = np.argpartition(d, m - 1, axis=1)[:, :m]
            dist = np.take_along_axis(d, nearest, axis=1)
            k = min(self.neighbours, m) - 1
            bandwidth = np.maximum(np.partition(dist, k, axis=1)[:, k], 1e-6)
            if self.tricube:
                weight = np.clip(1 - (dist / (1.0001 * bandwidth[:, None])) ** 3, 0, None) ** 3
            else:
                weight = np.exp(-0.5 * (dist / bandwidth[:, None]) ** 2)
            changes = future[nearest]
            w = weight / weight.sum(axis=1, keepdims=True)
            mean = (w * changes).sum(axis=1)
            spread = np.sqrt((w * (changes - mean[:, None]) ** 2).sum(axis=1))
            width = np.maximum(self.smooth * spread, 0.02)
            result[:, step - 1, :] = z[:, -1:] + weighted_mixture_quantiles(changes, weight, width)
        return {k: tidy(np.expm1(result[i])) for i, k in enumerate(keys)}
