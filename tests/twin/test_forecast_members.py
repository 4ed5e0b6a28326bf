"""The analog, peak-aware growth and gradient-boosted components: valid quantiles, they read the wave's phase (a series at
the height its past waves turned at is forecast to turn, one early in its rise to rise), and an analog's
future is only ever a future the panel already holds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from healthtwin.twin.forecasting import flusight as fs
from healthtwin.twin.forecasting.analog import AnalogForecast, weighted_mixture_quantiles
from healthtwin.twin.forecasting import ensemble
from healthtwin.twin.forecasting.gbqr import GradientBoostedQuantiles, features
from healthtwin.twin.forecasting.growth import WAVE_WEEKS, GrowthRegression, rates, wave_size
from healthtwin.twin.forecasting.levels import LEVELS
from healthtwin.twin.forecasting.peak import PeakAwareGrowth

SEASON = 52


def waves(weeks: int, phase: int, height: float, seed: int) -> np.ndarray:
    """Yearly epidemic waves of one height (a series' seasons look alike), Poisson noise, a floor of 5."""
    rng = np.random.default_rng(seed)
    t = np.arange(weeks) + phase
    distance = (t % SEASON) - SEASON / 2
    return rng.poisson(5 + height * np.exp(-0.5 * (distance / 4.0) ** 2)).astype(float)


def panel_at(phases: dict[str, int], weeks: int = 3 * SEASON) -> dict[str, np.ndarray]:
    return {name: waves(weeks, phase, 400.0 + 50 * i, i) for i, (name, phase) in enumerate(phases.items())}


@pytest.fixture(scope="module")
def panel():
    # The last week (index weeks-1) of "rising" stands 6 weeks before its wave's peak; of "top", at it.
    weeks = 3 * SEASON
    last = weeks - 1
    at_peak = (SEASON // 2 - last) % SEASON
    phases = {"rising": (at_peak - 6) % SEASON, "top": at_peak}
    phases.update({f"other{i}": (7 * i) % SEASON for i in range(12)})
    return panel_at(phases)


MEMBERS = [AnalogForecast(), PeakAwareGrowth(), GradientBoostedQuantiles(),
           GradientBoostedQuantiles("gbqr-log-wave", log=True, wave=True),
           GradientBoostedQuantiles("gbqr-log-wave-rate", log=True, wave=True, rate=True),
           GrowthRegression("growth-qr-relative-pooled-rate", relative=True, pooled=True, rate=True),
           GrowthRegression("growth-qr-relative-trend-wave", relative=True, trend=True, wave=True)]


@pytest.mark.parametrize("model", MEMBERS, ids=lambda m: m.name)
def test_members_give_valid_quantiles_and_read_the_phase(model, panel):
    out = model.forecast(panel, 4)
    assert set(out) == set(panel)
    for q in out.values():
        assert q.shape == (4, len(LEVELS))
        assert np.all(q >= 0) and np.all(np.diff(q, axis=1) >= 0)
    rising, top = panel["rising"][-1], panel["top"][-1]
    assert out["rising"][2, 11] > 1.3 * rising  # three weeks on, still climbing towards the peak
    assert out["top"][2, 11] < 0.9 * top  # three weeks after the peak, falling as every past wave did
    assert out["top"][2, 1] < out["top"][2, 11] < out["top"][2, 21]


MEMBERS = [AnalogForecast(), PeakAwareGrowth(), GradientBoostedQuantiles(),
           GradientBoostedQuantiles("gbqr-log-wave", log=True, wave=True),
           GradientBoostedQuantiles("gbqr-log-wave-rate", log=True, wave=True, rate=True),
           GrowthRegression("growth-qr-relative-trend-wave", relative=True, trend=True, wave=True)]


@pytest.mark.parametrize("model", MEMBERS, ids=lambda m: m.name)
def test_a_member_sees_no_data_after_the_reference_date(model, panel):
    # The target file as the hub writes it; weeks after the reference date are then overwritten with
    # absurd values: the forecast made through known_on must not move (nothing after the date is read).
    dates = pd.date_range("2021-01-02", periods=len(panel["top"]), freq="7D")
    frame = pd.DataFrame([(d.date().isoformat(), k, v) for k, v in panel.items() for d, v in zip(dates, v)],
                         columns=["date", "location", "value"])
    ref = (dates[-12] + pd.Timedelta(days=7)).date()
    before = model.forecast(fs.panel_of(fs.known_on(frame, ref)), 4)
    later = frame["date"] >= ref.isoformat()
    frame.loc[later, "value"] = 1e6
    after = model.forecast(fs.panel_of(fs.known_on(frame, ref)), 4)
    for k in panel:
        np.testing.assert_array_equal(before[k], after[k])
    with pytest.raises(ValueError, match="too little history"):
        model.forecast({k: v[:8] for k, v in panel.items()}, 3)


def test_the_mixture_quantiles_are_those_of_the_normal_mixture():
    # One sample: the quantiles of a normal; two equal-weighted far apart: the median lies between them.
    one = weighted_mixture_quantiles(np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]]), np.array([1.0]))[0]
    from scipy.stats import norm
    # Inside the outermost of the JITTER points (levels 0.025-0.975) the normal's quantiles to 0.1 sd (the
    # even sample is a staircase); the 1% and 99% levels are clamped at those points (-2.05, 2.05 sd),
    # which the many neighbours of a real forecast widen.
    np.testing.assert_allclose(one[1:-1], norm.ppf(LEVELS[1:-1]), atol=0.1)
    assert -2.4 < one[0] < -1.9 and 1.9 < one[-1] < 2.4
    two = weighted_mixture_quantiles(np.array([[-10.0, 10.0]]), np.array([[1.0, 1.0]]), np.array([1.0]))[0]
    assert abs(two[11]) < 1.0 and two[1] < -11 and two[21] > 11


def test_the_boosted_quantiles_are_deterministic_and_their_features_causal(panel):
    # Seeded, deterministic LightGBM: the same panel, the same forecast to the last bit.
    model = GradientBoostedQuantiles()
    first, second = model.forecast(panel, 4), model.forecast(panel, 4)
    for k in panel:
        np.testing.assert_array_equal(first[k], second[k])
    # A week's features read that week and the ones before it only: changing every later week moves none.
    x = np.sqrt(np.sqrt(np.array([panel[k] for k in sorted(panel)])))
    scale = np.percentile(x, 95, axis=1)
    week = 100
    later = x.copy()
    later[:, week + 1:] *= 3.0
    before, after = features(x / scale[:, None], scale), features(later / scale[:, None], scale)
    np.testing.assert_array_equal(before[:, : week + 1], after[:, : week + 1])
    assert not np.allclose(before[:, week + 1:], after[:, week + 1:], equal_nan=True)


def test_the_wave_size_stands_against_the_largest_wave_of_two_years(panel):
    # Counts of the last WAVE_WEEKS weeks against the largest such total of the past 104: 0 for a
    # wave as large as any before it, below 0 while it is smaller, by the log of the ratio of the totals.
    weeks = 130
    counts = np.zeros((1, weeks))
    counts[0, 10:26] = 100.0  # a first wave of 1,600 cases
    counts[0, 70:86] = 25.0  # a second a quarter its size
    size = wave_size(counts)[0]
    assert np.all(np.isnan(size[: WAVE_WEEKS - 1]))
    assert size[25] == 0.0  # the first wave, at its end, is the largest yet
    np.testing.assert_allclose(size[85], np.log1p(400.0) - np.log1p(1600.0))
    assert size[60] < size[85] < 0  # between the waves, nothing this year against last year's wave
    # Causal as the other features: later weeks move no earlier week's value.
    later = counts.copy()
    later[0, 90:] = 1e4
    np.testing.assert_array_equal(wave_size(later)[0, :90], size[:90])
    x = np.log1p(np.array([panel[k] for k in sorted(panel)]))
    scale = np.percentile(x, 95, axis=1)
    raw = np.array([panel[k] for k in sorted(panel)])
    assert features(x / scale[:, None], scale, raw).shape[-1] == features(x / scale[:, None], scale).shape[-1] + 1


def test_the_rates_are_per_100000_residents_and_causal():
    # log(1 + admissions per 100,000) of the week and of the last WAVE_WEEKS weeks; NaN where the
    # population is unknown (the trees then split on the other features).
    weeks = 40
    counts = np.zeros((2, weeks))
    counts[:, 20:] = 50.0
    per_100k = np.array([100_000 / 1_000_000, np.nan])  # a place of a million, one of unknown size
    weekly, total = rates(counts, per_100k)
    np.testing.assert_allclose(weekly[0, 25], np.log1p(5.0))
    np.testing.assert_allclose(total[0, 35], np.log1p(16 * 5.0))
    np.testing.assert_allclose(total[0, 27], np.log1p(8 * 5.0))  # 8 of the 16 weeks in the wave
    assert np.all(np.isnan(total[0, : WAVE_WEEKS - 1])) and np.all(np.isnan(weekly[1]))
    later = counts.copy()
    later[:, 30:] = 1e4
    np.testing.assert_array_equal(rates(later, per_100k)[1][0, :30], total[0, :30])


def test_the_ensemble_hands_the_population_to_the_member_that_reads_it(panel):
    # The same counts in a place 50 times as populous are a far smaller rate: the member that reads the
    # rates forecasts 'top' differently, the one that does not is unmoved, and the ensemble passes it on.
    population = {k: 1_000_000.0 for k in panel}
    bigger = dict(population, top=50_000_000.0)
    for rate, plain in [(GradientBoostedQuantiles("gbqr-log-wave-rate", log=True, wave=True, rate=True),
                         GradientBoostedQuantiles("gbqr-log-wave", log=True, wave=True)),
                        (GrowthRegression("growth-qr-relative-pooled-rate", relative=True, pooled=True, rate=True),
                         GrowthRegression("growth-qr-relative-pooled", relative=True, pooled=True))]:
        assert rate.uses_population and not getattr(plain, "uses_population", False)
        a, b = rate.forecast(panel, 4, population=population), rate.forecast(panel, 4, population=bigger)
        assert not np.array_equal(a["top"], b["top"])
        _, components = ensemble.forecast(panel, 4, [rate, plain], population=bigger)
        np.testing.assert_array_equal(components[rate.name]["top"], b["top"])
        np.testing.assert_array_equal(components[plain.name]["top"], plain.forecast(panel, 4)["top"])
    # The regression needs every series' residents (its rows must all have the predictors): without
    # them it is the regression without the rates.
    np.testing.assert_array_equal(rate.forecast(panel, 4)["top"], plain.forecast(panel, 4)["top"])
