"""The statsforecast components on Spark (local mode, through statsforecast's fugue backend) give the
forecasts the in-process path gives: the same quantiles per series, and the same ensemble on the twin's
weekly series with its statsforecast component on Spark."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from healthtwin.analytics import spark as hspark
from healthtwin.twin.series import Series

reason = hspark.available()
if reason is None:
    try:
        import fugue_spark  # noqa: F401  (statsforecast reaches Spark through fugue's Spark engine)
    except ImportError:
        reason = "fugue's Spark engine is not installed (pip install 'healthtwin[spark]')"
pytestmark = pytest.mark.skipif(reason is not None, reason=f"Spark tests skipped: {reason}")

# The fugue backend declares its forecast columns float32, so the Spark path's quantiles are the in-process
# ones rounded to float32 (a relative difference of ~1e-7) and no more.
RTOL = 1e-6


@pytest.fixture(scope="module")
def session():
    s = hspark.spark_session("local[2]", app="healthtwin-forecast")
    yield s
    s.stop()


def _panel():
    rng = np.random.default_rng(7)
    t = np.arange(80)
    wave = 6 + 30 * np.exp(-0.5 * ((t - 60) / 5.0) ** 2)
    panel = {"Bakı/Xətai": rng.poisson(wave).astype(float),
             "Şəki-Zaqatala/Zaqatala": rng.poisson(3 + 0 * t).astype(float),
             "Lənkəran": rng.poisson(12 + 4 * np.sin(t / 6)).astype(float)}
    panel["Lənkəran"][[20, 21, 50]] = np.nan  # gaps are filled alike on both paths
    return panel


def test_each_statsforecast_model_forecasts_the_same_on_spark(session):
    from healthtwin.twin.forecasting import distributed, models
    panel = _panel()
    for model in (models.theta(models.LOG), models.ets()):
        here = model.forecast(panel, 4)
        there = distributed.forecast_on_spark(model, panel, 4, session, partitions=2)
        assert set(there) == set(here) == set(panel)
        for key in panel:
            assert there[key].shape == here[key].shape == (4, 23)
            np.testing.assert_allclose(there[key], here[key], rtol=RTOL, atol=1e-9, err_msg=f"{model.name} {key}")
        # a forecast that is not the in-process one is told apart: the check above has teeth
        other = models.theta(models.SQRT).forecast(panel, 4)
        assert not np.allclose(other["Bakı/Xətai"], here["Bakı/Xətai"], rtol=RTOL)


def test_the_ensemble_on_the_twins_series_is_unchanged_with_spark_components(session):
    from healthtwin.twin.forecasting import distributed
    from healthtwin.twin.forecasting.twin_series import forecast_weekly
    start = dt.date(2023, 1, 2)
    series = [Series(tuple(key.split("/")), "ili", "week", [start + dt.timedelta(weeks=i) for i in range(80)],
                     [int(v) for v in np.nan_to_num(values)]) for key, values in _panel().items()]
    here = {f.key: f for f in forecast_weekly(series)}
    there = {f.key: f for f in forecast_weekly(series, models=distributed.spark_models(session))}
    assert set(here) == set(there) == {s.key for s in series}
    for key, f in here.items():
        assert there[key].weeks == f.weeks
        np.testing.assert_allclose(there[key].quantiles, f.quantiles, rtol=RTOL, atol=1e-9, err_msg=str(key))
