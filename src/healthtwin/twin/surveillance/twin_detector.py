"""The twin's own detector: a seasonal baseline read as a predictive distribution, with one-week and
multi-week tail probabilities under one calibrated false-alarm budget, ranked by the adjusted p-value.

For week t a quasi-Poisson GLM with a linear trend and two yearly harmonics is fitted to up to ten years
before t (at least one), leaving out the last 26 weeks (so an outbreak in progress does not raise its own
baseline), and refitted once with past outbreaks down-weighted (Anscombe residuals above 2.58, the
reweighting Noufaily et al. 2013 recommend). It gives a negative-binomial predictive mean mu_t and
dispersion phi (Var = phi mu), widened by the uncertainty of the fitted mean (phi + se(mu)^2 / mu, as
Farrington's prediction interval does), from which tail probabilities are read:

* p1 = P(Y_t >= y_t), the week itself;
* p2 = P(Y_{t-1} + Y_t >= y_{t-1} + y_t), the last two weeks pooled: with a common phi a sum of such
  negative binomials is again one, with mean mu_{t-1} + mu_t. An outbreak whose cases spread over two
  weeks is seen a week later at most, with twice the evidence;
* p4, the last four weeks pooled the same way: the cumulative test for a slow rise (an epidemic season)
  that no one or two weeks show.

The tests share one budget: week t signals when p_m < alpha * share_m for any m, with shares 1/4 (p1),
1 (p2) and 1/4 (p4), a pooled test (p2, p4) only when week t itself is high (P(Y_t >= y_t) < 1/2): a signal
says something about the week it is raised for, so one high week does not echo through the next three
weeks' sums as fresh alarms (on the synthetic population three of the four out-of-season alarms of one
region were such echoes); the adjusted p-value min_m p_m / share_m is what alpha is compared with and what ranks
signals across series (job.py). alpha is calibrated on outbreak-free series so that false alarms stay
under 0.5% of series-weeks (bench/detection.py prints the calibration and the scores). The two-week test
gets most of the budget because outbreaks of a few weeks put most of their cases in two weeks
(bench/detection.py: p2 alone was the most sensitive single test at a fixed false-alarm rate; p1 and p4
keep sharp one-week spikes and slow rises).

``baseline="noufaily"`` takes mu and phi from farringtonFlexible's Noufaily settings instead (10 seasonal
blocks, five years); it was less sensitive at the same false-alarm rate.
A rare disease whose past is all zeros (when no GLM converges) falls back to the plain past rate
(cases + 0.5) / weeks, and a case of a disease absent from the whole baseline always signals;
series with under a year of history use the eight weeks before a two-week guard band (EARS C2's
window) with a moment estimate of the dispersion.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .farrington_common import two_step_fit
from .farrington_flexible import FlexibleControl, farrington_flexible

# Calibrated by bench/detection.py (200 outbreak-free series, seeds 10000..10039 of its five scenarios, on
# 2026-12-02, with the pooled tests counting only in weeks above their expectation): the adjusted p-value
# below this alarms in 0.45% of series-weeks.
DEFAULT_ALPHA = 0.00331
POOLS = (1, 2, 4)  # weeks pooled into each tail probability
SHARES = (0.25, 1.0, 0.25)  # each test's share of alpha
HISTORY_YEARS = 10  # the harmonic baseline's longest history


@dataclass
class TwinSignals:
    range: np.ndarray  # 1-based weeks scored
    expected: np.ndarray
    phi: np.ndarray
    p1: np.ndarray
    p2: np.ndarray
    pvalue: np.ndarray  # the adjusted p-value min_m p_m / share_m (at most 1), compared with alpha
    alarm: np.ndarray
    pooled: dict[int, np.ndarray] | None = None  # every pooled test's p-value, by weeks pooled


def _nb_sf(y: np.ndarray, mu: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """P(Y >= y) for Var = phi mu (Poisson where phi is 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        nb = stats.nbinom.sf(y - 1, mu / np.maximum(phi - 1, 1e-12), 1 / phi)
        po = stats.poisson.sf(y - 1, mu)
    return np.where(phi > 1 + 1e-9, nb, po)


def _short_baseline(obs: np.ndarray, rng: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = np.full(len(rng), np.nan)
    phi = np.ones(len(rng))
    for i, k in enumerate(rng):
        ref = obs[max(0, k - 11):max(0, k - 3)]
        if len(ref) >= 4:
            m = ref.mean()
            mu[i] = max(m, 0.5)
            phi[i] = max(1.0, ref.var(ddof=1) / mu[i]) if len(ref) > 1 else 1.0
    return mu, phi


def _rate_baseline(obs: np.ndarray, ks: np.ndarray, freq: int, years: int, guard: int = 26
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(cases + 0.5) / weeks over the past years before the guard band, with a moment dispersion: after
    years without a case, one case has p ~ 0.5 / weeks, i.e. a notifiable disease's first case signals."""
    mu = np.full(len(ks), np.nan)
    phi = np.ones(len(ks))
    for i, k in enumerate(ks):
        past = obs[max(0, k - 1 - freq * years):max(0, k - 1 - guard)]
        past = past[~np.isnan(past)]
        if len(past) == 0:
            continue
        mu[i] = (past.sum() + 0.5) / len(past)
        if past.sum() > 0 and len(past) > 1:
            phi[i] = max(1.0, past.var(ddof=1) / mu[i])
    return mu, phi


def harmonic_baseline(obs: np.ndarray, ext: np.ndarray, freq: int, years: int, guard: int = 26,
                      harmonics: int = 2, threshold: float = 2.58, widen: bool = True
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and dispersion at each week of ext from a quasi-Poisson GLM with a trend and ``harmonics``
    yearly harmonics, fitted to the ``years`` years before the week, leaving out the last ``guard`` weeks,
    refitted once with past outbreaks down-weighted (Anscombe residuals above ``threshold``). With
    ``widen`` the dispersion carries the fitted mean's own uncertainty: phi + se(mu)^2 / mu."""
    mu = np.full(len(ext), np.nan)
    phi = np.ones(len(ext))
    for i, k in enumerate(ext):
        lo = max(1, k - freq * years)
        t = np.arange(lo, k - guard, dtype=float)
        if len(t) < freq:
            continue

        def design(tt: np.ndarray) -> np.ndarray:
            cols = [np.ones(len(tt)), (tt - k) / freq]
            for h in range(1, harmonics + 1):
                cols += [np.cos(2 * np.pi * h * tt / freq), np.sin(2 * np.pi * h * tt / freq)]
            return np.column_stack(cols)

        y = obs[t.astype(int) - 1]
        keep = ~np.isnan(y)
        fit, ph, _ = two_step_fit(design(t[keep]), y[keep], True, threshold)
        m, se = fit.predict_response(design(np.array([float(k)]))[0], ph)
        mu[i], phi[i] = m, (ph + se * se / m if widen and np.isfinite(se) else ph)
    return mu, phi


def detect(observed: np.ndarray, range_: np.ndarray | None = None, alpha: float = DEFAULT_ALPHA,
           freq: int = 52, pool: tuple[int, ...] = POOLS, baseline: str = "harmonic",
           shares: tuple[float, ...] | None = None, years: int = HISTORY_YEARS, widen: bool = True,
           current: bool = True) -> TwinSignals:
    """Signals for the weeks of range_ (1-based; default: every week with enough history).

    ``pool`` lists the numbers of recent weeks pooled into a tail probability (1: the week alone) and
    ``shares`` each one's share of alpha (default SHARES for POOLS, else equal shares). With ``current``
    a pooled test counts only in a week whose own count is in the upper half of its predictive
    distribution, P(Y >= y) < 1/2 (False: as before
    2026-12-03, when one high week kept the sums high and alarmed again in the following quiet weeks)."""
    if shares is None:
        shares = SHARES if tuple(pool) == POOLS else tuple(1.0 for _ in pool)
    if len(shares) != len(pool):
        raise ValueError("one share of alpha per pooled test")
    obs = np.asarray(observed, dtype=float)
    n = len(obs)
    w = 3
    b = min(5, (n - w - 1) // freq)
    if baseline == "harmonic" and n > freq + 26:
        # the harmonic GLM needs one year before its guard band, and uses up to five
        b = max(b, 1)
        first_possible = freq + 26 + 1
    else:
        first_possible = freq * b + w + 1 if b >= 1 else 12
    rng = np.arange(first_possible, n + 1) if range_ is None else np.asarray(range_)
    rng = rng[rng >= first_possible]
    if len(rng) == 0:
        empty = np.zeros(0)
        return TwinSignals(rng, empty, empty, empty, empty, empty, empty)
    back = max(pool) - 1
    ext = np.arange(max(first_possible, rng[0] - back), rng[-1] + 1)
    if b >= 1 and baseline == "harmonic":
        mu, phi = harmonic_baseline(obs, ext, freq, years, widen=widen)
    elif b >= 1:
        ctrl = FlexibleControl(b=b, w=w, weights_threshold=2.58, p_threshold_trend=1.0, no_periods=10,
                               past_weeks_not_included=26, threshold_method="nbPlugin", alpha=0.01,
                               limit54=(0, 4))
        try:
            r = farrington_flexible(obs, ext, freq, None, ctrl)
            mu, phi = r.mu0_vector, r.phi
        except ValueError:
            mu, phi = _short_baseline(obs, ext)
    else:
        mu, phi = _short_baseline(obs, ext)
    bad = ~np.isfinite(mu)
    if bad.any():  # no GLM (a rare disease's all-zero past does not converge): the plain past rate
        mu, phi = mu.copy(), phi.copy()
        mu[bad], phi[bad] = _rate_baseline(obs, ext[bad], freq, max(b, 1))
    y = obs[ext - 1]
    pos = np.searchsorted(ext, rng)
    # this week in the upper half of its own predictive distribution: P(Y >= y) < 1/2
    high = _nb_sf(y, mu, phi) < 0.5
    p_by_pool = {}
    for m in pool:
        pv = np.ones(len(rng))
        for i, j in enumerate(pos):
            if j - m + 1 < 0 or (current and m > 1 and not high[j]):
                continue
            sl = slice(j - m + 1, j + 1)
            pv[i] = _nb_sf(np.array([y[sl].sum()]), np.array([mu[sl].sum()]), np.array([phi[sl].max()]))[0]
        p_by_pool[m] = pv
    p1 = p_by_pool.get(1, np.ones(len(rng)))
    p2 = p_by_pool.get(2, np.ones(len(rng)))
    p = np.minimum(1.0, np.minimum.reduce([p_by_pool[m] / share for m, share in zip(pool, shares)]))
    yy = y[pos]
    # a case of a disease absent for the whole baseline (five years before the guard band) always
    # signals: for an eliminated or rare notifiable disease every case is investigated
    unseen = np.array([np.nansum(obs[max(0, k - 1 - freq * max(b, 1)):max(0, k - 1 - 26)]) == 0 for k in rng])
    alarm = (((p < alpha) | unseen) & (yy > 0)).astype(float)
    return TwinSignals(range=rng, expected=mu[pos], phi=phi[pos], p1=p1, p2=p2, pvalue=p, alarm=alarm,
                       pooled=p_by_pool)
