"""The series' tables are the same over the keyed analytics store (pseudonymous keys, birth dates coded to
the month) as over the clear one: the bed census is by hospital name, a case's age is its age on 1 July."""
from __future__ import annotations

import datetime as dt

from healthtwin.analytics.indicators import indicator_views, load_indicators
from healthtwin.analytics.materialize import Materializer, StoreSource
from healthtwin.analytics.refresh import refresh_all

from ..conftest import make_store


def _tables(folder, source) -> dict[str, list[tuple]]:
    mat = Materializer(source, folder, indicator_views(), parquet=False)
    try:
        assert not refresh_all(mat, full=True).failed
        inds = load_indicators()
        names = {inds[n].table(p) for n in ("syndrome_cases", "bed_occupancy") for p in ("num", "den")}
        return {t: sorted(mat.con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in names}
    finally:
        mat.close()


def test_series_tables_do_not_depend_on_the_keys(tmp_path) -> None:
    from healthtwin.api.services import Services
    from healthtwin.loading import load
    from healthtwin.population.generator import generate
    generate(tmp_path / "pop", 60, 4, end_date=dt.date(2024, 12, 31))
    store = make_store("sqlite", tmp_path)
    try:
        load(Services.build(store), [str(tmp_path / "pop")], workers=1)
        keyed = _tables(tmp_path / "keyed", StoreSource(store))
        clear = _tables(tmp_path / "clear", StoreSource(store, keys=False))
    finally:
        store.close()
    assert all(keyed.values()) and keyed == clear
