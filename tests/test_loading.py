"""Bulk loading (healthtwin load and $import): validation, bad lines reported, idempotence, resume."""
from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest

import healthtwin.loading as loading_module
from healthtwin.api.services import Services
from healthtwin.loading import load


def _lines(*resources) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in resources)


PATIENTS = [{"resourceType": "Patient", "id": f"p{i}", "gender": "female", "birthDate": "1990-01-01"}
            for i in range(25)]
BAD = [b"{not json\n", orjson.dumps({"resourceType": "Patient", "id": "bad-gender", "gender": "robot"}) + b"\n",
       orjson.dumps({"resourceType": "Patient"}) + b"\n"]


def test_load_reports_bad_lines_and_is_idempotent(store, tmp_path):
    services = Services.build(store)
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(_lines(*PATIENTS[:10]) + BAD[0] + _lines(*PATIENTS[10:20]) + BAD[1] + BAD[2])
    report = load(services, [str(path)], workers=1)
    assert report.created == 20
    assert [(e["line"], e["outcome"]["issue"][0]["code"]) for e in report.errors][0][0] == 11
    assert [e["line"] for e in report.errors] == [11, 22, 23]
    assert all(e["file"] == str(path) for e in report.errors)
    assert "gender" in orjson.dumps(report.errors[1]["outcome"]).decode()
    again = load(services, [str(path)], restart=True, workers=1)
    assert again.created == 0 and again.unchanged == 20
    assert store.count_resources() == {"Patient": 20}
    # a changed resource gets a new version, the others stay
    changed = [dict(PATIENTS[0], gender="male")] + PATIENTS[1:20]
    path.write_bytes(_lines(*changed))
    third = load(services, [str(path)], workers=1)
    assert (third.created, third.updated, third.unchanged) == (0, 1, 19)
    assert store.read("Patient", "p0").version == 2


def test_load_resumes_after_interruption(store, tmp_path, monkeypatch):
    import healthtwin.loading as loading
    services = Services.build(store)
    monkeypatch.setattr(loading, "BATCH", 5)
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(_lines(*PATIENTS))
    calls = {"n": 0}
    original = loading.Loader._commit

    def failing_commit(self, batch, checkpoint, line_no, done=False):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the operator stops the load mid-way
        return original(self, batch, checkpoint, line_no, done)
    monkeypatch.setattr(loading.Loader, "_commit", failing_commit)
    with pytest.raises(KeyboardInterrupt):
        load(services, [str(path)], workers=1)
    assert store.count_resources() == {"Patient": 10}  # two committed batches, nothing half-way
    monkeypatch.setattr(loading.Loader, "_commit", original)
    resumed = load(services, [str(path)], workers=1)
    assert resumed.created == 15 and resumed.unchanged == 0  # started after line 10, not from the top
    assert store.count_resources() == {"Patient": 25}
    skipped = load(services, [str(path)], workers=1)
    assert skipped.loaded == 0  # completely loaded before: skipped


def test_load_with_worker_processes(store, tmp_path):
    services = Services.build(store)
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(_lines(*PATIENTS) + BAD[1])
    report = load(services, [str(path)], workers=2)
    assert report.created == 25 and [e["line"] for e in report.errors] == [26]


_REAL_WRITE = loading_module._worker_check_and_write


def _fails_on_p7(chunk):
    """Runs in a (forked) worker: reports a failed write for the chunk that holds p7."""
    if any(b'"p7"' in raw for _, raw in chunk):
        return None, []
    return _REAL_WRITE(chunk)


@pytest.mark.parametrize("workers", [1, 3])
def test_the_later_line_wins_across_chunks_and_workers(store, tmp_path, monkeypatch, workers):
    """Workers write chunks themselves (side by side on PostgreSQL, in turns on SQLite); chunks naming the same
    resource must not race."""
    import healthtwin.loading as loading
    monkeypatch.setattr(loading, "BATCH", 4)
    services = Services.build(store)
    versions = [dict(PATIENTS[i % 5], birthDate=f"19{50 + i}-01-01") for i in range(40)]  # 8 versions each
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(_lines(*versions))
    report = load(services, [str(path)], workers=workers)
    assert not report.errors and report.created == 5
    for i in range(5):
        last = max(n for n in range(40) if n % 5 == i)
        assert orjson.loads(store.read("Patient", f"p{i}").content)["birthDate"] == f"19{50 + last}-01-01"


def test_parallel_writers_resume_and_recover(store, tmp_path, monkeypatch):
    """A chunk whose worker could not write it is written by the loader itself; an interrupted parallel
    load resumes from a point before which everything was written."""
    import healthtwin.loading as loading
    if not loading.Loader(Services.build(store), workers=2).parallel_writes:
        pytest.skip("an in-memory store has no second connection for a worker to write through")
    monkeypatch.setattr(loading, "BATCH", 5)
    services = Services.build(store)
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(_lines(*PATIENTS))
    monkeypatch.setattr(loading, "_worker_check_and_write", _fails_on_p7)
    loader = loading.Loader(services, workers=2)
    assert loader.parallel_writes
    settled = {"n": 0}
    real_tick = loader._tick

    def interrupt_after_three() -> None:
        settled["n"] += 1
        real_tick()
        if settled["n"] == 3:
            raise KeyboardInterrupt
    loader._tick = interrupt_after_three
    key, _ = loading._checkpoint_key(path)
    with pytest.raises(KeyboardInterrupt):
        with open(path, "rb") as fp:
            loader.load_lines(fp, str(path), key, 0)
    loader.close()
    assert loading._resume_point(store, key) == (15, False)  # three chunks settled in order
    assert {f"p{i}" for i in range(15)} <= {row[0] for row in store.query(
        "SELECT id FROM resources WHERE type = 'Patient'", [])}  # p7's chunk was written by the loader
    resumed = load(services, [str(path)], workers=2)
    assert not resumed.errors and resumed.loaded == 10
    assert store.count_resources() == {"Patient": 25}


def test_generate_pipes_into_load(tmp_path):
    """healthtwin generate … --out - | healthtwin load - streams without temporary files."""
    data = tmp_path / "data"
    gen = subprocess.Popen([sys.executable, "-m", "healthtwin.cli", "generate", "--patients", "20", "--seed", "3",
                            "--out", "-"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    loaded = subprocess.run([sys.executable, "-m", "healthtwin.cli", "load", "--data-dir", str(data), "-"],
                            stdin=gen.stdout, capture_output=True, text=True, timeout=300)
    gen.wait()
    assert gen.returncode == 0 and loaded.returncode == 0, loaded.stderr[-2000:]
    assert "0 rejected" in loaded.stderr
    from healthtwin.store.sqlite import SQLiteStore
    counts = SQLiteStore(data / "healthtwin.sqlite").count_resources()
    assert counts["Patient"] == 20 and counts["Observation"] > 100


def test_load_cli_errors_are_clear(tmp_path):
    r = subprocess.run([sys.executable, "-m", "healthtwin.cli", "load", "--data-dir", str(tmp_path),
                        str(tmp_path / "missing.ndjson")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_bulk_import_operation(client, tmp_path):
    folder = tmp_path / "data" / "import"
    folder.mkdir(parents=True)
    (folder / "Patient.ndjson").write_bytes(_lines(*PATIENTS[:5]) + BAD[1])
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
        {"name": "input", "part": [{"name": "type", "valueCode": "Patient"},
                                   {"name": "url", "valueUri": "file:Patient.ndjson"}]}]}
    r = client.post("/fhir/$import", json=params)
    assert r.status_code == 202
    status_url = r.headers["content-location"].replace("http://testserver", "")
    deadline = time.time() + 60
    while (poll := client.get(status_url)).status_code == 202 and time.time() < deadline:
        assert "x-progress" in poll.headers
        time.sleep(0.1)
    assert poll.status_code == 200
    result = poll.json()
    assert result["output"][0]["count"] == 5 and result["error"][0]["count"] == 1
    errors = client.get(result["error"][0]["url"].replace("http://testserver", ""))
    assert b"Patient.ndjson:6" in errors.content
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 5
    outside = dict(params)
    outside["parameter"] = [{"name": "input", "part": [{"name": "url", "valueUri": "file:///etc/passwd"}]}]
    assert client.post("/fhir/$import", json=outside).status_code == 400
    net = {"resourceType": "Parameters", "parameter": [{"name": "input", "part": [
        {"name": "url", "valueUri": "https://example.org/Patient.ndjson"}]}]}
    assert client.post("/fhir/$import", json=net).status_code == 400


def test_a_load_leaves_postgresql_planner_statistics_current(tmp_path):
    """After a bulk load the loaded tables are analyzed and vacuumed, so searches over them are planned with
    statistics and counted from the index alone, whether or not autovacuum runs (it is off on CI)."""
    from tests.conftest import make_store
    store = make_store("postgres", tmp_path)
    try:
        path = tmp_path / "Patient.ndjson"
        path.write_bytes(_lines(*PATIENTS))
        assert load(Services.build(store), [str(path)], workers=1).created == 25
        rows = dict(store.query("SELECT relname, last_analyze IS NOT NULL AND last_vacuum IS NOT NULL "
                                "FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                                "AND relname IN ('resources', 'idx_token', 'idx_string')", []))
        assert rows == {"resources": True, "idx_token": True, "idx_string": True}
        again = load(Services.build(store), [str(path)], restart=True, workers=1)
        assert again.unchanged == 25  # nothing written: no statistics to refresh

        def analyzed():
            return store.query("SELECT last_analyze FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                               "AND relname = 'resources'", [])[0][0]
        before = analyzed()
        few = tmp_path / "few.ndjson"
        few.write_bytes(_lines(dict(PATIENTS[0], id="one-more")))
        assert load(Services.build(store), [str(few)], workers=1).created == 1
        assert analyzed() == before  # 1 new of 25: left to autovacuum
        more = tmp_path / "more.ndjson"
        more.write_bytes(_lines(*[dict(PATIENTS[0], id=f"more-{i}") for i in range(5)]))
        assert load(Services.build(store), [str(more)], workers=1).created == 5
        assert analyzed() > before  # 5 new of 26: a fifth of the store
    finally:
        store.close()


def test_load_refuses_subscriptions_like_the_api(store, tmp_path):
    # Nothing delivers notifications, so a loaded Subscription would be a promise never kept: the line is an error.
    services = Services.build(store)
    path = tmp_path / "mixed.ndjson"
    sub = {"resourceType": "Subscription", "id": "s1", "status": "requested", "reason": "r", "criteria": "Patient?",
           "channel": {"type": "rest-hook", "endpoint": "https://example.org/hook"}}
    path.write_bytes(_lines(PATIENTS[0], sub))
    report = load(services, [str(path)], workers=1)
    assert report.created == 1 and [e["line"] for e in report.errors] == [2]
    assert "Subscription" in report.errors[0]["outcome"]["issue"][0]["diagnostics"]
    assert store.count_resources() == {"Patient": 1}
