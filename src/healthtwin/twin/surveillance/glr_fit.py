"""In-control means for the GLR detectors fitted with statsmodels, like the package's hook:
y ~ 1 [+ t] + sum_s cos/sin(2 s pi t / freq) on the training periods 1..range[0]-1.

alpha None: negative binomial with alpha estimated by maximum likelihood (statsmodels'
NegativeBinomial, the analogue of MASS::glm.nb); alpha 0: Poisson GLM; otherwise an NB GLM with that
alpha. The parity checks do not use this (they take the fitted values the reference records), since
the two optimisers agree only to their own tolerances and glm.nb does not always converge.
"""
from __future__ import annotations

import numpy as np
import statsmodels.api as sm


def design(t: np.ndarray, freq: int, S: int, trend: bool) -> np.ndarray:
    cols = [np.ones(len(t))]
    if trend:
        cols.append(t)
    for s in range(1, S + 1):
        cols += [np.cos(2 * s * np.pi / freq * t), np.sin(2 * s * np.pi / freq * t)]
    return np.column_stack(cols)


def fit_mu0(observed: np.ndarray, range_: np.ndarray, freq: int, S: int = 1, trend: bool = False,
            alpha: float | None = None) -> tuple[np.ndarray, float]:
    train = np.arange(1, int(range_[0]), dtype=float)
    y = np.asarray(observed, dtype=float)[: len(train)]
    x = design(train, freq, S, trend)
    xr = design(np.asarray(range_, dtype=float), freq, S, trend)
    if alpha is None:
        res = sm.NegativeBinomial(y, x, loglike_method="nb2").fit(disp=0, maxiter=200)
        beta, alpha = res.params[:-1], float(res.params[-1])
    elif alpha == 0:
        beta = sm.GLM(y, x, family=sm.families.Poisson()).fit().params
    else:
        beta = sm.GLM(y, x, family=sm.families.NegativeBinomial(alpha=alpha)).fit().params
    return np.exp(xr @ beta), float(alpha)
