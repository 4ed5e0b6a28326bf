"""Pieces shared by the Farrington family: the down-weighting of past outbreaks, the two-step
quasi-Poisson fit, the power-transformed prediction interval, and calendar arithmetic on dates
the way R's seq.Date does it (a year or month back from 29 February or the 31st rolls over)."""
from __future__ import annotations

import datetime as dt

import numpy as np
from scipy import stats

from .glm import GlmFit, poisson_irls

EPOCH0 = dt.date(1970, 1, 1).toordinal()


def to_date(epoch_day: float) -> dt.date:
    return dt.date.fromordinal(EPOCH0 + int(epoch_day))


def to_epoch(d: dt.date) -> int:
    return d.toordinal() - EPOCH0


def shift_months(d: dt.date, months: int) -> dt.date:
    """d moved by whole months keeping the day number; an impossible day rolls into the next month."""
    total = d.year * 12 + (d.month - 1) + months
    y, m = divmod(total, 12)
    return dt.date(y, m + 1, 1) + dt.timedelta(days=d.day - 1)


def weekday(d: dt.date) -> int:
    """0 = Sunday, as R's format(date, "%w")."""
    return d.isoweekday() % 7


def anscombe_residuals(fit: GlmFit, phi: float) -> np.ndarray:
    y, mu = fit.y, fit.mu
    a = 1.5 * (y ** (2 / 3) * mu ** (-1 / 6) - mu**0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / np.sqrt(phi * (1 - fit.hat()))


def outbreak_weights(s: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """Weights proportional to s^-2 for residuals above the threshold, constant below, mean 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        high = s > threshold
        inv2 = np.where(high, s ** (-2.0), 1.0)
        gamma = len(s) / np.sum(inv2)
        return np.where(high, gamma * inv2, gamma)


def reweighted_fit(fit: GlmFit, design: np.ndarray, response: np.ndarray, reweight: bool,
                   threshold: float) -> tuple[GlmFit, float, np.ndarray | None]:
    """Given the first quasi-Poisson fit, refit (if reweight) with weights that shrink past outbreaks.

    Returns the final fit, phi = max(1, dispersion) and the outbreak weights used (or None)."""
    phi = max(fit.dispersion(), 1.0)
    omega = None
    if reweight:
        omega = outbreak_weights(anscombe_residuals(fit, phi), threshold)
        fit = poisson_irls(design, response, prior=omega)
        phi = max(fit.dispersion(), 1.0)
    return fit, phi, omega


def two_step_fit(design: np.ndarray, response: np.ndarray, reweight: bool, threshold: float
                 ) -> tuple[GlmFit, float, np.ndarray | None]:
    return reweighted_fit(poisson_irls(design, response), design, response, reweight, threshold)


def power_interval(mu0: float, se_fit: float, phi: float, transform: str, z: float, y: float
                   ) -> tuple[float, float, float]:
    """Upper bound of the power-transformed normal prediction interval at quantile z, with
    (y^e - mu0^e)/se for the tail probabilities: returns (upper, mean_e, se_e)."""
    tau = phi + se_fit**2 / mu0
    if transform == "none":
        se, e = np.sqrt(mu0 * tau), 1.0
    elif transform == "1/2":
        se, e = np.sqrt(0.25 * tau), 0.5
    elif transform == "2/3":
        se, e = np.sqrt(4 / 9 * mu0 ** (1 / 3) * tau), 2 / 3
    else:
        raise ValueError(f"powertrans must be 'none', '1/2' or '2/3', not {transform!r}")
    upper = (mu0**e + z * se) ** (1 / e)
    return float(upper), float(mu0**e), float(se)


def normal_tail(y: float, mean_e: float, se: float, transform: str, upper: bool) -> float:
    e = {"none": 1.0, "1/2": 0.5, "2/3": 2 / 3}[transform]
    ye = y**e
    return float(stats.norm.sf(ye, mean_e, se) if upper else stats.norm.cdf(ye, mean_e, se))


def enough_cases(observed: np.ndarray, k: int, limit54: tuple[float, float]) -> bool:
    cases, weeks = limit54
    return bool(np.sum(observed[k - int(weeks):k]) >= cases)
