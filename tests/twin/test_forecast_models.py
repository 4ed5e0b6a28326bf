"""Forecasts are valid quantiles and the hub's CSV; the flat baseline follows its definition and the
corpus's FluSight-baseline; forecasts use only the vintage known on the reference date."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from healthtwin.twin.forecasting import ensemble, flusight as fs
from healthtwin.twin.forecasting.baseline import flat_baseline
from healthtwin.twin.forecasting.levels import LEVELS, QUANTILE_LEVELS

from ..conftest import corpus


def epidemic(weeks: int, peak: int, height: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(weeks)
    return rng.poisson(5 + height * np.exp(-0.5 * ((t - peak) / 5.0) ** 2)).astype(float)


def test_the_ensemble_gives_monotone_non_negative_quantiles():
    panel = {f"s{i}": epidemic(70, 40 + 3 * i, 200.0 * (i + 1), i) for i in range(4)}
    combined, components = ensemble.forecast(panel, 4)
    assert set(components) == set(ensemble.WEIGHTS)
    for q in [*combined.values(), *(c for part in components.values() for c in part.values())]:
        assert q.shape == (4, 23)
        assert np.all(q >= 0)
        assert np.all(np.diff(q, axis=1) >= 0)
    # The median of a rising series is not below where it stands (the models follow the growth).
    rising = epidemic(36, 40, 500.0, 9)
    assert ensemble.forecast({"r": rising}, 1)[0]["r"][0, 11] > np.median(rising[-8:])


def test_the_components_are_averaged_on_the_log_scale_with_their_weights():
    """The ensemble's quantile at each level is the weighted mean of log(1 + q) over the components that
    forecast the series, back-transformed: a component far above the others pulls by its ratio, not its count."""
    low = np.tile(np.linspace(1.0, 30.0, 23), (2, 1))
    high = low * 20.0
    both = {"a": {"s": low, "t": low}, "b": {"s": high}}
    out = ensemble.average(both, {"a": 3.0, "b": 1.0})
    expected = np.expm1(0.75 * np.log1p(low) + 0.25 * np.log1p(high))
    assert np.allclose(out["s"], expected)
    assert np.all(out["s"] < 0.75 * low + 0.25 * high)  # below the counts' mean, which the upper tail drags up
    assert np.allclose(out["t"], low)  # a series only one component forecasts is that component's
    counts = ensemble.average(both, {"a": 3.0, "b": 1.0}, log_scale=False)
    assert np.allclose(counts["s"], 0.75 * low + 0.25 * high)


def test_the_hub_csv_has_the_hub_columns_and_dates(tmp_path):
    ref = dt.date(2024, 1, 6)
    quantiles = {"01": np.tile(np.arange(23.0), (4, 1)), "US": np.tile(np.arange(23.0) * 10, (4, 1))}
    path = tmp_path / "f.csv"
    fs.write_hub_csv(fs.hub_rows(ref, quantiles), path)
    frame = pd.read_csv(path, dtype={"location": str})
    assert list(frame.columns) == ["reference_date", "target", "horizon", "target_end_date", "location",
                                   "output_type", "output_type_id", "value"]
    assert len(frame) == 2 * 4 * 23
    assert set(frame["target"]) == {"wk inc flu hosp"} and set(frame["output_type"]) == {"quantile"}
    assert sorted(set(frame["output_type_id"])) == list(QUANTILE_LEVELS)
    ends = frame.groupby("horizon")["target_end_date"].first().to_dict()
    assert ends == {0: "2024-01-06", 1: "2024-01-13", 2: "2024-01-20", 3: "2024-01-27"}
    back = fs.read_hub_forecasts(path)
    np.testing.assert_array_equal(back[("2024-01-06", "US", 2)], np.arange(23.0) * 10)


def test_the_flat_baseline_one_week_ahead_is_the_last_value_plus_the_symmetrised_changes():
    y = np.array([10.0, 14, 11, 20, 18])
    changes = np.array([4.0, -3, 9, -2, -4, 3, -9, 2])
    q = flat_baseline(y, 3, simulations=200_001)
    np.testing.assert_allclose(q[0], np.maximum(0, 18 + np.quantile(changes, LEVELS)), atol=1e-3)
    assert np.all(q[:, 11] == pytest.approx(18.0))  # a flat median
    assert np.all(q[2, 1:] - q[2, :-1] >= 0) and q[2, -1] - q[2, 0] > q[0, -1] - q[0, 0]  # spreads with horizon
    assert np.all(flat_baseline(np.array([3.0, 0, 9, 1]), 4) >= 0)  # cut at zero


def test_the_flat_baseline_reproduces_the_corpus_flusight_baseline():
    folder = corpus("flusight")
    frame = fs.read_target_data(folder)
    theirs = fs.read_hub_forecasts(next(folder.glob(fs.FORECASTS_GLOB)), "FluSight-baseline")
    ref = dt.date(2024, 1, 6)
    snapshot = fs.known_on(frame, ref)
    assert snapshot.as_of == dt.date(2024, 1, 3)
    differences = []
    for loc, values in fs.panel_of(snapshot).items():
        mine = flat_baseline(values, 4)
        for h in range(4):
            assert mine[h, 11] == theirs[(ref.isoformat(), loc, h)][11]  # the same last value: the same vintage
            differences.append(np.abs(mine[h] - theirs[(ref.isoformat(), loc, h)]).max()
                               / max(1.0, mine[h, 11]))
    assert np.median(differences) < 0.02 and np.quantile(differences, 0.9) < 0.1  # Monte Carlo noise only


def write_vintages(path, rows):
    pd.DataFrame(rows, columns=["as_of", "date", "location", "location_name", "value", "weekly_rate"]) \
        .to_csv(path, index=False)


def vintage_rows(as_of: str, last: dt.date, scale: float) -> list[tuple]:
    rows = []
    for loc, height in (("01", 300.0), ("02", 40.0)):
        values = epidemic(60, 45, height, int(height))
        for i, v in enumerate(values):
            date = last - dt.timedelta(weeks=len(values) - 1 - i)
            rows.append((as_of, date.isoformat(), loc, loc, float(v) * scale, float(v) * scale / 10))
    return rows


def test_a_forecast_does_not_change_when_later_vintages_are_appended(tmp_path):
    ref = dt.date(2024, 1, 6)
    early = vintage_rows("2024-01-03", dt.date(2023, 12, 30), 1.0)
    write_vintages(tmp_path / "target-hospital-admissions_vintages_x.csv", early)
    before = fs.known_on(fs.read_target_data(tmp_path), ref)
    first, _ = ensemble.forecast(fs.panel_of(before), 4)
    # A later vintage revises every week (by 30%) and adds the week ending on the reference date.
    later = vintage_rows("2024-01-10", dt.date(2024, 1, 6), 1.3)
    write_vintages(tmp_path / "target-hospital-admissions_vintages_x.csv", early + later)
    frame = fs.read_target_data(tmp_path)
    after = fs.known_on(frame, ref)
    assert after.as_of == dt.date(2024, 1, 3)
    second, _ = ensemble.forecast(fs.panel_of(after), 4)
    for loc in first:
        np.testing.assert_array_equal(first[loc], second[loc])
    # The next week's forecast does see the revision: the check above is not vacuous.
    nxt = fs.known_on(frame, ref + dt.timedelta(weeks=1))
    assert nxt.as_of == dt.date(2024, 1, 10)
    assert not np.array_equal(fs.panel_of(nxt)["01"][:-1], fs.panel_of(after)["01"])


def test_without_vintages_only_weeks_before_the_reference_date_are_read(tmp_path):
    rows = [r[1:] for r in vintage_rows("-", dt.date(2024, 1, 27), 1.0)]
    pd.DataFrame(rows, columns=["date", "location", "location_name", "value", "weekly_rate"]) \
        .to_csv(tmp_path / fs.TARGET_FILE, index=False)
    snapshot = fs.known_on(fs.read_target_data(tmp_path), dt.date(2024, 1, 6))
    assert snapshot.as_of is None
    assert all(s.index.max() == pd.Timestamp("2023-12-30") for s in snapshot.counts.values())
    assert snapshot.population["01"] == pytest.approx(1_000_000)


def test_the_statsforecast_components_give_valid_quantiles():
    from healthtwin.twin.forecasting.models import SQRT, arima, ets, theta

    panel = {f"s{i}": epidemic(60, 30 + 5 * i, 150.0, 20 + i) for i in range(3)}
    for model in (ets(), ets(SQRT), theta(), arima()):
        out = model.forecast(panel, 3)
        assert set(out) == set(panel)
        for q in out.values():
            assert q.shape == (3, 23) and np.all(q >= 0) and np.all(np.diff(q, axis=1) >= 0)
        last = {k: v[-1] for k, v in panel.items()}
        assert all(out[k][0, 0] <= last[k] * 3 + 10 and out[k][0, -1] >= last[k] / 3 for k in panel), model.name


def test_widening_keeps_the_median_and_spreads_the_rest():
    q = np.sort(np.random.default_rng(1).gamma(3.0, 20.0, size=(2, 23)), axis=1)
    wide = ensemble.widen(q, 1.25)
    np.testing.assert_allclose(wide[:, 11], q[:, 11])
    assert np.all(wide[:, 0] <= q[:, 0]) and np.all(wide[:, -1] >= q[:, -1])
    np.testing.assert_allclose(np.log1p(wide[:, -1]) - np.log1p(wide[:, 11]),
                               1.25 * (np.log1p(q[:, -1]) - np.log1p(q[:, 11])))
