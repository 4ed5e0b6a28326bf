"""The weighted interval score against cases computed by hand from its definition (Bracher et al. 2021),
and against the reference JSON's own figures on the corpus's forecasts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from healthtwin.twin.forecasting.levels import ALPHAS, LEVELS
from healthtwin.twin.forecasting.scoring import covered, wis, wis_intervals

from ..conftest import corpus


def test_the_levels_make_eleven_intervals():
    assert list(ALPHAS) == [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def test_a_point_forecast_scores_its_absolute_error():
    # Every quantile at 10, y = 14: 1/(11.5) * (0.5*4 + sum_k alpha_k/2 * (2/alpha_k)*4) = (2 + 44)/11.5 = 4.
    assert wis(np.full(23, 10.0), 14.0) == pytest.approx(4.0)
    assert wis_intervals(np.full(23, 10.0), 14.0) == pytest.approx(4.0)


def test_an_observation_inside_every_interval_scores_the_weighted_widths():
    # q_tau = 100*tau, y = 50 (the median): no penalties; width of the alpha interval is 100*(1 - alpha).
    q = 100 * LEVELS
    by_hand = sum(a / 2 * 100 * (1 - a) for a in (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)) / 11.5
    # 0.98 + 2.375 + 4.5 + 8 + 10.5 + 12 + 12.5 + 12 + 10.5 + 8 + 4.5 = 85.855
    assert by_hand == pytest.approx(85.855 / 11.5)
    assert wis(q, 50.0) == pytest.approx(by_hand)


def test_an_observation_below_everything_adds_the_penalties():
    # q_tau = 100*tau, y = 0: each interval adds (2/alpha)*l*alpha/2 = l = 100*alpha/2, the median 0.5*50.
    q = 100 * LEVELS
    widths = sum(a / 2 * 100 * (1 - a) for a in ALPHAS)
    penalties = sum(100 * a / 2 for a in ALPHAS)
    assert wis(q, 0.0) == pytest.approx((0.5 * 50 + widths + penalties) / 11.5)


def test_the_quantile_form_equals_the_interval_form():
    rng = np.random.default_rng(3)
    q = np.sort(rng.gamma(2.0, 50.0, size=(500, 23)), axis=1)
    y = rng.gamma(2.0, 50.0, size=500)
    np.testing.assert_allclose(wis(q, y), wis_intervals(q, y), rtol=1e-12)


def test_coverage_counts_the_interval_ends():
    q = 100 * LEVELS  # 50% interval [25, 75], 95% interval [2.5, 97.5]
    y = np.array([25.0, 24.9, 97.5, 98.0])
    assert covered(np.tile(q, (4, 1)), y, 0.5).tolist() == [True, False, False, False]
    assert covered(np.tile(q, (4, 1)), y, 0.95).tolist() == [True, True, True, False]


def test_the_reference_scores_are_reproduced_from_the_corpus():
    import datetime as dt

    from healthtwin.twin.forecasting import flusight as fs

    folder = corpus("flusight")
    expected = json.loads((folder / "reference-scores-2023-24.json").read_text())
    head = expected["results"]["archive_2024-04-27 (used by hub's official 2023-24 evaluation)"]
    head = head["jurisdictions_excl_US__all_horizons"]
    truth = fs.observed(fs.read_target_data(folder), "2024-05-06")  # the vintage that is the 2024-04-27 archive
    path = next(folder.glob(fs.FORECASTS_GLOB))
    for model in ("FluSight-baseline", "FluSight-ensemble"):
        forecasts = fs.read_hub_forecasts(path, model)
        q, y = [], []
        for (ref, loc, h), quantiles in forecasts.items():
            end = (dt.date.fromisoformat(ref) + dt.timedelta(weeks=h)).isoformat()
            if ("2023-10-14" <= ref <= "2024-04-27" and 0 <= h <= 3 and end <= "2024-05-01"
                    and loc not in ("US", "78") and (loc, ref) != ("25", "2023-12-09") and (loc, end) in truth):
                q.append(quantiles)
                y.append(truth[(loc, end)])
        q, y = np.array(q), np.array(y)
        assert len(y) == head[model]["n"]
        assert wis(q, y).mean() == pytest.approx(head[model]["mean_wis"], rel=1e-9)
        assert wis(np.log1p(q), np.log1p(y)).mean() == pytest.approx(head[model]["mean_wis_log1p"], rel=1e-9)
        assert covered(q, y, 0.95).mean() == pytest.approx(head[model]["coverage_95"], rel=1e-9)
