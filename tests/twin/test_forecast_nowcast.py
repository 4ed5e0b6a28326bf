"""The backfill nowcast and the spread calibration of the FluSight method: what they learn, and that they
learn it only from what was known on the reference date."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from healthtwin.twin.forecasting import calibration, flusight as fs, nowcast
from healthtwin.twin.forecasting.levels import LEVELS, MEDIAN

from ..conftest import corpus

FIRST_WEEK = dt.date(2023, 1, 7)  # a Saturday


def _vintages(n_vintages: int, first_report: float, locations: int = 30, seed: int = 0) -> pd.DataFrame:
    """Weekly vintages of smooth counts; each vintage reports its newest week at `first_report` of the
    truth and every older week complete, so the one revision to learn is lag 0 by 1 / first_report."""
    rng = np.random.default_rng(seed)
    weeks = [FIRST_WEEK + dt.timedelta(weeks=i) for i in range(60)]
    truth = {f"{i:02d}": 200 + 100 * np.sin(np.arange(60) / 8 + rng.uniform(0, 6)) for i in range(locations)}
    rows = []
    for v in range(n_vintages):
        last = 40 + v  # the newest week this vintage holds
        as_of = weeks[last] + dt.timedelta(days=4)  # published the Wednesday after
        for loc, values in truth.items():
            for w in range(last + 1):
                value = values[w] * (first_report if w == last else 1.0)
                rows.append((as_of.isoformat(), weeks[w].isoformat(), loc, round(value)))
    return pd.DataFrame(rows, columns=["as_of", "date", "location", "value"])


def test_the_revision_of_the_newest_week_is_learnt_and_corrected():
    frame = _vintages(8, first_report=0.8)
    reference = dt.date.fromisoformat(frame["as_of"].max()) + dt.timedelta(days=3)
    assert reference.weekday() == 5
    snapshot, revision = nowcast.known_and_corrected(frame, reference)
    assert revision.pairs == 6  # the last WINDOW pairs of the eight vintages
    assert abs(revision.cumulative[0] - 1 / 0.8) < 0.01
    assert np.allclose(revision.cumulative[1:], 1.0, atol=1e-3)
    raw = fs.known_on(frame, reference)
    for loc, series in snapshot.counts.items():
        assert abs(series.iloc[-1] / raw.counts[loc].iloc[-1] - revision.cumulative[0]) < 1e-9
        assert np.allclose(series.iloc[:-1], raw.counts[loc].iloc[:-1])


def test_the_nowcast_reads_no_vintage_after_the_reference_date():
    frame = _vintages(8, first_report=0.8)
    reference = dt.date.fromisoformat(frame["as_of"].max()) + dt.timedelta(days=3)
    before = nowcast.factors(frame, reference)
    # a later vintage revising everything by half must change nothing known on the reference date
    later = frame[frame["as_of"] == frame["as_of"].max()].copy()
    later["as_of"] = (reference + dt.timedelta(days=4)).isoformat()
    later["value"] = later["value"] * 0.5
    after = nowcast.factors(pd.concat([frame, later]), reference)
    assert np.array_equal(before.cumulative, after.cumulative) and before.newest == after.newest
    # and from the later date on, it is read
    assert nowcast.factors(pd.concat([frame, later]), reference + dt.timedelta(weeks=1)).newest == later["as_of"].iloc[0]


def test_without_vintages_nothing_is_corrected():
    final = _vintages(1, first_report=1.0).drop(columns="as_of")
    reference = FIRST_WEEK + dt.timedelta(weeks=42)
    snapshot, revision = nowcast.known_and_corrected(final, reference)
    assert revision.pairs == 0 and np.all(revision.cumulative == 1.0)
    raw = fs.known_on(final, reference)
    assert all(np.array_equal(snapshot.counts[k].to_numpy(), raw.counts[k].to_numpy()) for k in raw.counts)


def test_fit_factors_recovers_a_known_under_dispersion():
    # forecasts whose log-scale spread is two thirds of the truth's: the fitted factors must widen by 1.5
    rng = np.random.default_rng(1)
    from scipy.stats import norm
    n = 4000
    centre = rng.uniform(2, 6, n)
    quantiles = np.expm1(centre[:, None] + 0.2 * norm.ppf(LEVELS)[None, :])
    observed = np.expm1(centre + 0.3 * rng.standard_normal(n))
    factors = calibration.fit_factors(quantiles, observed)
    assert factors[MEDIAN] == 1.0
    tails = np.r_[factors[:MEDIAN - 2], factors[MEDIAN + 3:]]  # near the median the distance is tiny
    assert np.all(np.abs(tails - 1.5) <= 0.15), factors
    assert np.allclose(calibration.scale(quantiles[:3], np.ones(23)), quantiles[:3])


def test_the_calibrated_forecast_uses_only_what_the_reference_date_knew():
    folder = corpus("flusight")
    vintages = next(folder.glob("target-hospital-admissions_vintages_*.csv*"))
    rows = pd.read_csv(vintages, dtype={"location": str})
    rows = rows[rows["location"].isin(["06", "36", "48", "US"]) & (rows["as_of"] <= "2024-01-31")]
    reference = dt.date(2024, 1, 6)
    method = calibration.Forecaster(rows, past_weeks=2, min_errors=1)
    quantiles, raw, factors = method.forecast(reference)
    assert raw.snapshot.as_of <= reference and raw.revision.newest <= reference.isoformat()
    assert sorted(method.cache) == ["2023-12-23", "2023-12-30", "2024-01-06"]  # the past weeks re-forecast
    # every later vintage dropped: the same forecast
    known = rows[rows["as_of"] <= reference.isoformat()]
    again, _, factors_again = calibration.Forecaster(known, past_weeks=2, min_errors=1).forecast(reference)
    assert not np.all(factors[:, 1] == calibration.ensemble.SPREAD)  # learnt from the past weeks
    assert np.array_equal(factors, factors_again)
    assert all(np.array_equal(quantiles[k], again[k]) for k in quantiles)


def test_the_store_reuses_a_date_only_for_the_same_data(tmp_path):
    frame = _vintages(8, first_report=0.8, locations=20)
    reference = dt.date.fromisoformat(frame["as_of"].max()) + dt.timedelta(days=3)
    first, _, _ = calibration.Forecaster(frame, past_weeks=2, store=tmp_path).forecast(reference)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 3  # the date and the two past ones
    again, _, _ = calibration.Forecaster(frame, past_weeks=2, store=tmp_path).forecast(reference)
    assert sorted(tmp_path.iterdir()) == files and all(np.array_equal(first[k], again[k]) for k in first)
    changed = frame.copy()
    changed.loc[changed["location"] == "00", "value"] += 7  # other counts: nothing reused
    calibration.Forecaster(changed, past_weeks=2, store=tmp_path).forecast(reference)
    assert len(list(tmp_path.iterdir())) == 6
