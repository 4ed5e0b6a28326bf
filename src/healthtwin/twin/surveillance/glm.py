"""Poisson / quasi-Poisson log-link GLM fitted by iteratively reweighted least squares.

Written with numpy rather than statsmodels because the reference detectors depend on details of one
particular IRLS run: the start ``mu = y + 0.1``, the relative-deviance stopping rule (1e-8, at most 25
steps), the floor ``mu >= DBL_EPSILON``, and the working weights and QR factor *of the last step*, which
the hat values, the dispersion and the prediction standard errors are computed from. Reproducing these
makes the Farrington bounds agree with R's to ~1e-12 even when a fit is degenerate (all-zero baselines),
where a fully converged optimiser would give a different, equally "right" answer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

EPS = float(np.finfo(float).eps)


@dataclass
class GlmFit:
    coef: np.ndarray
    mu: np.ndarray
    y: np.ndarray
    prior: np.ndarray
    working_weights: np.ndarray  # w^2 of the last IRLS step (before its update of mu)
    residuals: np.ndarray  # working residuals (y - mu) / mu with the final mu
    q: np.ndarray  # Q of the last weighted least-squares step
    r: np.ndarray
    df_residual: int
    converged: bool

    def hat(self) -> np.ndarray:
        h = np.sum(self.q**2, axis=1)
        h[h > 1 - 10 * EPS] = 1.0
        return h

    def unscaled_cov(self) -> np.ndarray:
        rinv = np.linalg.inv(self.r)
        return rinv @ rinv.T

    def dispersion(self, weights: np.ndarray | None = None) -> float:
        """Pearson-type estimate sum(w * res^2) / df over positive weights (R's summary.glm).

        ``weights`` replaces the working weights, for callers that overwrite them before summarising."""
        w = self.working_weights if weights is None else weights
        if self.df_residual <= 0:
            return float("nan")
        keep = w > 0
        return float(np.sum((w * self.residuals**2)[keep]) / self.df_residual)

    def coef_pvalue(self, j: int, dispersion: float) -> float:
        """Two-sided t-test p-value of coefficient j with an estimated dispersion."""
        se = np.sqrt(dispersion * self.unscaled_cov()[j, j])
        t = self.coef[j] / se
        return float(2 * stats.t.sf(abs(t), self.df_residual))

    def predict_link(self, x: np.ndarray, dispersion: float) -> tuple[float, float]:
        """Linear predictor at x and its standard error."""
        eta = float(x @ self.coef)
        se = float(np.sqrt(x @ self.unscaled_cov() @ x) * np.sqrt(dispersion))
        return eta, se

    def predict_response(self, x: np.ndarray, dispersion: float) -> tuple[float, float]:
        eta, se = self.predict_link(x, dispersion)
        mu = max(np.exp(eta), EPS)
        return mu, se * mu


def _deviance(y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> float:
    r = mu * wt
    pos = y > 0
    r[pos] = (wt * (y * np.log(np.where(pos, y, 1.0) / mu) - (y - mu)))[pos]
    return float(np.sum(2 * r))


def poisson_irls(x: np.ndarray, y: np.ndarray, prior: np.ndarray | None = None,
                 maxit: int = 25, epsilon: float = 1e-8) -> GlmFit:
    """Fit log E[y] = x @ beta, following R's glm.fit step for step (see the module docstring)."""
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    prior = np.ones_like(y) if prior is None else np.asarray(prior, dtype=float)
    eta = np.log(y + 0.1)
    mu = np.maximum(np.exp(eta), EPS)
    devold = _deviance(y, mu, prior)
    good = prior > 0
    converged = False
    coef = np.zeros(x.shape[1])
    q = r = None
    w2 = np.zeros_like(y)
    for _ in range(maxit):
        mu_eta = np.maximum(np.exp(eta), EPS)
        z = eta + (y - mu) / mu_eta
        w = np.sqrt(prior * mu_eta**2 / mu)
        xw = x[good] * w[good, None]
        q, r = np.linalg.qr(xw)
        coef = np.linalg.solve(r, q.T @ (z[good] * w[good]))
        w2 = np.zeros_like(y)
        w2[good] = w[good] ** 2
        eta = x @ coef
        mu = np.maximum(np.exp(eta), EPS)
        dev = _deviance(y, mu, prior)
        if abs(dev - devold) / (abs(dev) + 0.1) < epsilon:
            converged = True
            break
        devold = dev
    residuals = (y - mu) / np.maximum(np.exp(eta), EPS)
    n_ok = int(np.sum(good))
    assert q is not None and r is not None
    return GlmFit(coef=coef, mu=mu, y=y, prior=prior, working_weights=w2, residuals=residuals,
                  q=q, r=r, df_residual=n_ok - x.shape[1], converged=converged)
