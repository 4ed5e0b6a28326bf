"""Materialization from the store (SQLite and PostgreSQL): full, incremental with updates and deletes,
all-or-nothing per view, Parquet output, the schedule and the command line."""
from __future__ import annotations

import datetime as dt

import time
from collections import Counter
from pathlib import Path

import duckdb
import orjson
import pytest

from healthtwin.analytics.indicators import indicator_views
from healthtwin.analytics.materialize import Materializer, StoreSource, parquet_layout, parquet_relation
from healthtwin.analytics.refresh import Scheduler, refresh_all, views_main
from healthtwin.analytics.views import run_view

POP: dict[str, Path] = {}


@pytest.fixture
def loaded(store, tmp_path_factory):
    from healthtwin.api.services import Services
    from healthtwin.loading import load
    from healthtwin.population.generator import generate
    if "dir" not in POP:
        POP["dir"] = tmp_path_factory.mktemp("pop") / "p"
        generate(POP["dir"], 60, 3, end_date=dt.date(2024, 12, 31))
    services = Services.build(store)
    load(services, [str(POP["dir"])], workers=1)
    return services


def live(store, rtype: str) -> list[dict]:
    return [orjson.loads(store.open_content(rtype, i, c)) for (i, c) in store.query(
        "SELECT id, content FROM resources WHERE type = ? AND deleted = 0", [rtype])]


def viewed(store, rtype: str) -> list[dict]:
    """The store's current resources as the views read them (under the analytics keys of a protected store)."""
    source = StoreSource(store)
    return [orjson.loads(source._content(rtype, i, c)) for (i, c) in store.query(
        "SELECT id, content FROM resources WHERE type = ? AND deleted = 0", [rtype])]


def key(store, rtype: str, rid: str) -> str:
    """The analytics key of `rtype/rid` (what the views hold instead of the id)."""
    return StoreSource(store).keys.key(rtype, rid)


def assert_matches_python(mat: Materializer, store) -> None:
    """Every table equals the Python engine run over the store's current resources."""
    for name, view in mat.views.items():
        cols = [c.name for c in mat.compiled[name].columns]
        want = Counter(tuple(r[c] for c in cols) for r in run_view(view, viewed(store, view["resource"])))
        got = Counter(mat.con.execute(f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{name}"').fetchall())
        assert got == want, name


def test_full_then_incremental(loaded, tmp_path) -> None:
    store = loaded.store
    mat = Materializer(StoreSource(store, overlap=0.0), tmp_path, indicator_views())
    report = mat.refresh()
    assert {v.mode for v in report.views} == {"full"} and not report.failed
    assert_matches_python(mat, store)
    # Nothing changed: nothing is read.
    report = mat.refresh()
    assert {v.mode for v in report.views} == {"unchanged"}

    patients = sorted(r["id"] for r in live(store, "Patient"))
    labs = [r for r in live(store, "Observation")
            if any(c.get("code") == "laboratory" for cat in r.get("category", []) for c in cat["coding"])]
    encounters = sorted(r["id"] for r in live(store, "Encounter"))
    with store.transaction() as tx:
        for pid in patients[:3]:  # updated
            p = next(r for r in live(store, "Patient") if r["id"] == pid)
            p["gender"] = "other"
            tx.update("Patient", pid, p)
        lab = labs[0]  # no longer a laboratory result: its row must leave lab_result
        lab["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                        "code": "vital-signs"}]}]
        tx.update("Observation", lab["id"], lab)
        for eid in encounters[:4]:  # deleted
            tx.delete("Encounter", eid)
        tx.create("Patient", {"resourceType": "Patient", "gender": "female", "birthDate": "2020-01-01"}, "new-1")
    report = mat.refresh()
    modes = {v.name: v for v in report.views}
    assert modes["patient"].mode == "incremental" and modes["patient"].removed == 4
    assert modes["encounter"].removed == 4 and modes["encounter"].read == 0
    assert modes["lab_result"].removed == 1
    assert modes["claim"].mode == "unchanged"
    assert_matches_python(mat, store)
    assert mat.con.execute("SELECT count(*) FROM encounter WHERE id IN (SELECT unnest(?))",
                           [encounters[:4]]).fetchone()[0] == 0
    # Parquet follows the table: a delta file for each view whose rows changed, none for the others (death_cause
    # read the changed Observation too, but none of its rows changed).
    written = {v.name: v.parquet.split("-")[0] for v in report.views if v.parquet}
    assert written == {"patient": "delta", "encounter": "delta", "lab_result": "delta"}
    assert_parquet_matches_table(mat)
    mat.close()


def parquet_rows(mat: Materializer, name: str) -> Counter:
    cols = ", ".join(f'"{c.name}"' for c in mat.compiled[name].columns)
    return Counter(duckdb.connect().execute(f"SELECT {cols} FROM {parquet_relation(mat.parquet_folder(name))} AS t")
                   .fetchall())


def table_rows(mat: Materializer, name: str) -> Counter:
    cols = ", ".join(f'"{c.name}"' for c in mat.compiled[name].columns)
    return Counter(mat.con.execute(f'SELECT {cols} FROM "{name}"').fetchall())


def assert_parquet_matches_table(mat: Materializer) -> None:
    for name in mat.views:
        assert parquet_rows(mat, name) == table_rows(mat, name), name
        # The row count kept in the state (counted, not re-scanned, on incremental refreshes) is exact.
        assert mat.state()[name][2] == mat._count(name), name


def mutate(store, rng, n: int, tag: str) -> None:
    """Updates, deletes or re-creates `n` random resources of the viewed types; some leave their view."""
    types = sorted({v["resource"] for v in indicator_views()})
    rows = store.query(f"SELECT type, id, deleted FROM resources WHERE type IN ({','.join('?' * len(types))}) "
                       "ORDER BY type, id", types)
    with store.transaction() as tx:
        for rtype, rid, deleted in rng.sample(rows, n):
            if deleted:  # a deleted resource comes back under the same id
                tx.update(rtype, rid, {"resourceType": rtype, "id": rid, **(
                    {"gender": "male", "birthDate": "1990-05-05"} if rtype == "Patient" else {})})
                continue
            roll = rng.random()
            if roll < 0.25:
                tx.delete(rtype, rid)
                continue
            res = orjson.loads(store.read(rtype, rid).content)
            res.setdefault("meta", {})["tag"] = [{"system": "urn:test", "code": tag}]
            if rtype == "Patient":
                res["gender"] = rng.choice(["male", "female", "other"])
            elif rtype == "Observation" and roll < 0.4:  # may leave lab_result / death_cause
                res["category"] = [{"coding": [{"system": "urn:test", "code": "moved"}]}]
                res["code"] = {"coding": [{"system": "urn:test", "code": tag}]}
            tx.update(rtype, rid, res)


def touch_patients(store, rng, n: int) -> None:
    with store.transaction() as tx:
        for p in rng.sample(live(store, "Patient"), n):
            p["gender"] = "other" if p.get("gender") != "other" else "unknown"
            tx.update("Patient", p["id"], p)


def test_parquet_deltas_equal_a_full_rebuild(loaded, tmp_path) -> None:
    """After rounds of updates, deletes and re-creations, the base + delta files read back exactly what a full
    rebuild from the same store writes, and what the DuckDB table holds."""
    import random
    store = loaded.store
    rng = random.Random(7)
    mat = Materializer(StoreSource(store, overlap=0.0), tmp_path / "inc", indicator_views(), compact_ratio=10.0)
    mat.refresh()
    for round_ in range(4):
        mutate(store, rng, 40, f"r{round_}")
        report = mat.refresh()
        assert not report.failed
        written = {v.name: v.parquet.split("-")[0] for v in report.views if v.parquet}
        # No compaction at this ratio (but a view with an empty base, death_cause here, gets a base for any row).
        written.pop("death_cause", None)
        assert len(written) >= 3 and set(written.values()) == {"delta"}, written
        rebuilt = Materializer(StoreSource(store, overlap=0.0), tmp_path / f"full{round_}", indicator_views())
        rebuilt.refresh(full=True)
        for name in mat.views:
            assert parquet_rows(mat, name) == parquet_rows(rebuilt, name), (round_, name)
        assert_parquet_matches_table(mat)
        rebuilt.close()
    assert len(parquet_layout(mat.parquet_folder("encounter")).deltas) >= 3
    assert_matches_python(mat, store)
    mat.close()


def test_parquet_compaction(loaded, tmp_path) -> None:
    import random
    store = loaded.store
    rng = random.Random(11)
    folder = tmp_path / "parquet" / "patient"
    folder.mkdir(parents=True)
    (folder / "data.parquet").write_bytes(b"an earlier version's single file")
    mat = Materializer(StoreSource(store, overlap=0.0), tmp_path, indicator_views(), max_deltas=2, retain=3600)
    mat.refresh()
    # Rounds 1-2 write deltas; round 3 would be the third delta over max_deltas=2: a new base instead.
    kinds = []
    for round_ in range(3):
        touch_patients(store, rng, 3)
        kinds.append({v.name: v.parquet.split("-")[0] for v in mat.refresh().views}["patient"])
        assert_parquet_matches_table(mat)
    assert kinds == ["delta", "delta", "base"]
    lay = parquet_layout(folder)
    assert lay.deltas == [] and lay.files[0].name == f"base-{lay.base:012d}.parquet"
    # Superseded files stay for readers that listed the folder earlier (retain), and are ignored meanwhile...
    assert len(lay.superseded) == 4  # data.parquet, the first base, two deltas
    assert parquet_rows(mat, "patient") == table_rows(mat, "patient")
    # ...and go once the new base is `retain` seconds old, at any later refresh.
    mat.retain = 0
    mat.refresh()
    assert sorted(p.name for p in folder.iterdir()) == [lay.files[0].name]
    # Compaction by size: deltas past compact_ratio of the base's rows.
    mat.compact_ratio = 0.0
    mutate(store, rng, 30, "size")
    report = mat.refresh()
    assert {v.parquet.split("-")[0] for v in report.views if v.mode == "incremental"} <= {"base", ""}
    assert sum(v.parquet.startswith("base-") for v in report.views) >= 3
    assert all(len(list(mat.parquet_folder(n).iterdir())) == 1 for n in mat.views)
    assert_parquet_matches_table(mat)
    # compact_parquet() rewrites every base on demand.
    assert set(mat.compact_parquet()) == set(mat.views)
    assert_parquet_matches_table(mat)
    mat.close()


def test_failed_parquet_write_leaves_the_previous_files_and_is_repaired(loaded, tmp_path, monkeypatch) -> None:
    import random

    from healthtwin.analytics import materialize as m
    store = loaded.store
    rng = random.Random(5)
    mat = Materializer(StoreSource(store, overlap=0.0), tmp_path, indicator_views())
    mat.refresh()
    before = {n: sorted(p.name for p in mat.parquet_folder(n).iterdir()) for n in mat.views}
    old_rows = {n: parquet_rows(mat, n) for n in mat.views}
    mutate(store, rng, 40, "fail")

    def no_rename(src, dst):
        raise OSError("injected: disk full")
    monkeypatch.setattr(m.os, "replace", no_rename)
    report = mat.refresh()
    monkeypatch.undo()
    failed = {v.name for v in report.failed}
    assert failed and all("disk full" in v.error for v in report.failed)
    # Nothing half-written: no new file, no temporary left behind, readers see the previous generation whole.
    for n in mat.views:
        assert sorted(p.name for p in mat.parquet_folder(n).iterdir()) == before[n], n
        assert parquet_rows(mat, n) == old_rows[n], n
    # The tables moved on (their transaction committed); the next refresh, with no new change, brings the
    # Parquet files level with a new base.
    report = mat.refresh()
    assert not report.failed
    assert {v.name for v in report.views if v.parquet.startswith("base-")} == failed
    assert_parquet_matches_table(mat)
    # A delta file removed by hand is noticed the same way.
    mutate(store, rng, 20, "gone")
    report = mat.refresh()
    gone = next(v.name for v in report.views if v.parquet.startswith("delta-"))
    parquet_layout(mat.parquet_folder(gone)).files[-1].unlink()
    report = mat.refresh()
    assert {v.name: v.parquet for v in report.views}[gone].startswith("base-")
    assert_parquet_matches_table(mat)
    # Refreshes without Parquet leave the files behind the table; turning Parquet back on rebuilds them.
    mat.parquet = False
    mutate(store, rng, 20, "off")
    mat.refresh()
    mat.parquet = True
    report = mat.refresh()
    assert any(v.parquet.startswith("base-") for v in report.views)
    assert_parquet_matches_table(mat)
    mat.close()


def test_failing_view_leaves_nothing_half_done(loaded, tmp_path) -> None:
    store = loaded.store
    broken = {"resourceType": "ViewDefinition", "name": "broken", "resource": "Condition",
              "select": [{"column": [{"name": "id", "path": "getResourceKey()"},  # SNOMED and ICD-10 codes:
                                     {"name": "given", "path": "code.coding.code"}]}]}  # several, collection false
    mat = Materializer(StoreSource(store, overlap=0.0), tmp_path, [*indicator_views(), broken])
    report = mat.refresh()
    failed = {v.name: v for v in report.failed}
    assert set(failed) == {"broken"} and "given" in failed["broken"].error
    assert "broken" not in mat.state()
    assert not mat.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '%broken%'").fetchone()[0]

    # A failure between staging and swap in an incremental refresh: the table and watermark stay as they were.
    mat.views.pop("broken"), mat.compiled.pop("broken")
    before = mat.con.execute("SELECT * FROM patient ORDER BY id").fetchall()
    mark = mat.state()["patient"][1]
    with store.transaction() as tx:
        tx.delete("Patient", next(r["id"] for r in live(store, "Patient")
                                  if key(store, "Patient", r["id"]) in before[0]))  # the table holds keys
    def boom(name: str) -> None:
        if name == "patient":
            raise RuntimeError("injected failure")
    mat.before_swap = boom
    report = mat.refresh()
    assert [v.name for v in report.failed] == ["patient"]
    assert mat.con.execute("SELECT * FROM patient ORDER BY id").fetchall() == before
    assert mat.state()["patient"][1] == mark
    mat.before_swap = None
    report = mat.refresh()  # the change is picked up on the next run
    assert not report.failed
    assert_matches_python(mat, store)
    mat.close()


def test_indicators_and_schedule(loaded, tmp_path) -> None:
    mat = Materializer(StoreSource(loaded.store), tmp_path, indicator_views(), parquet=False)
    sched = Scheduler(mat, minutes=0.001)
    sched.start()
    deadline = time.time() + 60
    while sched.last is None and time.time() < deadline:
        time.sleep(0.05)
    sched.stop()
    assert sched.last is not None and sched.last_error is None
    assert set(sched.last.extra["indicators"].values()) <= {"built", "current"}
    assert mat.con.execute("SELECT sum(numerator) FROM ind_population_num").fetchone()[0] > 0
    # Nothing changed: indicators are left alone. (On PostgreSQL the first run after a full one re-reads the
    # overlap window once, which may rebuild them; from then on versions already applied are skipped.)
    refresh_all(mat)
    report = refresh_all(mat)
    assert set(report.extra["indicators"].values()) == {"current"}
    mat.close()


def test_a_rebuild_folds_its_wal_and_small_refreshes_do_not_checkpoint(loaded, tmp_path) -> None:
    """A full refresh ends with a checkpoint (its cost is the rebuild's); later small refreshes only append to
    the WAL, below the raised threshold, instead of paying DuckDB's checkpoint every few runs."""
    mat = Materializer(StoreSource(loaded.store, overlap=0.0), tmp_path, indicator_views(), parquet=False)
    wal = tmp_path / "analytics.duckdb.wal"
    assert mat.con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0] == "256.0 MiB"
    refresh_all(mat, full=True)
    assert not wal.exists() or wal.stat().st_size == 0
    rng = __import__("random").Random(5)
    mutate(loaded.store, rng, 5, "wal")
    report = refresh_all(mat)
    assert "incremental" in {v.mode for v in report.views}
    assert wal.exists() and wal.stat().st_size > 0  # written ahead, not yet folded
    mat.close()


def test_command_line(tmp_path, capsys) -> None:
    from healthtwin.population.generator import generate
    generate(tmp_path / "pop", 30, 2, end_date=dt.date(2024, 12, 31))
    assert views_main(["materialize", "--data-dir", str(tmp_path / "data"), "--from-ndjson",
                       str(tmp_path / "pop")]) == 0
    out = capsys.readouterr().out
    from healthtwin.analytics.indicators import load_indicators
    assert "patient" in out and f"indicators: {len(load_indicators())} built" in out  # every one defined
    assert (tmp_path / "data" / "analytics.duckdb").exists()
    assert parquet_layout(tmp_path / "data" / "parquet" / "encounter").base is not None
    # From the embedded store in the data folder (empty here): every view materializes, with no rows.
    assert views_main(["materialize", "--data-dir", str(tmp_path / "empty"), "--no-parquet"]) == 0


def test_command_line_while_another_process_owns_the_database(tmp_path, capsys) -> None:
    """A running server owns the analytics file (DuckDB allows one writing process): the command says so
    clearly instead of failing with a traceback."""
    import subprocess
    import sys
    data = tmp_path / "data"
    data.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               f"con = duckdb.connect({str(data / 'analytics.duckdb')!r})\n"
                               "print('ready', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert views_main(["materialize", "--data-dir", str(data), "--no-parquet"]) == 2
        err = capsys.readouterr().err
        assert "in use by another process" in err and "POST /analytics/refresh" in err
    finally:
        holder.kill()
        holder.wait()


def test_changes_page_through_a_shared_millisecond(store, monkeypatch) -> None:
    """Changes are read in pages keyed on (last_updated, row id): resources stamped in the same millisecond across
    a page boundary are each read once, on both databases."""
    from healthtwin.analytics import materialize as materialize_module
    monkeypatch.setattr(materialize_module, "PAGE", 4)
    with store.transaction() as tx:
        for i in range(30):
            tx.create("Patient", {"resourceType": "Patient", "gender": "other"}, f"same-{i:02d}")
    with store.transaction() as tx:
        tx.execute("UPDATE resources SET last_updated = ? + (rid % 3) WHERE type = 'Patient'", (4102444800.0,))
    seen = [rid for rid, _, _, _ in StoreSource(store, overlap=0.0).changes("Patient", 0.0)]
    assert sorted(seen) == sorted(key(store, "Patient", f"same-{i:02d}") for i in range(30))


def test_incremental_refresh_reuses_the_shape_but_not_its_choice_types(store, tmp_path) -> None:
    """An incremental refresh compiles its views with the shape its type's full refresh sampled, marked partial:
    a choice type that only a later change brings (valueString after valueQuantity alone) is still read."""
    view = {"resourceType": "ViewDefinition", "name": "obs_value", "resource": "Observation", "status": "active",
            "select": [{"column": [{"name": "id", "path": "getResourceKey()"},
                                   {"name": "has_value", "path": "value.exists()", "type": "boolean"}]}]}
    with store.transaction() as tx:
        for i in range(5):
            tx.create("Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                      "valueQuantity": {"value": i}}, f"q{i}")
        tx.create("Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}, "s")
    mat = Materializer(StoreSource(store, overlap=0.0), tmp_path, [view], parquet=False)
    assert mat.refresh(full=True).views[0].mode == "full"
    assert "Observation" in mat._shapes  # kept for the incremental refreshes
    before = dict(mat.con.execute('SELECT id, has_value FROM "obs_value"').fetchall())
    s_key, q0_key = key(store, "Observation", "s"), key(store, "Observation", "q0")
    assert before[s_key] is False and before[q0_key] is True
    with store.transaction() as tx:
        tx.update("Observation", "s", {"resourceType": "Observation", "id": "s", "status": "final",
                                        "code": {"text": "x"}, "valueString": "positive"})
    assert mat.refresh().views[0].mode == "incremental"
    after = dict(mat.con.execute('SELECT id, has_value FROM "obs_value"').fetchall())
    assert after[s_key] is True and after[q0_key] is True
    assert_matches_python(mat, store)
