"""CUSUM for counts (Rossi et al. 1999), as in R surveillance's algo.cusum.

Each count is standardised against an in-control mean m, either the mean of the training period or a
Poisson GLM with one yearly harmonic fitted to it; the cumulative sum S_t = max(0, S_{t-1} + z_t - k)
alarms when it reaches h. ``standard`` uses z = (x - m)/sqrt(m); ``rossi`` uses Rossi's
approximate-normal transform, better behaved for small counts. There is no reset after an alarm, so a
sustained outbreak keeps alarming. The upper bound is the count that would bring S_t to h.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .glm import poisson_irls


@dataclass
class CusumResult:
    range: np.ndarray
    m: np.ndarray
    cusum: np.ndarray
    upperbound: np.ndarray
    alarm: np.ndarray


def glm_expectation(observed: np.ndarray, training: np.ndarray, target: np.ndarray, freq: int,
                    start_epoch: int = 1) -> np.ndarray:
    """Poisson GLM x ~ 1 + cos(2 pi t / freq) + sin(2 pi t / freq) on the training indices (1-based),
    predicted at the target indices; t counts from the series' start epoch within its year."""
    def design(idx: np.ndarray) -> np.ndarray:
        t = start_epoch + idx - 1.0
        return np.column_stack([np.ones(len(t)), np.cos(2 * np.pi / freq * t), np.sin(2 * np.pi / freq * t)])

    fit = poisson_irls(design(training), observed[training - 1])
    return np.exp(design(target) @ fit.coef)


def cusum(observed: np.ndarray, range_: np.ndarray, k: float = 1.04, h: float = 2.26,
          m: str | float | np.ndarray | None = None, trans: str = "standard", freq: int = 52,
          start_epoch: int = 1) -> CusumResult:
    obs = np.asarray(observed, dtype=float)
    rng = np.asarray(range_)
    training = np.arange(1, rng[0])
    if m is None:
        mvec = np.full(len(rng), obs[training - 1].mean())
    elif isinstance(m, str):
        if m != "glm":
            raise ValueError(f"CUSUM m must be a number, 'glm' or absent, not {m!r}")
        mvec = glm_expectation(obs, training, rng, freq, start_epoch)
    else:
        mvec = np.broadcast_to(np.asarray(m, dtype=float), rng.shape).copy()
    x = obs[rng - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        if trans == "standard":
            z = (x - mvec) / np.sqrt(mvec)
        elif trans == "rossi":
            z = (x - 3 * mvec + 2 * np.sqrt(x * mvec)) / (2 * np.sqrt(mvec))
        else:
            raise ValueError(f"CUSUM transformation must be 'standard' or 'rossi', not {trans!r}")
        s = np.zeros(len(rng) + 1)
        for t in range(len(rng)):
            s[t + 1] = max(0.0, s[t] + (z[t] - k)) if not np.isnan(z[t]) else np.nan
        prev = s[:-1]
        sq = np.sqrt(mvec)
        if trans == "standard":
            upper = np.ceil(sq * (h + k - prev) + mvec)
        else:
            upper = (2 * h * sq + 2 * k * sq - 2 * prev * sq + 5 * mvec
                     - 2 * np.sqrt(4 * mvec**2 + 2 * mvec**1.5 * h + 2 * mvec**1.5 * k - 2 * mvec**1.5 * prev))
    upper = np.where(np.isnan(upper) | (upper < 0), 0.0, upper)
    cs = s[1:]
    alarm = (cs >= h).astype(float)
    return CusumResult(range=rng, m=mvec, cusum=cs, upperbound=upper, alarm=alarm)
