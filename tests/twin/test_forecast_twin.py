"""The ensemble on the twin's own weekly series (twin.series.Series), one panel per syndrome."""
from __future__ import annotations

import datetime as dt

import numpy as np

from healthtwin.twin.forecasting.twin_series import forecast_weekly
from healthtwin.twin.series import Series


def test_every_series_gets_the_next_four_weeks_with_bands():
    rng = np.random.default_rng(5)
    monday = dt.date(2024, 1, 1)
    dates = [monday + dt.timedelta(weeks=i) for i in range(40)]
    wave = 3 + 40 * np.exp(-0.5 * ((np.arange(40) - 44) / 4.0) ** 2)  # rising at the end
    series = [Series(("Bakı", f"district-{d}"), "ili", "week", dates, rng.poisson(wave * (1 + d)).tolist())
              for d in range(4)]
    series.append(Series((), "measles", "week", dates, [0] * 38 + [1, 0]))  # sparse: still a forecast
    out = {(f.syndrome, f.key): f for f in forecast_weekly(series)}
    assert set(out) == {("ili", s.key) for s in series[:4]} | {("measles", ())}
    for f in out.values():
        assert f.weeks == [dt.date(2024, 10, 7) + dt.timedelta(weeks=k) for k in range(4)]
        low95, high95 = f.band(0.95)
        low50, high50 = f.band(0.5)
        assert np.all(low95 <= low50) and np.all(low50 <= f.median) and np.all(f.median <= high50)
        assert np.all(high50 <= high95) and np.all(low95 >= 0)
    rising = out[("ili", ("Bakı", "district-3"))]
    assert rising.median[0] > np.mean(series[3].counts[-8:-4])  # the wave's growth is carried on
    assert out[("measles", ())].band(0.95)[1][0] < 10  # and a quiet series stays quiet
    for f in out.values():  # a count's quantiles: whole numbers outside the median
        outside = np.delete(f.quantiles, 11, axis=1)
        assert np.array_equal(outside, np.round(outside))


def test_count_quantiles_contain_the_continuous_band_in_whole_numbers():
    from healthtwin.twin.forecasting.levels import QUANTILE_LEVELS
    from healthtwin.twin.forecasting.twin_series import count_quantiles

    continuous = np.array([np.linspace(-0.2, 4.6, len(QUANTILE_LEVELS))])
    q = count_quantiles(continuous)
    median = QUANTILE_LEVELS.index(0.5)
    assert q[0, median] == continuous[0, median]  # the median is kept
    assert np.all(q[0, :median] <= np.maximum(continuous[0, :median], 0)) and np.all(q[0, median + 1:] >= continuous[0, median + 1:])
    assert q[0, 0] == 0 and q[0, -1] == 5 and np.all(np.diff(q[0]) >= 0)  # never below 0, still ordered
    low, high = 0, len(QUANTILE_LEVELS) - 1
    assert (q[0, low] <= 5 <= q[0, high]) and not (continuous[0, low] <= 5 <= continuous[0, high])


def test_the_residents_reach_the_member_that_reads_rates():
    # The same counts in a district fifty times as populous are a far smaller rate per 100,000: given
    # the residents, the member that reads rates forecasts that district differently.
    from healthtwin.twin.forecasting.gbqr import GradientBoostedQuantiles
    rng = np.random.default_rng(7)
    monday = dt.date(2022, 1, 3)
    dates = [monday + dt.timedelta(weeks=i) for i in range(120)]
    t = np.arange(120)
    series = [Series(("Bakı", f"district-{d}"), "ili", "week", dates,
                     rng.poisson(5 + 60 * (1 + d) * np.exp(-0.5 * (((t + 9 * d) % 52 - 26) / 4.0) ** 2)).tolist())
              for d in range(6)]
    member = [GradientBoostedQuantiles("gbqr-log-wave-rate", log=True, wave=True, rate=True)]
    even = {s.key: 200_000.0 for s in series}
    uneven = even | {("Bakı", "district-3"): 10_000_000.0}
    a = {f.key: f.quantiles for f in forecast_weekly(series, models=member, residents=even)}
    b = {f.key: f.quantiles for f in forecast_weekly(series, models=member, residents=uneven)}
    assert not np.array_equal(a[("Bakı", "district-3")], b[("Bakı", "district-3")])
