"""Writers in several processes share one SQLite store: they queue on the lock file, none fails or is lost,
and the audit chain they append to together stays whole."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from healthtwin.security.audit import AuditLog
from healthtwin.store.sqlite import SQLiteStore

WRITER = textwrap.dedent("""
    import sys
    from healthtwin.security.audit import AuditLog
    from healthtwin.store.sqlite import SQLiteStore
    store = SQLiteStore(sys.argv[1])
    audit = AuditLog(store)
    for i in range(150):
        with store.transaction() as tx:
            tx.create("Patient", {"resourceType": "Patient", "gender": "other"}, f"{sys.argv[2]}-{i}")
        audit.append([{"resourceType": "AuditEvent", "recorded": "2026-11-25T00:00:00Z",
                       "entity": [{"what": {"reference": f"Patient/{sys.argv[2]}-{i}"}}]}])
    store.close()
""")


def test_processes_write_one_store_together(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    store = SQLiteStore(db)
    AuditLog(store).ensure_schema()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), name], stderr=subprocess.PIPE)
             for name in ("a", "b", "c")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    assert store.query("SELECT COUNT(*) FROM resources WHERE type = 'Patient'", [])[0][0] == 450
    result = AuditLog(store).verify()
    assert result.ok and result.checked == 450, result
    assert Path(str(db) + ".writer").exists()
    store.close()


def test_checkpoints_run_beside_the_writers(tmp_path: Path) -> None:
    """No commit copies the WAL into the database file (SQLite's automatic checkpoint is off); the store's own
    thread does, within about a second, and stops when the store closes."""
    import time

    db = tmp_path / "c.sqlite"
    store = SQLiteStore(db)
    store._stop.set()  # hold the checkpointer back while writing, to see what the commits alone do
    store._checkpointer.join()
    before = db.stat().st_size
    with store.transaction() as tx:
        for i in range(1500):  # about 2,000 pages with the index rows: past SQLite's 1,000-page threshold
            tx.create("Patient", {"resourceType": "Patient", "gender": "other", "name": [{"family": "x" * 300}]},
                      f"p{i}")
    assert db.stat().st_size == before  # everything is still in the WAL
    # A second store on the file (the first stays open, so no connection's close checkpoints instead).
    other = SQLiteStore(db)
    deadline = time.monotonic() + 5
    while db.stat().st_size <= before + 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.1)  # the copy may be seen half-way: wait for the whole of it
    assert db.stat().st_size > before + 1_000_000
    thread = other._checkpointer
    other.close()
    assert not thread.is_alive()
    store.close()


def test_a_wal_past_its_limit_is_emptied(tmp_path: Path, monkeypatch) -> None:
    """Back-to-back writers never let the WAL start over by itself; past the limit the store's thread empties
    it (with writers held off), so it cannot grow without end during a long load."""
    import time

    from healthtwin.store import sqlite as sqlite_module
    monkeypatch.setattr(sqlite_module, "WAL_LIMIT_PAGES", 200)
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_SECONDS", 0.05)
    db = tmp_path / "w.sqlite"
    store = SQLiteStore(db)
    wal = Path(str(db) + "-wal")
    for batch in range(6):
        with store.transaction() as tx:
            for i in range(300):
                tx.create("Patient", {"resourceType": "Patient", "name": [{"family": "y" * 300}]}, f"p{batch}-{i}")
    deadline = time.monotonic() + 5
    while wal.stat().st_size > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wal.stat().st_size == 0
    assert store.query("SELECT COUNT(*) FROM resources", [])[0][0] == 1800
    store.close()


def test_checkpoint_empties_the_wal_and_keeps_every_write(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    store = SQLiteStore(db)
    with store.transaction() as tx:
        for i in range(200):
            tx.create("Patient", {"resourceType": "Patient", "gender": "other"}, f"p-{i}")
    wal = Path(str(db) + "-wal")
    assert wal.stat().st_size > 0
    store.checkpoint()
    assert wal.stat().st_size == 0
    store.close()
    reopened = SQLiteStore(db)
    assert reopened.query("SELECT COUNT(*) FROM resources WHERE type = 'Patient'", [])[0][0] == 200
    reopened.close()


def _open_at(path: str, start: float, results) -> None:
    import time
    while time.time() < start:  # every process opens the store at the same instant
        pass
    try:
        SQLiteStore(path).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_open_a_new_store_together(tmp_path: Path) -> None:
    """Server workers start together on a fresh data folder: each creates or migrates the store at once. Switching
    the new file to WAL refused a reader at once ("database is locked") in a third of such starts."""
    import multiprocessing
    import time
    ctx = multiprocessing.get_context("fork")
    failures = []
    for attempt in range(8):
        results = ctx.Queue()
        path, start = str(tmp_path / f"s{attempt}.sqlite"), time.time() + 0.2
        procs = [ctx.Process(target=_open_at, args=(path, start, results)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        failures += [r for r in (results.get(timeout=5) for _ in procs) if r != "ok"]
    assert not failures, failures
