"""farringtonFlexible (Noufaily et al. 2013 improvements), as in R surveillance's farringtonFlexible.

Same idea as the original: a quasi-Poisson GLM on the same season of past years predicts this period.
The flexible form can use *all* past data, split into ``noPeriods`` seasonal blocks (a factor), leave
out the most recent ``pastWeeksNotIncluded`` periods (so an outbreak in progress does not inflate its
own baseline), down-weight residuals above ``weightsThreshold``, and set the threshold as a one-sided
normal (delta method, 2/3-power scale) or as a negative-binomial quantile with the fitted mean and
dispersion ("nbPlugin", Noufaily's recommendation). The settings ``original`` and ``noufaily`` in the
corpus are b=5, w=3 with (1, 3, delta, trend p < 0.05, threshold 1) and (10, 26, nbPlugin, always a
trend when it does not extrapolate, threshold 2.58).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from .farrington_common import (enough_cases, normal_tail, power_interval, reweighted_fit, shift_months,
                                to_date, to_epoch, weekday)
from .glm import GlmFit, poisson_irls


@dataclass
class FlexibleControl:
    b: int = 5
    w: int = 3
    reweight: bool = True
    weights_threshold: float = 2.58
    alpha: float = 0.05
    trend: bool = True
    p_threshold_trend: float = 0.05
    limit54: tuple[float, float] = (5, 4)
    powertrans: str = "2/3"
    no_periods: int = 1
    past_weeks_not_included: int | None = None
    threshold_method: str = "delta"

    @classmethod
    def from_r(cls, c: dict[str, Any]) -> "FlexibleControl":
        if c.get("populationOffset"):
            raise ValueError("populationOffset=TRUE is not supported (the series carry no population)")
        return cls(b=int(c.get("b", 5)), w=int(c.get("w", 3)), reweight=bool(c.get("reweight", True)),
                   weights_threshold=float(c.get("weightsThreshold", 2.58)), alpha=float(c.get("alpha", 0.05)),
                   trend=bool(c.get("trend", True)), p_threshold_trend=float(c.get("pThresholdTrend", 0.05)),
                   limit54=tuple(c.get("limit54", (5, 4))), powertrans=str(c.get("powertrans", "2/3")),  # type: ignore[arg-type]
                   no_periods=int(c.get("noPeriods", 1)),
                   past_weeks_not_included=c.get("pastWeeksNotIncluded"),
                   threshold_method=str(c.get("thresholdMethod", "delta")))


@dataclass
class FlexibleResult:
    range: np.ndarray
    expected: np.ndarray
    upperbound: np.ndarray
    alarm: np.ndarray
    score: np.ndarray
    pvalue: np.ndarray
    mu0_vector: np.ndarray
    phi: np.ndarray
    trend: np.ndarray
    trend_coef: np.ndarray


def reference_points(k: int, freq: int, b: int, epochs: np.ndarray | None) -> np.ndarray:
    """The period itself and the same period 1..b years back: by index, or by date (weekly dates
    snapped to the nearest day with the same weekday)."""
    if epochs is None:
        return np.array([k - freq * i for i in range(b + 1)], dtype=float)
    t0 = to_date(epochs[k - 1])
    out = []
    for i in range(b + 1):
        ref = shift_months(t0, -12 * i)
        d = to_epoch(ref)
        if freq == 52:
            a = d - (weekday(ref) - weekday(t0))
            bb = a + (-7 if a > d else 7)
            d = bb if abs(a - d) > abs(bb - d) else a
        out.append(d)
    return np.array(out, dtype=float)


def _r_seq(a: int, b: int) -> np.ndarray:
    """R's a:b, which counts down when b < a."""
    return np.arange(a, b + 1) if b >= a else np.arange(a, b - 1, -1)


def blocks(ref_idx: np.ndarray, n: int, now: int, b: int, w: int, p: int) -> np.ndarray:
    """Seasonal block of every period (1-based positions; nan outside): p for the windows around the
    reference periods (and now), 1..p-1 for the stretches between them."""
    f = np.full(n + 1, np.nan)  # position 0 unused
    f[_r_seq(now - w, now)] = p
    weeks = sorted(ref_idx, reverse=True)
    for i in range(1, b + 1):
        ref = int(weeks[i])
        f[_r_seq(ref - w, ref + w)] = p
        if p != 1:
            period = int(weeks[i - 1]) - 2 * w - 1 - ref
            if period < p - (2 * w + 1):
                raise ValueError("noPeriods is too large for these windows")
            lengths = [period // (p - 1)] * (p - 1)
            for j in range(period % (p - 1)):
                lengths[j] += 1
            cum = np.cumsum([0] + lengths)
            for j in range(1, p):
                f[_r_seq(ref + w + 1 + int(cum[j - 1]), ref + w + 1 + int(cum[j]) - 1)] = j
    return f[1:]


def _design(wtime: np.ndarray, groups: np.ndarray, levels: list[float], with_trend: bool, factors: bool) -> np.ndarray:
    cols = [np.ones(len(wtime))]
    if with_trend:
        cols.append(wtime)
    if factors:
        cols += [(groups == lev).astype(float) for lev in levels[1:]]
    return np.column_stack(cols)


def _fit(wtime, groups, levels, response, with_trend, factors, c: FlexibleControl
         ) -> tuple[GlmFit, float, np.ndarray | None, bool] | None:
    x = _design(wtime, groups, levels, with_trend, factors)
    first = poisson_irls(x, response)
    if not first.converged:
        if not with_trend:
            return None
        with_trend = False
        x = _design(wtime, groups, levels, False, factors)
        first = poisson_irls(x, response)
        if not first.converged:
            return None
    fit, phi, omega = reweighted_fit(first, x, response, c.reweight, c.weights_threshold)
    return fit, phi, omega, with_trend


def farrington_flexible(observed: np.ndarray, range_: np.ndarray, freq: int, epochs: np.ndarray | None,
                        c: FlexibleControl) -> FlexibleResult:
    obs = np.asarray(observed, dtype=float)
    rng = np.asarray(range_)
    n = len(obs)
    past = c.w if c.past_weeks_not_included is None else int(c.past_weeks_not_included)
    factors = c.no_periods != 1
    dates = np.arange(1, n + 1, dtype=float) if epochs is None else np.asarray(epochs, dtype=float)
    lookup = {float(v): i + 1 for i, v in enumerate(dates)}
    T = len(rng)
    res = {name: np.zeros(T) for name in ("expected", "upper", "alarm", "score", "pvalue", "mu0", "phi",
                                          "trend", "coef")}
    for row, k in enumerate(rng):
        refs = reference_points(int(k), freq, c.b, epochs)
        if not all(r in lookup for r in refs):
            raise ValueError("some reference periods do not exist; decrease b or start the range later")
        ref_idx = np.array([lookup[r] for r in refs])
        f = blocks(ref_idx, n, int(k), c.b, c.w, c.no_periods)
        fid = f.copy()
        fid[_r_seq(k - past, k) - 1] = np.nan
        idx = np.nonzero(~np.isnan(fid))[0] + 1
        if epochs is None:
            wtime = idx.astype(float)
            wnow = float(k)
        else:
            step = dates[1] - dates[0]
            wtime = (dates[idx - 1] - dates[idx[0] - 1]) / step
            wnow = (dates[k - 1] - dates[idx[0] - 1]) / step
        groups = f[idx - 1]
        levels = sorted(set(groups.tolist()))
        response = obs[idx - 1]
        keep = ~np.isnan(response)
        wtime, groups, response = wtime[keep], groups[keep], response[keep]

        def xnew(with_trend: bool) -> np.ndarray:
            return _design(np.array([wnow]), np.array([float(c.no_periods)]), levels, with_trend, factors)[0]

        fitted = _fit(wtime, groups, levels, response, c.trend, factors, c)
        do_trend = False
        if fitted is not None and fitted[3]:
            fit, phi, omega, _ = fitted
            # the package replaces the working weights by the outbreak weights before summarising,
            # so the p-value and the prediction's standard error use that dispersion
            disp = fit.dispersion(omega)
            mu_hat, _ = fit.predict_response(xnew(True), disp)
            significant = fit.coef_pvalue(1, disp) < c.p_threshold_trend
            do_trend = c.b >= 3 and significant and mu_hat <= response.max()
            if not do_trend:
                fitted = _fit(wtime, groups, levels, response, False, factors, c)
        if fitted is None:
            for name in res:
                res[name][row] = np.nan
            continue
        fit, phi, omega, with_trend = fitted
        disp = fit.dispersion(omega)
        y = obs[k - 1]
        enough = enough_cases(obs, int(k), c.limit54)
        if c.threshold_method == "delta":
            fit_val, se_val = fit.predict_response(xnew(with_trend), disp)
            up, mean_e, se_e = power_interval(fit_val, se_val, phi, c.powertrans, stats.norm.ppf(1 - c.alpha), y)
            prob = normal_tail(y, mean_e, se_e, c.powertrans, upper=True)
        else:
            fit_val, se_val = fit.predict_link(xnew(with_trend), disp)
            mu_q = np.exp(fit_val) if c.threshold_method == "nbPlugin" else np.exp(
                stats.norm.ppf(1 - c.alpha, fit_val, se_val))
            if np.isinf(mu_q):
                up, prob = np.nan, np.nan
            elif phi > 1:
                size, pr = mu_q / (phi - 1), 1 / phi
                up = float(stats.nbinom.ppf(1 - c.alpha, size, pr))
                prob = float(stats.nbinom.sf(y - 1, size, pr))
            else:
                up = float(stats.poisson.ppf(1 - c.alpha, mu_q))
                prob = float(stats.poisson.sf(y - 1, mu_q))
        with np.errstate(divide="ignore", invalid="ignore"):
            score = (y - fit_val) / (up - fit_val) if not np.isnan(up) else np.nan
        res["alarm"][row] = float(enough and not np.isnan(score) and score > 1 and y != 0)
        res["upper"][row] = up if enough else np.nan
        if not np.isnan(up) and enough:
            res["expected"][row] = fit_val if c.threshold_method == "delta" else np.exp(fit_val)
        else:
            res["expected"][row] = np.nan
        with np.errstate(over="ignore"):  # the delta method's quirk exponentiates a response-scale value
            res["mu0"][row] = np.exp(fit_val) if c.threshold_method == "nbPlugin" else np.exp(
                stats.norm.ppf(1 - c.alpha, fit_val, se_val))
        res["phi"][row] = phi
        res["score"][row] = score
        res["pvalue"][row] = prob
        res["trend"][row] = float(do_trend)
        res["coef"][row] = fit.coef[1] if do_trend else np.nan
    return FlexibleResult(range=rng, expected=res["expected"], upperbound=res["upper"], alarm=res["alarm"],
                          score=res["score"], pvalue=res["pvalue"], mu0_vector=res["mu0"], phi=res["phi"],
                          trend=res["trend"], trend_coef=res["coef"])
