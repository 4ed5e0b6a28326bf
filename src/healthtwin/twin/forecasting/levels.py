"""The 23 quantile levels of the FluSight hub and the 11 central intervals they make (Bracher et al. 2021)."""
from __future__ import annotations

import numpy as np

QUANTILE_LEVELS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
    0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)
LEVELS = np.array(QUANTILE_LEVELS)
MEDIAN = QUANTILE_LEVELS.index(0.5)
# Central interval alpha: 1 - (upper - lower) for each symmetric pair (0.01, 0.99) -> 0.02 ... (0.45, 0.55) -> 0.9.
ALPHAS = np.round(2 * LEVELS[:MEDIAN], 6)


def tidy(quantiles: np.ndarray) -> np.ndarray:
    """Quantiles (…, 23) made valid counts: non-negative and non-decreasing along the last axis.

    Averaging monotone quantile vectors keeps them monotone, but a back-transformed model or a clipped
    lower tail can tie or cross by rounding; sorting is the standard repair (rearrangement, Chernozhukov
    et al. 2010) and never worsens the quantile score."""
    q = np.maximum(np.asarray(quantiles, dtype=float), 0.0)
    return np.sort(q, axis=-1)
