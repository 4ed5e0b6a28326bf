"""CHIME's arithmetic (Penn Medicine's COVID-19 Hospital Impact Model for Epidemics, Weissman et al. 2020,
Ann Intern Med 173:21; github.com/CodeForPhilly/chime, `penn_chime/model/sir.py`), which the scenarios'
hospital demand follows.

CHIME's SIR, one step a day, rescaled to keep the population n:

    s' = s - beta s i;  i' = i + beta s i - gamma i;  r' = r + gamma i;  then each times n / (s' + i' + r')
    gamma = 1 / infectious days;  growth = 2 ** (1 / doubling time) - 1
    beta = (growth + gamma) / s0 * (1 - relative contact rate);  R0 = (growth + gamma) / gamma

and its demand: each disposition (hospital, ICU, ventilator) is (i + r) * rate * market share; admissions are
its day-to-day difference, and the census on a day is the admissions of the last `los` days:

    census[t] = cumsum(admits)[t] - cumsum(admits)[t - los]

The twin's SEIR gives new infections per day directly, so its admissions are new infections * rate *
market share, and its census uses the same `census` below.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChimeInputs:
    population: float
    current_hospitalized: float
    doubling_days: float = 4.0
    infectious_days: float = 14.0
    relative_contact_rate: float = 0.3
    market_share: float = 0.15
    hospitalized_rate: float = 0.025
    icu_rate: float = 0.0075
    ventilated_rate: float = 0.005
    hospitalized_los: int = 7
    icu_los: int = 9
    ventilated_los: int = 10


def parameters(x: ChimeInputs) -> tuple[float, float, float, float]:
    """(beta, gamma, R0, Rt) as CHIME derives them; the initial infections follow from those in hospital."""
    gamma = 1.0 / x.infectious_days
    growth = 2.0 ** (1.0 / x.doubling_days) - 1.0
    infected = x.current_hospitalized / x.market_share / x.hospitalized_rate
    s0 = x.population - infected
    beta = (growth + gamma) / s0 * (1.0 - x.relative_contact_rate)
    return beta, gamma, (growth + gamma) / gamma, beta / gamma * s0


def sir(x: ChimeInputs, days: int) -> np.ndarray:
    """(days + 1, 3): s, i, r per day from CHIME's day 0."""
    beta, gamma, _, _ = parameters(x)
    i = x.current_hospitalized / x.market_share / x.hospitalized_rate
    s, r, n = x.population - i, 0.0, x.population
    out = np.empty((days + 1, 3))
    out[0] = s, i, r
    for d in range(days):
        s_n = -beta * s * i + s
        i_n = beta * s * i - gamma * i + i
        r_n = gamma * i + r
        scale = n / (s_n + i_n + r_n)
        s, i, r = s_n * scale, i_n * scale, r_n * scale
        out[d + 1] = s, i, r
    return out


def census(admissions: np.ndarray, los: int, axis: int = 0) -> np.ndarray:
    """Patients in a bed each day: the admissions of the last `los` days (CHIME's cumsum - shifted cumsum)."""
    total = np.cumsum(admissions, axis=axis)
    shifted = np.zeros_like(total)
    if los < total.shape[axis]:
        idx = [slice(None)] * total.ndim
        src = list(idx)
        idx[axis] = slice(los, None)
        src[axis] = slice(None, total.shape[axis] - los)
        shifted[tuple(idx)] = total[tuple(src)]
    return total - shifted


def project(x: ChimeInputs, days: int) -> dict[str, np.ndarray]:
    """CHIME's projection: admissions and census per day of hospital, ICU and ventilator beds."""
    traj = sir(x, days)
    ever = traj[:, 1] + traj[:, 2]
    out: dict[str, np.ndarray] = {}
    for key, rate, los in (("hospitalized", x.hospitalized_rate, x.hospitalized_los),
                           ("icu", x.icu_rate, x.icu_los), ("ventilated", x.ventilated_rate, x.ventilated_los)):
        dispositions = ever * rate * x.market_share
        admits = np.diff(dispositions, prepend=dispositions[0])  # day 0 admits nothing new, as in CHIME
        out[f"admits_{key}"] = admits
        out[f"census_{key}"] = census(admits, los)
    return out


__all__ = ["ChimeInputs", "census", "parameters", "project", "sir"]
