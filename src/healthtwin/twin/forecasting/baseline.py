"""The FluSight flat baseline (FluSight-baseline, 2023-24 onwards: epipredict's `cdc_baseline_forecaster`).

The median is the last observed count, flat for every horizon. The spread comes from the one-week changes
of the whole history, symmetrised (each change and its negative), so the distribution is centred on the
last value: one step ahead is the last value plus a draw of a change; each further step adds an independent
draw (a shuffle of the same sample), is re-centred on the last value, and is cut at zero. Implemented from
the method's description in epipredict's `layer_cdc_flatline_quantiles`; the corpus's FluSight-baseline
forecasts check it (bench/flusight.py prints the difference)."""
from __future__ import annotations

import numpy as np

from .levels import LEVELS

SIMULATIONS = 100_000  # epipredict's default nsims; the Monte Carlo error of a quantile is then < 1%


def flat_baseline(history: np.ndarray, steps: int, seed: int = 0,
                  simulations: int = SIMULATIONS) -> np.ndarray:
    """Quantiles (steps, 23) for 1..steps weeks after the last value of `history` (weekly counts)."""
    y = np.asarray(history, dtype=float)
    y = y[~np.isnan(y)]
    if len(y) == 0:
        raise ValueError("no observed value to forecast from")
    last = y[-1]
    changes = np.diff(y)
    if len(changes) == 0:
        changes = np.zeros(1)
    changes = np.concatenate([changes, -changes])
    # The changes' empirical quantile function on an even grid: a sample with every change's weight.
    sample = np.quantile(changes, np.linspace(0.0, 1.0, simulations))
    rng = np.random.default_rng(seed)
    out = np.empty((steps, len(LEVELS)))
    raw = np.maximum(sample + last, 0.0)
    out[0] = np.quantile(raw, LEVELS)
    for step in range(1, steps):
        raw = raw + rng.permutation(sample)
        centred = np.maximum(raw - (np.median(raw) - last), 0.0)
        out[step] = np.quantile(centred, LEVELS)
    return out
