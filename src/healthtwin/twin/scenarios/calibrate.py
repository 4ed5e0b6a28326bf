"""Calibration of the SEIR model to the twin's recent weekly counts.

Observed cases in week w are modelled as y_w ~ Poisson(b + rho * infections_w): b a constant background (the
diagnoses of the group that are not this epidemic: the endemic level), rho the share of infections that
reach a diagnosis in the record (ascertainment), infections_w the model's new infections in the week. The
free parameters are R0, the infections seeding the epidemic at the start of the window (spread over the
regions in proportion to their cases in the first two weeks, and over ages in proportion to population),
rho and b. They are estimated by maximum likelihood (the Poisson deviance is minimised), on the log scale
for R0 and the seed and the logit scale for rho, with scipy's L-BFGS-B from the early growth rate, and from a second starting point when the first fit's deviance exceeds twice the number of weeks; the
standard errors come from the numerical Hessian of the deviance at the optimum.

R0 and rho are identified by the curve's turn: growth gives R0 (with the latent and infectious periods),
the peak's height and timing the susceptibles used up, hence rho. Fitted before a peak, rho and the seed
trade off and the uncertainty says so; a run's record holds the estimates and their standard errors.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import minimize

from .seir import Model


@dataclass(frozen=True)
class Fit:
    r0: float
    seed: float  # infections in E on day 0, in total
    rho: float
    background: float  # cases per week
    deviance: float
    se: dict[str, float | None]
    weeks: int
    fitted: list[float]  # expected weekly counts at the estimate


def weekly(daily: np.ndarray) -> np.ndarray:
    w = len(daily) // 7
    return daily[:w * 7].reshape(w, 7).sum(axis=1)


def expected(model: Model, r0: float, seed: float, rho: float, background: float, weights: np.ndarray,
             weeks: int) -> np.ndarray:
    m = Model(model.population, replace(model.pathogen, r0=r0), model.travel, model.immune, model.interventions)
    seeds = seed * weights
    daily = m.run(weeks * 7, seeds).infections.sum(axis=(1, 2))
    return background + rho * weekly(daily)


def seed_weights(model: Model, first_cases_by_region: np.ndarray) -> np.ndarray:
    """(R, A) shares of the seed: regions by their first cases (and a floor), ages by population."""
    n = model.population.sizes
    region = np.asarray(first_cases_by_region, dtype=float) + 0.5
    region = region / region.sum()
    ages = n / n.sum(axis=1, keepdims=True)
    return region[:, None] * ages


def fit(model: Model, observed: list[float] | np.ndarray, first_cases_by_region: np.ndarray,
        background: float | None = None) -> Fit:
    """Maximum-likelihood R0, seed, rho (and background, unless given) for the weekly `observed` counts."""
    y = np.asarray(observed, dtype=float)
    weeks = len(y)
    if weeks < 4:
        raise ValueError("calibration needs at least 4 weeks of counts")
    weights = seed_weights(model, first_cases_by_region)
    fixed_b = background is not None

    def unpack(theta: np.ndarray) -> tuple[float, float, float, float]:
        b = background if fixed_b else float(np.exp(theta[3]))
        return float(np.exp(theta[0])), float(np.exp(theta[1])), float(1 / (1 + np.exp(-theta[2]))), b

    def deviance(theta: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            mu = np.maximum(expected(model, *unpack(theta), weights, weeks), 1e-9)
            term = np.where(y > 0, y * np.log(y / mu), 0.0)
            value = float(2 * np.sum(term - (y - mu)))
        return value if np.isfinite(value) else 1e12  # a parameter set the step cannot follow: far off

    low = max(float(np.min(y[: max(2, weeks // 4)])), 0.5)
    guess = growth_r0(y, model)
    starts = []
    for r0, rho in ((guess, 0.1), (guess * 1.3, 0.02)):
        theta = [np.log(r0), np.log(max(y[:2].sum() - 2 * low, 1.0) / rho), np.log(rho / (1 - rho))]
        if not fixed_b:
            theta.append(np.log(low / 2))
        starts.append(np.array(theta))
    # R0 up to three times the pathogen's usual value: beyond, the half-day step would not follow the epidemic
    bounds = [(np.log(0.3), np.log(3 * max(model.pathogen.r0, 1.5))), (np.log(1e-3), np.log(model.population.sizes.sum() / 10)),
              (-12.0, 6.0)] + ([] if fixed_b else [(np.log(1e-3), np.log(max(y.max(), 1.0)))])
    best = None
    for x0 in starts:
        res = minimize(deviance, x0, method="L-BFGS-B", bounds=bounds)
        if best is None or res.fun < best.fun:
            best = res
        if best.fun <= 2.0 * weeks:  # a Poisson fit with deviance about its weeks is adequate: no second start
            break
    assert best is not None
    r0, seed, rho, b = unpack(best.x)
    se = _standard_errors(deviance, best.x, ("r0", "seed", "rho", "background")[:len(best.x)])
    return Fit(r0, seed, rho, b, float(best.fun), se, weeks,
               [float(v) for v in expected(model, r0, seed, rho, b, weights, weeks)])


def growth_r0(y: np.ndarray, model: Model) -> float:
    """A starting R0 from the early growth rate r per day (log-linear fit to the rising weeks) by the SEIR
    relation R = (1 + r / sigma)(1 + r / gamma) (Wallinga & Lipsitch 2007, Proc R Soc B 274:599)."""
    top = int(np.argmax(y))
    rise = np.log(np.maximum(y[: max(top, 3) + 1], 0.5))
    r = max(float(np.polyfit(np.arange(len(rise)) * 7.0, rise, 1)[0]), 0.005)
    r0 = (1 + r * model.pathogen.latent_days) * (1 + r * model.pathogen.infectious_days)
    return float(np.clip(r0, 0.5, 2.5 * max(model.pathogen.r0, 1.5)))


def _standard_errors(deviance, theta: np.ndarray, names: tuple[str, ...]) -> dict[str, float | None]:
    """Delta-method standard errors of R0 (log scale → natural scale) from the deviance's Hessian (the
    deviance is twice the negative log-likelihood, so the covariance is 2 H^-1)."""
    k, h = len(theta), 1e-2  # central differences on the log/logit scale: forward ones at 1e-3 were too noisy
    hess = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            v = (deviance(theta + ei + ej) - deviance(theta + ei - ej) - deviance(theta - ei + ej)
                 + deviance(theta - ei - ej)) / (4 * h ** 2)
            hess[i, j] = hess[j, i] = v
    if np.linalg.eigvalsh(hess).min() <= 0:  # a flat direction (seed against rho before a peak): not identified
        return {n: None for n in names}
    try:
        cov = 2 * np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return {n: None for n in names}
    out: dict[str, float | None] = {}
    for i, n in enumerate(names):
        var = cov[i, i]
        if not np.isfinite(var) or var <= 0:
            out[n] = None
            continue
        sd = float(np.sqrt(var))
        value = 1 / (1 + np.exp(-theta[i])) if n == "rho" else float(np.exp(theta[i]))
        out[n] = float(sd * (value * (1 - value) if n == "rho" else value))
    return out


__all__ = ["Fit", "expected", "fit", "seed_weights", "weekly"]
