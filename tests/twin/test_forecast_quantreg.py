"""The batched quantile regression reaches the optimum of the pinball loss: checked against the exact
linear-programming solution (scipy's HiGHS) on skewed, heavy-tailed data."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_matrix, hstack, identity

from healthtwin.twin.forecasting.quantreg import quantile_regression


def pinball(x, y, beta, tau):
    r = y - x @ beta
    return float(np.mean(np.where(r >= 0, tau * r, (tau - 1) * r)))


def exact(x, y, tau):
    n, p = x.shape
    cost = np.concatenate([np.zeros(2 * p), tau * np.ones(n), (1 - tau) * np.ones(n)])
    equality = hstack([csr_matrix(x), csr_matrix(-x), identity(n), -identity(n)])
    solution = linprog(cost, A_eq=equality, b_eq=y, bounds=(0, None), method="highs").x
    return solution[:p] - solution[p:2 * p]


def test_the_batched_fit_reaches_the_exact_pinball_optimum_at_every_level():
    rng = np.random.default_rng(3)
    n = 400
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 3))])
    # Heteroscedastic, skewed noise: the quantile lines are not parallel, so each level is its own fit.
    y = x @ np.array([1.0, 0.5, -0.3, 0.2]) + (1 + np.abs(x[:, 1])) * rng.gamma(2.0, 1.0, size=n)
    levels = np.array([0.025, 0.25, 0.5, 0.75, 0.975])
    beta = quantile_regression(x, y, levels, max_iterations=500)
    for k, tau in enumerate(levels):
        best = pinball(x, y, exact(x, y, tau), tau)
        assert pinball(x, y, beta[k], tau) <= best * 1.002
    # The slope on the noisy predictor grows with the level, as the noise scales with |x1|.
    assert beta[-1, 1] - beta[0, 1] != 0 and np.all(np.diff(beta[:, 0]) > 0)
