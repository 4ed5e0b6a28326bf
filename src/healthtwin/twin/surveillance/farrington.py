"""The original Farrington algorithm (Farrington et al. 1996), as in R surveillance's algo.farrington.

For each monitored week the expected count comes from a quasi-Poisson GLM fitted to the same weeks
(plus/minus w) of the b previous years, with a linear trend kept only when significant (p < 0.05),
with at least three years and no extrapolation beyond the largest reference count. Past outbreaks are
down-weighted by their Anscombe residuals. The threshold is the upper end of a two-sided
(1 - alpha) prediction interval on the 2/3-power scale; fewer than 5 cases in the last 4 weeks never
alarm. Assumes the seasonality repeats from year to year and that a year is freq periods.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .farrington_common import (enough_cases, normal_tail, power_interval, reweighted_fit, shift_months,
                                to_date, to_epoch, two_step_fit, weekday)
from .glm import poisson_irls


@dataclass
class FarringtonResult:
    range: np.ndarray
    expected: np.ndarray
    upperbound: np.ndarray
    alarm: np.ndarray
    trend: np.ndarray
    pnorm: np.ndarray
    warnings: list[str]


def reference_indices_by_date(t0_epoch: float, b: int, w: int, freq: int, epochs: np.ndarray) -> np.ndarray:
    """1-based indices of the reference periods found by date (nan where no period has that date):
    the date minus i years, its window of +-w periods, snapped to the weekday of t0 for weekly data
    (or to t0's day of the month for monthly data)."""
    t0 = to_date(t0_epoch)
    lookup = {int(e): i + 1 for i, e in reversed(list(enumerate(epochs)))}
    out = []
    for i in range(1, b + 1):
        ref = shift_months(t0, -12 * i)
        for j in range(-w, w + 1):
            if freq == 52:
                d = to_epoch(ref) + 7 * j
                wd = weekday(to_date(d))
                fwd = (weekday(t0) - wd) % 7
                back = (wd - weekday(t0)) % 7
                d += fwd if fwd < back else -back
            elif freq == 12:
                m = shift_months(ref, j)
                d = to_epoch(m) - (m.day - t0.day)
            else:
                d = to_epoch(ref) + j
            out.append(lookup.get(d, np.nan))
    return np.array(out, dtype=float)


def farrington(observed: np.ndarray, range_: np.ndarray, freq: int, epochs: np.ndarray | None = None,
               b: int = 5, w: int = 3, reweight: bool = True, alpha: float = 0.05, trend: bool = True,
               limit54: tuple[float, float] = (5, 4), powertrans: str = "2/3") -> FarringtonResult:
    obs = np.asarray(observed, dtype=float)
    rng = np.asarray(range_)
    if rng.min() < 1 or rng.max() > len(obs):
        raise ValueError(f"range must lie within 1..{len(obs)}")
    z = stats.norm.ppf(1 - alpha / 2)
    T = len(rng)
    expected, upper, alarm, trend_kept, pnorm = (np.zeros(T) for _ in range(5))
    warnings: list[str] = []
    for row, k in enumerate(rng):
        if epochs is None:
            wall = np.concatenate([np.arange(k - freq * i - w, k - freq * i + w + 1) for i in range(b, 0, -1)])
            wtime = wall[wall > 0].astype(float)
        else:
            wall = reference_indices_by_date(epochs[k - 1], b, w, freq, epochs)
            wtime = wall[~np.isnan(wall)]
        if len(wall) != len(wtime):
            warnings.append(f"@ range= {k}: With current b and w then {len(wall) - len(wtime)}/{len(wall)} "
                            "reference values did not exist (index<1).")
        response = obs[wtime.astype(int) - 1]
        x_trend = np.column_stack([np.ones(len(wtime)), wtime])
        x_flat = x_trend[:, :1]
        use_trend = trend
        design = x_trend if trend else x_flat
        first = poisson_irls(design, response)
        if trend and not first.converged:
            # the package retries without the trend when the first fit does not converge
            use_trend, design = False, x_flat
            first = poisson_irls(design, response)
        fit, phi, _ = reweighted_fit(first, design, response, reweight, 1.0)
        if use_trend and fit.coef.shape[0] == 2:
            p = fit.coef_pvalue(1, fit.dispersion())
            mu_hat, _ = fit.predict_response(np.array([1.0, k]), phi)
            if not (b >= 3 and p < 0.05 and mu_hat <= response.max()):
                use_trend = False
                fit, phi, _ = two_step_fit(x_flat, response, reweight, 1.0)
        xk = np.array([1.0, k]) if use_trend else np.array([1.0])
        mu0, se = fit.predict_response(xk, phi)
        up, mean_e, se_e = power_interval(mu0, se, phi, powertrans, z, 0.0)
        y = obs[k - 1]
        enough = enough_cases(obs, k, limit54)
        score = (y - mu0) / (up - mu0) if enough else 0.0
        alarm[row] = float(score > 1)
        upper[row] = up if enough else 0.0
        trend_kept[row] = float(use_trend)
        pnorm[row] = normal_tail(y, mean_e, se_e, powertrans, upper=False)
        e = {"none": 1.0, "1/2": 0.5, "2/3": 2 / 3}[powertrans]
        expected[row] = stats.norm.ppf(0.5, mean_e, se_e) ** (1 / e)
    return FarringtonResult(range=rng, expected=expected, upperbound=upper, alarm=alarm, trend=trend_kept,
                            pnorm=pnorm, warnings=warnings)
