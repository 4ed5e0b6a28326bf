"""The twin detector's tests share one false-alarm budget: the adjusted p-value is the smallest p_m / share_m,
a slow four-week rise that neither the week nor the fortnight shows is caught by the cumulative test, a
sharp one-week spike by the one-week test, and quiet weeks stay quiet."""
from __future__ import annotations

import numpy as np

from healthtwin.twin.surveillance import twin_detector
from healthtwin.twin.surveillance.injector import Scenario, inject

QUIET = Scenario("mid", theta=2.5, gamma1=(0.4,), gamma2=(0.4,), phi=1.5)


def _series(seed=1):
    return inject(QUIET, seed, k=0.0, years=8, past_outbreaks=0).counts.copy()


def test_the_adjusted_pvalue_is_the_smallest_share_weighted_test():
    c = _series()
    n = len(c)
    r = twin_detector.detect(c, np.arange(n - 20, n + 1), alpha=1.0)
    assert set(r.pooled) == set(twin_detector.POOLS)
    expect = np.minimum(1.0, np.minimum.reduce([r.pooled[m] / s for m, s in zip(twin_detector.POOLS,
                                                                                 twin_detector.SHARES)]))
    np.testing.assert_allclose(r.pvalue, expect)
    assert (r.pvalue <= r.pooled[2]).all()  # the two-week test has the whole alpha: never above its own p


def test_a_slow_rise_is_caught_by_the_cumulative_test_and_a_spike_by_the_week():
    c = _series()
    n = len(c)
    rng = np.arange(n - 10, n + 1)
    quiet = twin_detector.detect(c, rng)
    assert quiet.alarm.sum() <= 1
    mu, sd = quiet.expected[-4:], np.sqrt(quiet.phi[-4:] * quiet.expected[-4:])
    rise = c.copy()
    rise[-4:] = np.round(mu + 1.9 * sd)  # four weeks each ~1.9 sd above: neither a week nor two alarm
    r = twin_detector.detect(rise, rng)
    assert r.alarm[-1] == 1
    assert r.pooled[4][-1] * 4 < twin_detector.DEFAULT_ALPHA  # the cumulative test is what signals
    assert r.pooled[1][-1] * 4 > twin_detector.DEFAULT_ALPHA and r.pooled[2][-1] > twin_detector.DEFAULT_ALPHA
    spike = c.copy()
    spike[-1] = np.round(mu[-1] + 8 * sd[-1])
    s = twin_detector.detect(spike, rng)
    assert s.alarm[-1] == 1 and s.pooled[1][-1] * 4 < twin_detector.DEFAULT_ALPHA


def test_one_high_week_alarms_once_not_again_in_the_quiet_weeks_after_it():
    c = _series()
    n = len(c)
    rng = np.arange(n - 10, n + 1)
    quiet = twin_detector.detect(c, rng)
    spike = c.copy()
    spike[-4] = np.round(quiet.expected[-4] + 6 * np.sqrt(quiet.phi[-4] * quiet.expected[-4]))
    spike[-3:] = np.floor(quiet.expected[-3:])  # the three weeks after it at (just under) their expectation
    r = twin_detector.detect(spike, rng)
    assert r.alarm[-4] == 1
    assert r.alarm[-3:].sum() == 0 and (r.pooled[2][-3:] == 1).all() and (r.pooled[4][-3:] == 1).all()
    echo = twin_detector.detect(spike, rng, current=False)  # the pooled sums still hold the high week
    assert echo.alarm[-3:].sum() >= 1
