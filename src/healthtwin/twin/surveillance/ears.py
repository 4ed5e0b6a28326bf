"""EARS C1, C2 and C3 (Hutwagner et al. 2003), as in R surveillance's earsC.

C1 compares a count with the mean and sd of the ``baseline`` counts just before it; C2 does the same
with a two-period guard band; C3 sums the positive parts of the last three C2 statistics, so a
sustained rise alarms even when no single period is extreme. The upper bound is the count that would
just reach the threshold. Baselines are so short that these suit new or unstable series; they assume
no seasonality over the baseline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class EarsResult:
    range: np.ndarray  # 1-based indices monitored
    upperbound: np.ndarray
    alarm: np.ndarray  # float: 1, 0, or nan where the bound is undefined


def default_range(method: str, baseline: int, n: int) -> np.ndarray:
    first = baseline + {"C1": 1, "C2": 3, "C3": 5}[method]
    return np.arange(first, n + 1)


def _ref_stats(obs: np.ndarray, idx: np.ndarray, lags: range) -> tuple[np.ndarray, np.ndarray]:
    ref = np.stack([obs[idx - lag - 1] for lag in lags], axis=1)
    return ref.mean(axis=1), ref.std(axis=1, ddof=1)


def ears(observed: np.ndarray, method: str = "C1", baseline: int = 7, min_sigma: float = 0.0,
         alpha: float | None = None, range_: np.ndarray | None = None) -> EarsResult:
    if method not in ("C1", "C2", "C3"):
        raise ValueError(f"EARS method must be C1, C2 or C3, not {method!r}")
    if baseline < 3:
        raise ValueError("EARS needs a baseline of at least 3 periods")
    if min_sigma < 0:
        raise ValueError("minSigma must not be negative")
    obs = np.asarray(observed, dtype=float)
    n = len(obs)
    if alpha is None:  # the package's fallback when alpha is left out
        alpha = 0.025 if method == "C3" else 0.001
    rng = np.sort(default_range(method, baseline, n) if range_ is None else np.asarray(range_))
    max_lag = {"C1": baseline, "C2": baseline + 2, "C3": baseline + 4}[method]
    if rng[0] - max_lag < 1:
        raise ValueError("the series is too short for this EARS baseline and range")
    z = stats.norm.ppf(1 - alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "C1":
            mean, sd = _ref_stats(obs, rng, range(1, baseline + 1))
            upper = mean + z * np.maximum(sd, min_sigma)
        elif method == "C2":
            mean, sd = _ref_stats(obs, rng, range(3, baseline + 3))
            upper = mean + z * np.maximum(sd, min_sigma)
        else:
            if np.any(np.diff(rng) != 1):
                raise ValueError("EARS C3 needs a contiguous range")
            ext = np.arange(rng[0] - 2, rng[-1] + 1)
            mean, sd = _ref_stats(obs, ext, range(3, baseline + 3))
            sig = np.maximum(sd, min_sigma)
            c2 = (obs[ext - 1] - mean) / sig
            lag2 = np.maximum(0.0, c2[:-2] - 1)
            lag1 = np.maximum(0.0, c2[1:-1] - 1)
            upper = obs[rng - 1] + sig[2:] * (z - (lag2 + lag1))
            upper = np.maximum(0.0, upper)
        x = obs[rng - 1]
        alarm = np.where(np.isnan(upper), np.nan, (x > upper).astype(float))
    return EarsResult(range=rng, upperbound=upper, alarm=alarm)
