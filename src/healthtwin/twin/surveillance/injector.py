"""Synthetic count series with outbreaks of known position and size, for scoring detectors on truth.

After Noufaily et al. (2013, Stat Med 32:1206): a negative-binomial baseline
    mu_t = exp(theta + beta t + sum_{j<=m} gamma1_j cos(2 pi j t / 52) + gamma2_j sin(2 pi j t / 52)),
    Var = phi mu_t (Poisson when phi = 1),
and outbreaks whose total size is Poisson(k * sd_t), sd_t = sqrt(phi mu_t) at the start week, with each
outbreak case's onset delayed from the start by a lognormal(0, 0.5) number of weeks (so about half the
cases fall in the first week, most of the rest in the second). Past years carry outbreaks too (k drawn
from 2..10), so detectors must cope with contaminated baselines; the last ``test_weeks`` weeks hold one
outbreak of the requested k. Everything is drawn from numpy's PCG64 with the given seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Scenario:
    name: str
    theta: float  # log of the baseline level
    beta: float = 0.0  # trend per week
    gamma1: tuple[float, ...] = ()
    gamma2: tuple[float, ...] = ()
    phi: float = 1.5

    def mean(self, t: np.ndarray) -> np.ndarray:
        eta = self.theta + self.beta * t
        for j, (g1, g2) in enumerate(zip(self.gamma1, self.gamma2), start=1):
            eta = eta + g1 * np.cos(2 * np.pi * j * t / 52) + g2 * np.sin(2 * np.pi * j * t / 52)
        return np.exp(eta)


# Representative corners of Noufaily's 28 parameter sets: low, medium and high counts, with and without
# seasonality, dispersion 1.5 to 5.
SCENARIOS = (
    Scenario("low-flat", theta=0.5, phi=1.5),
    Scenario("low-seasonal", theta=0.5, gamma1=(0.6,), gamma2=(0.6,), phi=2.0),
    Scenario("mid-seasonal", theta=2.5, gamma1=(0.4,), gamma2=(0.4,), phi=2.0),
    Scenario("mid-trend-biannual", theta=2.0, beta=0.0012, gamma1=(0.5, 0.2), gamma2=(0.3, 0.2), phi=3.0),
    Scenario("high-seasonal", theta=4.0, gamma1=(0.3,), gamma2=(0.5,), phi=5.0),
)


@dataclass
class Injected:
    counts: np.ndarray
    baseline: np.ndarray
    outbreak: np.ndarray  # planted outbreak cases per week
    test_start: int  # 0-based week of the scored outbreak's start
    test_size: int
    test_weeks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # weeks it has cases


def _draw(rng: np.random.Generator, mu: np.ndarray, phi: float) -> np.ndarray:
    if phi <= 1:
        return rng.poisson(mu)
    size = mu / (phi - 1)
    return rng.negative_binomial(size, 1 / phi)


def _outbreak(rng: np.random.Generator, start: int, k: float, sd: float, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=int)
    size = rng.poisson(k * sd)
    if size:
        offsets = np.floor(rng.lognormal(0.0, 0.5, size)).astype(int)
        weeks = start + offsets
        np.add.at(out, weeks[weeks < n], 1)
    return out


def inject(scenario: Scenario, seed: int, k: float, years: int = 12, test_weeks: int = 49,
           past_outbreaks: int = 4) -> Injected:
    rng = np.random.default_rng(seed)
    n = 52 * years
    t = np.arange(1, n + 1, dtype=float)
    mu = scenario.mean(t)
    base = _draw(rng, mu, scenario.phi)
    sd = np.sqrt(scenario.phi * mu)
    planted = np.zeros(n, dtype=int)
    for _ in range(past_outbreaks):
        s = int(rng.integers(0, n - test_weeks - 4))
        past = _outbreak(rng, s, float(rng.integers(2, 11)), float(sd[s]), n)
        past[n - test_weeks:] = 0  # the scored window holds only the test outbreak
        planted += past
    start = int(rng.integers(n - test_weeks, n - 4))
    test = _outbreak(rng, start, k, float(sd[start]), n)
    planted_all = planted + test
    return Injected(counts=(base + planted_all).astype(float), baseline=base.astype(float), outbreak=planted_all,
                    test_start=start, test_size=int(test.sum()), test_weeks=np.nonzero(test)[0])
