"""Stored forecasts: the warm run fits every syndrome x level once and stores it; the route answers from the
stored fit while the series are unchanged and refits when they are not; `healthtwin forecast warm` runs it
from the command line and refuses bad input clearly."""
from __future__ import annotations

import shutil

import orjson
import pytest

from healthtwin.request import Caller
from healthtwin.twin.forecasting import stored


@pytest.fixture
def folder(world):
    mat, _, _ = world
    shutil.rmtree(mat.data_dir / stored.FOLDER, ignore_errors=True)  # the session's other tests store fits too
    yield mat.data_dir
    shutil.rmtree(mat.data_dir / stored.FOLDER, ignore_errors=True)


def _forecasts(world, store, tmp_path):
    from healthtwin.api.services import Services
    from healthtwin.security.policy import SmartPolicy
    from healthtwin.twin.forecasting.web import Forecasts
    mat, _, _ = world
    services = Services.build(store, None, None, tmp_path / "data")
    services.policy = SmartPolicy(store, services.registry, services.parser)
    return Forecasts(services, mat.data_dir, identify=lambda request: Caller(subject="a", kind="person",
                                                                              roles=frozenset({"analyst"})))


def test_the_warm_run_stores_each_fit_once_and_the_route_answers_from_it(world, folder, store, tmp_path):
    mat, _, _ = world
    report = stored.warm(folder, ["measles"], ["national", "region"], con=mat.con)
    assert report.fitted == 2 and report.current == 0 and report.series > 0 and not report.failed
    assert stored.path_for(folder, "measles", "region").exists()
    again = stored.warm(folder, ["measles"], ["national", "region"], con=mat.con)
    assert again.fitted == 0 and again.current == 2  # unchanged series: nothing fitted
    # the route reads the stored fit: a value written into the file is what it answers
    path = stored.path_for(folder, "measles", "region")
    body = orjson.loads(path.read_bytes())
    fitted = body["series"][0]["forecast"][0]["quantiles"]["0.5"]
    body["series"][0]["forecast"][0]["quantiles"]["0.5"] = 12345.6
    path.write_bytes(orjson.dumps(body))
    route = _forecasts(world, store, tmp_path)
    answer = route.answer({"syndrome": "measles", "level": "region", "weeks": 12, "region": set()})
    assert answer["series"][0]["forecast"][0]["quantiles"]["0.5"] == 12345.6
    # a fit made from other series (its digest differs) is not answered: the route fits and stores anew
    body["digest"] = "0" * 64
    path.write_bytes(orjson.dumps(body))
    fresh = _forecasts(world, store, tmp_path).answer({"syndrome": "measles", "level": "region", "weeks": 12,
                                                       "region": set()})
    assert fresh["series"][0]["forecast"][0]["quantiles"]["0.5"] == fitted
    assert orjson.loads(path.read_bytes())["digest"] != "0" * 64


def test_the_digest_follows_the_series_and_the_code():
    import datetime as dt
    from dataclasses import dataclass

    @dataclass
    class S:
        key: tuple[str, ...]
        dates: list[dt.date]
        counts: list[int]
    a = [S(("Bakı",), [dt.date(2024, 1, 1)], [1, 2, 3])]
    b = [S(("Bakı",), [dt.date(2024, 1, 1)], [1, 2, 4])]
    code = stored.code_digest()
    assert stored.series_digest(a, code) == stored.series_digest(list(a), code)
    assert stored.series_digest(a, code) != stored.series_digest(b, code)
    assert stored.series_digest(a, code) != stored.series_digest(a, "other code")
    # The boosted member reads rates per 100,000: other residents, another fit.
    assert stored.series_digest(a, code, {("Bakı",): 2.3e6}) != stored.series_digest(a, code, {("Bakı",): 2.4e6})


def test_the_command_warms_and_refuses_bad_input(world, folder, capsys):
    from healthtwin.cli import main
    mat, _, _ = world
    mat.checkpoint()
    code = main(["forecast", "warm", "--analytics", str(folder), "--syndromes", "measles", "--levels", "national"])
    out = orjson.loads(capsys.readouterr().out)
    assert code == 0 and out["fitted"] + out["current"] == 1
    assert main(["forecast", "warm", "--analytics", str(folder), "--levels", "county"]) != 0
    assert "--levels" in capsys.readouterr().err
    assert main(["forecast", "warm", "--analytics", str(folder), "--syndromes", "nosuch"]) != 0
    assert "nosuch" in capsys.readouterr().err
    assert main(["forecast", "warm", "--analytics", str(folder / "missing")]) != 0
    assert "analytics" in capsys.readouterr().err
