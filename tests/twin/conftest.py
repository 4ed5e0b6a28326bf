"""The generated and materialised population the twin's tests share (generated once per session: ~20 s)."""
from __future__ import annotations

import datetime as dt

import orjson
import pytest

from healthtwin.analytics.indicators import indicator_views
from healthtwin.analytics.materialize import Materializer, NdjsonSource
from healthtwin.analytics.refresh import refresh_all

from .test_series import Reference

PATIENTS = 3000
SEED = 2  # plants the measles cluster in Sumqayıt and the crunch at Şəki's hospital: large enough to see


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    from healthtwin.population.generator import generate
    root = tmp_path_factory.mktemp("twin")
    generate(root / "pop", PATIENTS, SEED, end_date=dt.date(2024, 12, 31))
    mat = Materializer(NdjsonSource(root / "pop"), root / "out", indicator_views(), parquet=False)
    report = refresh_all(mat)
    assert not report.failed
    truth = {n: orjson.loads((root / "pop" / "ground_truth" / f"{n}.json").read_bytes())
             for n in ("influenza", "measles", "hospital_crunch")}
    yield mat, Reference(root / "pop"), truth
    mat.close()


