"""GLR and LR CUSUM detectors for Poisson and negative binomial counts (Hoehle & Paul 2008), as in R
surveillance's algo.glrnb with ``change="intercept"``.

Given in-control means mu0_t, the generalised likelihood ratio at time n maximises, over every
change-point k <= n, the log-likelihood ratio of "the counts since k are kappa-times higher" with kappa
fitted by maximum likelihood (dir="inc": kappa >= 0). With a known change ``theta`` it is the LR CUSUM
instead. The statistic alarms at ``c_arl`` and then restarts after the alarm. alpha = 0 gives the
Poisson detector; alpha > 0 is the negative binomial dispersion (Var = mu + alpha mu^2).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GlrResult:
    range: np.ndarray
    mu0: np.ndarray
    value: np.ndarray  # the statistic (ret="value")
    cases: np.ndarray  # counts needed at t for an alarm (ret="cases")
    alarm: np.ndarray


def _pois_glr(x: np.ndarray, mu0: np.ndarray, n: int, dir_: int) -> float:
    """max over k <= n of the Poisson GLR with a fitted intercept change (sums from k to n)."""
    sx = np.cumsum(x[n::-1])
    sm = np.cumsum(mu0[n::-1])
    with np.errstate(divide="ignore"):
        kappa = dir_ * np.maximum(0.0, dir_ * np.log(sx / sm))
    return float(np.max(kappa * sx + (1 - np.exp(kappa)) * sm))


def _nb_glr(x: np.ndarray, mu0: np.ndarray, alpha: float, n: int, dir_: int) -> float:
    """max over k <= n of the NB GLR, with kappa per change-point k at its maximum-likelihood value.

    The log-likelihood is concave in kappa, so the MLE is the root of the decreasing score; it is found
    for every k at once by Newton steps kept inside a bracket (bisection when a step leaves it). The
    package runs plain Newton from the previous k's estimate to 1e-6, which reaches the same root
    wherever it converges; the likelihood ratio at the root differs by far less than 1e-12."""
    xs = x[: n + 1]
    ms = mu0[: n + 1]
    ks = np.arange(n + 1)
    mask = (ks[None, :] >= ks[:, None]).astype(float)  # row k: the counts from change-point k to n

    def score_fisher(kappa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = np.exp(kappa)[:, None]
        denom = 1 + alpha * e * ms[None, :]
        score = np.sum(mask * (xs[None, :] - e * ms[None, :]) / denom, axis=1)
        fisher = np.exp(kappa) * np.sum(mask * ms[None, :] * (alpha * xs[None, :] + 1) / denom**2, axis=1)
        return score, fisher

    s0, _ = score_fisher(np.zeros(n + 1))
    need = dir_ * s0 > 0  # otherwise the constrained MLE is kappa = 0
    kappa = np.zeros(n + 1)
    if need.any():
        lo = np.zeros(n + 1)
        hi = np.full(n + 1, float(dir_))
        for _ in range(12):  # widen the bracket until the score changes sign (|kappa| <= 4096)
            sh, _ = score_fisher(hi)
            grow = need & (dir_ * sh > 0)
            if not grow.any():
                break
            lo = np.where(grow, hi, lo)
            hi = np.where(grow, hi * 2, hi)
        kappa = np.where(need, (lo + hi) / 2, 0.0)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for _ in range(200):
                sc, fi = score_fisher(kappa)
                pos = dir_ * sc > 0  # root lies further out
                lo = np.where(need & pos, kappa, lo)
                hi = np.where(need & ~pos, kappa, hi)
                new = kappa + sc / fi
                inside = np.isfinite(new) & ((new - lo) * (new - hi) < 0)
                new = np.where(inside, new, (lo + hi) / 2)
                new = np.where(need, new, 0.0)
                if np.max(np.abs(new - kappa)) < 1e-13:
                    kappa = new
                    break
                kappa = new
    kappa = dir_ * np.maximum(0.0, dir_ * kappa)
    e = np.exp(kappa)[:, None]
    lnk = np.sum(mask * (kappa[:, None] * xs[None, :]
                         + (xs[None, :] + 1 / alpha) * np.log((1 + alpha * ms[None, :]) / (1 + alpha * ms[None, :] * e))),
                 axis=1)
    return float(np.max(lnk))


def _in_order(terms: np.ndarray) -> float:
    """The sum of `terms` added one by one from the first, as the package's C loop adds them. numpy's sum adds
    pairwise in blocks whose shape follows the CPU's vector width, so on another machine a statistic near 0
    (a difference of large sums) moved by 1e-13, a relative 1e-6 of a value of 1e-7."""
    return float(np.add.accumulate(terms)[-1]) if len(terms) else 0.0


def _nb_glr_exact(x: np.ndarray, mu0: np.ndarray, alpha: float, n: int, dir_: int) -> float:
    """The NB GLR at n computed the package's way: for k = 0..n, Newton-Raphson from the previous k's
    estimate (0.5 at first) until kappa moves less than 1e-6, below -18, or after 1000 steps, and
    change-points whose likelihood ratio is not a number are skipped. Its result differs from the exact
    maximum by ~1e-13, which matters only for statistics close to 0; the reported values use it."""
    best = -1e99
    kappa_ml = 0.5
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for k in range(n + 1):
            xs = x[k:n + 1]
            ms = mu0[k:n + 1]
            old, new, it = 0.4, kappa_ml, 0
            while new > -18 and abs(new - old) > 1e-6 and it < 1000:
                it += 1
                old = new
                e = np.exp(old)
                denom = 1 + alpha * e * ms
                score = _in_order((xs - e * ms) / denom)
                fisher = e * _in_order(ms * (alpha * xs + 1) / denom**2)
                new = old + score / fisher
            kappa_ml = dir_ * max(0.0, dir_ * new) if new == new else new
            lnk = float(_in_order(kappa_ml * xs + (xs + 1 / alpha)
                                   * np.log((1 + alpha * ms) / (1 + alpha * ms * np.exp(kappa_ml)))))
            if lnk > best:
                best = lnk
    return best


def _segment(x: np.ndarray, mu0: np.ndarray, alpha: float, theta: float | None, c_arl: float,
             dir_: int, want_cases: bool, x_max: float, exact: bool = True) -> tuple[int, np.ndarray, np.ndarray]:
    """Run one detector pass from the start of x until the first alarm.

    Returns (N, values, cases) with N the 0-based alarm position or len(x) when there is none."""
    lx = len(x)
    val = np.zeros(lx)
    cases = np.zeros(lx)
    for n in range(lx):
        if theta is not None:
            if alpha == 0:
                zn = theta * x[n] + (1 - np.exp(theta)) * mu0[n]
                prev = val[n - 1] if n else 0.0
                val[n] = max(0.0, prev + zn)
                cases[n] = (c_arl - prev + mu0[n] * (np.exp(theta) - 1)) / theta
            else:
                lg = np.log((1 + alpha * mu0[n]) / (1 + alpha * mu0[n] * np.exp(theta)))
                zn = theta * x[n] + (x[n] + 1 / alpha) * lg
                prev = val[n - 1] if n else 0.0
                val[n] = max(0.0, prev + zn)
                cases[n] = -(prev * alpha + lg - c_arl * alpha) / alpha / (theta + lg)
            if val[n] > c_arl:  # the LR CUSUM alarms strictly above the threshold
                return n, val, cases
            continue
        if alpha == 0:
            val[n] = _pois_glr(x, mu0, n, dir_)
            if want_cases:
                cases[n] = _pois_cases(x, mu0, n, dir_, c_arl)
        else:
            val[n] = (_nb_glr_exact if exact else _nb_glr)(x, mu0, alpha, n, dir_)
        if val[n] >= c_arl:
            return n, val, cases
    return lx, val, cases


def _pois_cases(x: np.ndarray, mu0: np.ndarray, n: int, dir_: int, c_arl: float) -> float:
    """Smallest count at n (searching up from 0) whose GLR reaches c_arl."""
    trial = x.astype(float).copy()
    v = 0
    while True:
        trial[n] = v
        if dir_ * _pois_glr(trial, mu0, n, dir_) >= c_arl * dir_:
            return float(v)
        v += 1


def _nb_cases(x: np.ndarray, mu0: np.ndarray, alpha: float, n: int, alarmed: bool, dir_: int,
              c_arl: float, x_max: float) -> float:
    """The count at n at which the NB GLR's alarm status flips, as the package's brute-force search
    finds it: stepping up from the observed count (no alarm yet; 1e99 if none up to x_max + 1, and
    never from a count of 0) or down (alarm; the smallest count that still alarms, NA if even 0 does).
    The statistic grows with the count at n, so an exponential-then-binary search gives the same
    count in a few evaluations instead of one per case."""
    trial = x.astype(float).copy()

    def hit(v: float) -> bool:
        trial[n] = v
        return _nb_glr(trial, mu0, alpha, n, dir_) >= c_arl

    x0 = float(x[n])
    if x0 < 1 or x0 > x_max:
        return float("nan") if alarmed else 1e99
    if not alarmed:
        top = x_max + 1
        lo, step = x0, 1.0  # hit(lo) is False
        hi = min(x0 + step, top)
        while not hit(hi):
            if hi >= top:
                return 1e99
            lo = hi
            step *= 2
            hi = min(x0 + step, top)
        while hi - lo > 1:  # hit(hi) True, hit(lo) False
            mid = float((lo + hi) // 2)
            lo, hi = (lo, mid) if hit(mid) else (mid, hi)
        return hi
    if hit(0.0):
        return float("nan")
    lo, hi = 0.0, x0  # hit(lo) False, hit(hi) True
    while hi - lo > 1:
        mid = float((lo + hi) // 2)
        lo, hi = (lo, mid) if hit(mid) else (mid, hi)
    return hi


def glrnb(observed: np.ndarray, range_: np.ndarray, mu0: np.ndarray, alpha: float = 0.0,
          c_arl: float = 5.0, theta: float | None = None, direction: str = "inc",
          x_max: float = 1e4, want_cases: bool = True, mtilde: int = 1, m_window: int = -1,
          exact: bool = True) -> GlrResult:
    """exact=False takes the NB GLR at its exact maximum (vectorised; for benches and the job) instead of
    the package's iteration (the reported statistic then differs from R's by ~1e-13)."""
    if mtilde != 1 or m_window != -1:
        raise ValueError("only Mtilde=1 and M=-1 (no window) are implemented")
    if theta is not None and theta == 1:
        raise ValueError("theta has to differ from 1")
    dir_ = 1 if direction == "inc" else -1
    rng = np.asarray(range_)
    x_all = np.asarray(observed, dtype=float)[rng - 1]
    mu_all = np.asarray(mu0, dtype=float)
    T = len(rng)
    value = np.zeros(T)
    cases = np.zeros(T)
    alarm = np.zeros(T)
    done = 0
    while done < T:
        x = x_all[done:]
        mu = mu_all[done:]
        N, val, cs = _segment(x, mu, alpha, theta, c_arl, dir_, want_cases, x_max, exact)
        stop = min(N + 1, len(x))
        if want_cases and theta is None and alpha > 0:
            for pos in range(stop):
                cs[pos] = _nb_cases(x, mu, alpha, pos, pos == N, dir_, c_arl, x_max)
        value[done:done + stop] = val[:stop]
        cases[done:done + stop] = cs[:stop]
        if N < len(x):
            alarm[done + N] = 1
            done += N + 1
        else:
            value[done:] = val
            cases[done:] = cs
            done = T
    value = np.where(np.isnan(value) | (value < 0), 0.0, value)
    cases = np.where(np.isnan(cases) | (cases < 0), 0.0, cases)
    return GlrResult(range=rng, mu0=mu_all, value=value, cases=cases, alarm=alarm)


def mu0_from_coefficients(coefs: dict[str, float], range_: np.ndarray, freq: int) -> np.ndarray:
    """In-control means from the package hook's GLM coefficients: y ~ 1 [+ t] + cos/sin(2 s pi/freq t)."""
    t = np.asarray(range_, dtype=float)
    eta = np.zeros(len(t))
    for name, beta in coefs.items():
        name = name.replace(" ", "")
        if name == "(Intercept)":
            eta += beta
        elif name == "t":
            eta += beta * t
        else:
            fn, arg = name.split("(", 1)
            s = int(arg.split("*")[1])
            f = np.cos if fn == "cos" else np.sin
            eta += beta * f(2 * s * np.pi / freq * t)
    return np.exp(eta)
