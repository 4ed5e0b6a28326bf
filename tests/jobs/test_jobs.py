"""The scheduled jobs on a small generated population: the real immunization refresh, forecast warm and
detection run when due and not before, each run is recorded (start, end, outcome), a failing job is recorded
and the others still run, a job claimed by one process is not started by another, and `healthtwin jobs`
lists, configures, runs and refuses bad input clearly."""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from healthtwin.jobs import cadence
from healthtwin.jobs.book import STALE, JobBook
from healthtwin.jobs.catalogue import JOBS, Context, Job, JobFailed
from healthtwin.jobs.runner import run_due, run_job

UTC = dt.timezone.utc
T0 = dt.datetime(2025, 1, 1, 12, 0, tzinfo=UTC)  # a Wednesday
TYPES = ("Organization", "Practitioner", "PractitionerRole", "Location", "Patient", "Immunization", "Condition",
         "AllergyIntolerance", "Encounter")


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """300 generated citizens in a SQLite store in `data`, and their analytics materialised in the same folder."""
    from healthtwin.analytics.indicators import indicator_views
    from healthtwin.analytics.materialize import Materializer, NdjsonSource
    from healthtwin.analytics.refresh import refresh_all
    from healthtwin.api.services import Services
    from healthtwin.loading import Loader
    from healthtwin.population import generate
    from healthtwin.security.storage import open_store
    root = tmp_path_factory.mktemp("jobs")
    generate(root / "pop", 300, 2, start_year=2015, end_date=dt.date(2024, 12, 31))
    data = root / "data"
    store = open_store(None, data)
    loader = Loader(Services.build(store))
    for rtype in TYPES:
        f = root / "pop" / f"{rtype}.ndjson"
        if f.exists():
            loader.load_lines(f.read_bytes().splitlines(), f.name)
    store.close()
    mat = Materializer(NdjsonSource(root / "pop"), data, indicator_views(), parquet=False)
    assert not refresh_all(mat).failed
    mat.close()
    return data


def _services(data: Path):
    from healthtwin.api.services import Services
    from healthtwin.registries.immunization.due import register
    from healthtwin.security.storage import open_store
    services = Services.build(open_store(None, data))
    register(services.registry)
    return services


def _small(job: Job) -> Job:
    """The real jobs, forecast warm narrowed to two groups to keep the suite's time."""
    if job.name != "forecast-warm":
        return job

    def warm_two(ctx: Context, now: dt.datetime):
        from healthtwin.twin.forecasting.stored import warm
        return vars(warm(ctx.analytics_dir, ["measles", "ili"], ["national", "region"]))
    return replace(job, run=warm_two)


def test_cadences_read_and_step():
    assert cadence.parse("daily 01:30").next_after(T0) == dt.datetime(2025, 1, 2, 1, 30, tzinfo=UTC)
    assert cadence.parse("daily 13:00").next_after(T0) == dt.datetime(2025, 1, 1, 13, 0, tzinfo=UTC)
    monday6 = dt.datetime(2025, 1, 6, 6, 0, tzinfo=UTC)
    assert cadence.parse("Weekly  MON 06:00").next_after(T0) == monday6
    assert cadence.parse("weekly mon 06:00").next_after(monday6) == monday6 + dt.timedelta(days=7)
    assert cadence.parse("every 90m").next_after(T0) == T0 + dt.timedelta(minutes=90)
    for bad in ("daily 24:00", "weekly moon 06:00", "every 0m", "hourly", ""):
        with pytest.raises(ValueError, match="cadence"):
            cadence.parse(bad)


def test_due_jobs_run_once_each_recorded_and_a_failure_does_not_stop_the_others(twin):
    services = _services(twin)
    try:
        def broken(ctx, now):
            raise RuntimeError("the disk is full")

        jobs = [_small(j) for j in JOBS]
        jobs.insert(1, Job("broken", "daily 02:00", broken, "fails"))
        book = JobBook(services.store)
        ctx = Context(services, twin, twin, None, workers=1)
        assert run_due(book, jobs, ctx, T0, clock=lambda: T0) == []  # registered, first due after now
        listed = {j["name"]: j for j in book.jobs()}
        assert listed["detection"]["next_due"] == "2025-01-06T06:00:00+00:00"
        assert listed["immunization-refresh"]["next_due"] == "2025-01-02T01:30:00+00:00"
        midnight = T0 + dt.timedelta(hours=12)  # before any of them is due
        assert run_due(book, jobs, ctx, midnight, clock=lambda: midnight) == []

        later = dt.datetime(2025, 1, 6, 7, 0, tzinfo=UTC)  # every job due, the weekly one too
        done = run_due(book, jobs, ctx, later, clock=lambda: later)
        assert [(r["job"], r["outcome"]) for r in done] == [
            ("immunization-refresh", "ok"), ("broken", "failed"), ("forecast-warm", "ok"), ("detection", "ok")]
        assert "the disk is full" in done[1]["detail"]["error"]
        # what the jobs did is there
        recs = services.store.query("SELECT COUNT(*) FROM resources WHERE type = 'ImmunizationRecommendation' "
                                    "AND deleted = 0", [])[0][0]
        assert recs > 0 and recs == done[0]["detail"]["written"]
        assert (twin / "forecasts" / "measles.region.json").exists() and done[2]["detail"]["fitted"] == 4
        assert json.loads((twin / "surveillance" / "2025-01-06.json").read_text())["series"] > 0
        # each run recorded with its start, end and outcome; each job due next at its cadence after the run
        runs = book.runs(limit=10)
        assert sorted(r["outcome"] for r in runs) == ["failed", "ok", "ok", "ok"]
        assert all(r["started"] <= r["finished"] and r["ran_by"] for r in runs)
        listed = {j["name"]: j for j in book.jobs()}
        assert listed["detection"]["next_due"] == "2025-01-13T06:00:00+00:00"
        assert listed["broken"]["last_outcome"] == "failed" and not listed["broken"]["running"]
        assert run_due(book, jobs, ctx, later, clock=lambda: later) == []  # not due again
    finally:
        services.store.close()


def test_a_job_claimed_by_one_process_is_not_started_by_another(tmp_path):
    from healthtwin.store.sqlite import SQLiteStore
    first, second = SQLiteStore(str(tmp_path / "s.sqlite")), SQLiteStore(str(tmp_path / "s.sqlite"))
    try:
        a, b = JobBook(first), JobBook(second)
        a.register([("nightly", "daily 02:00")], T0)
        due = T0 + dt.timedelta(days=1)
        claim = a.claim("nightly", due)
        assert claim is not None
        assert b.claim("nightly", due) is None and b.claim("nightly", due, force=True) is None
        assert b.jobs()[0]["running"]
        # a claim older than STALE (its process died) is given up and recorded as abandoned
        taken = b.claim("nightly", due + STALE + dt.timedelta(minutes=1))
        assert taken is not None
        assert {r["id"]: r["outcome"] for r in b.runs()}[claim.run_id] == "abandoned"
        a.finish(claim, "ok", {}, due)  # the old holder's late end does not free the new holder's claim
        assert b.jobs()[0]["running"]
        b.finish(taken, "ok", {"n": 1}, due)
        assert not b.jobs()[0]["running"] and b.jobs()[0]["last_outcome"] == "ok"
        b.configure("nightly", enabled=False)
        assert b.claim("nightly", due + dt.timedelta(days=3)) is None  # disabled
        with pytest.raises(ValueError, match="cadence"):
            b.configure("nightly", cadence="sometimes")
        with pytest.raises(ValueError, match="no job"):
            b.claim("missing", due)
    finally:
        first.close()
        second.close()


def test_an_interrupted_job_is_recorded_and_passed_on(tmp_path):
    from healthtwin.store.sqlite import SQLiteStore
    store = SQLiteStore(str(tmp_path / "s.sqlite"))
    try:
        def stopped(ctx, now):
            raise KeyboardInterrupt

        book = JobBook(store)
        job = Job("stops", "daily 02:00", stopped, "")
        book.register([(job.name, job.cadence)], T0)
        with pytest.raises(KeyboardInterrupt):
            run_job(book, job, Context(None, tmp_path, None), T0, force=True)
        assert book.runs()[0]["outcome"] == "failed" and "interrupted" in book.runs()[0]["detail"]
        assert not book.jobs()[0]["running"]
        warm = [j for j in JOBS if j.name == "forecast-warm"][0]
        book.register([(warm.name, warm.cadence)], T0)
        out = run_job(book, warm, Context(None, tmp_path, None), T0, force=True)
        assert out["outcome"] == "failed" and isinstance(JobFailed("x"), Exception)
        assert "analytics" in out["detail"]["error"]
    finally:
        store.close()


def test_the_command_lists_sets_runs_and_refuses(tmp_path, capsys):
    from healthtwin.cli import main
    data = tmp_path / "data"
    data.mkdir()
    assert main(["jobs", "list", "--data-dir", str(data)]) == 0
    names = [j["name"] for j in json.loads(capsys.readouterr().out)]
    assert names == sorted(j.name for j in JOBS)
    assert main(["jobs", "set", "detection", "--cadence", "daily 05:00", "--disable", "--data-dir", str(data)]) == 0
    row = {j["name"]: j for j in json.loads(capsys.readouterr().out)}["detection"]
    assert row["cadence"] == "daily 05:00" and not row["enabled"]
    assert main(["jobs", "set", "detection", "--cadence", "at noon", "--data-dir", str(data)]) == 2
    assert "cadence" in capsys.readouterr().err
    assert main(["jobs", "run", "nothing", "--data-dir", str(data)]) == 2
    assert "no job" in capsys.readouterr().err
    assert main(["jobs", "list", "--data-dir", str(tmp_path / "absent")]) == 2
    # no analytics database in the folder: the run fails, is recorded, and the command says so (exit 1)
    assert main(["jobs", "run", "forecast-warm", "--data-dir", str(data)]) == 1
    assert json.loads(capsys.readouterr().out)[0]["outcome"] == "failed"
    assert main(["jobs", "history", "--job", "forecast-warm", "--data-dir", str(data)]) == 0
    assert [r["outcome"] for r in json.loads(capsys.readouterr().out)] == ["failed"]
    assert main(["jobs", "run-due", "--data-dir", str(data)]) == 0  # nothing due yet
    assert json.loads(capsys.readouterr().out) == []


def test_the_server_ticks_in_the_process_holding_the_analytics(tmp_path, monkeypatch):
    from healthtwin.jobs import server
    from healthtwin.store.sqlite import SQLiteStore

    class Services:
        store = SQLiteStore(str(tmp_path / "s.sqlite"))

    ran = []
    clock = [T0]
    job = Job("count", "every 5m", lambda ctx, now: ran.append(now) or {"n": len(ran)}, "")
    ticker = server.Ticker(Context(Services(), tmp_path, tmp_path), [job], seconds=0.05, clock=lambda: clock[0])
    ticker.start()
    try:
        clock[0] = T0 + dt.timedelta(minutes=6)
        deadline = time.time() + 10
        while not ran:
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        ticker.stop()
    assert ticker._thread is None and ran == [T0 + dt.timedelta(minutes=6)]
    assert JobBook(Services.store).runs()[0]["outcome"] == "ok"
    # a worker that does not hold the analytics database does not tick
    monkeypatch.setattr("healthtwin.analytics.snapshot.try_own", lambda folder: False)
    follower = server.Ticker(Context(Services(), tmp_path, tmp_path), [job], seconds=0.05)
    follower.start()
    assert follower._thread is None and follower.book is None
    Services.store.close()


def test_concurrent_claims_start_a_due_job_once(store):
    """Eight threads (each its own connection on PostgreSQL) claim one due job at the same moment: one wins."""
    from concurrent.futures import ThreadPoolExecutor
    book = JobBook(store)
    book.register([("nightly", "daily 02:00")], T0)
    due = T0 + dt.timedelta(days=1)
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda _: JobBook(store).claim("nightly", due), range(8)))
    won = [c for c in claims if c is not None]
    assert len(won) == 1
    assert [r["outcome"] for r in book.runs()] == ["running"]
