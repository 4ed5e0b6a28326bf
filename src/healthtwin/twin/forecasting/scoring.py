"""The weighted interval score (Bracher et al. 2021, PLoS Comput Biol 17(2):e1008618) and interval coverage.

WIS = 1/(K + 1/2) * (1/2 |y - median| + sum_k alpha_k/2 * IS_alpha_k), with
IS_alpha = (u - l) + 2/alpha (l - y) 1{y < l} + 2/alpha (y - u) 1{y > u}, K = 11 central intervals of the 23
FluSight levels. The same number is the sum of the quantile (pinball) losses over the 23 levels divided by
K + 1/2, which is how it is computed here; the interval form is kept for the tests to check one against the
other."""
from __future__ import annotations

import numpy as np

from .levels import ALPHAS, LEVELS, MEDIAN


def wis(quantiles: np.ndarray, observed: np.ndarray | float) -> np.ndarray:
    """WIS of forecasts (…, 23) at the FluSight levels against observations (…)."""
    q = np.asarray(quantiles, dtype=float)
    y = np.asarray(observed, dtype=float)[..., None]
    pinball = ((y < q).astype(float) - LEVELS) * (q - y)
    return pinball.sum(axis=-1) / (len(ALPHAS) + 0.5)


def wis_intervals(quantiles: np.ndarray, observed: np.ndarray | float) -> np.ndarray:
    """The same score from its definition: the median's absolute error and the 11 interval scores."""
    q = np.asarray(quantiles, dtype=float)
    y = np.asarray(observed, dtype=float)
    total = 0.5 * np.abs(y - q[..., MEDIAN])
    for k, alpha in enumerate(ALPHAS):
        lower, upper = q[..., k], q[..., -1 - k]
        interval = (upper - lower) + 2 / alpha * (lower - y) * (y < lower) + 2 / alpha * (y - upper) * (y > upper)
        total = total + alpha / 2 * interval
    return total / (len(ALPHAS) + 0.5)


def covered(quantiles: np.ndarray, observed: np.ndarray | float, central: float) -> np.ndarray:
    """Whether each observation lies in the central interval of that width (0.5 or 0.95), ends included."""
    q = np.asarray(quantiles, dtype=float)
    y = np.asarray(observed, dtype=float)
    lower = int(np.argmin(np.abs(LEVELS - (1 - central) / 2)))
    upper = int(np.argmin(np.abs(LEVELS - (1 + central) / 2)))
    return (q[..., lower] <= y) & (y <= q[..., upper])
