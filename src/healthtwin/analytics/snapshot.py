"""Serving the indicators from several server processes, although DuckDB lets one process write its file.

`healthtwin serve --workers N` starts N processes, but a DuckDB database file can be open read-write in only
one process, and read-only in others only while no process writes it. So:

* the **owner** is the process that takes an exclusive lock on `<analytics dir>/analytics.lock`
  (`try_own`); it opens `analytics.duckdb`, runs the refresh schedule and, after each refresh, publishes a
  **snapshot**: a small DuckDB file holding the indicator tables and the refresh state
  (`snapshots/analytics-<n>.duckdb`, written under a temporary name, then named in `snapshots/CURRENT`);
* every other process (a **follower**) answers indicator queries from the newest snapshot, opened
  read-only (`SnapshotReader`); it re-opens when `CURRENT` names a newer one. Superseded snapshots are
  deleted by the owner once they are `RETAIN` seconds old, so a follower's open file stays readable.

A follower cannot refresh (the refresh needs the database file): `POST /analytics/refresh` tells the caller
which process can. The snapshot holds aggregates only (the indicator tables), never per-person rows.
Snapshots are published only when the server runs several workers (`HEALTHTWIN_WORKERS`, set by
`healthtwin serve`): at a million resources the indicator tables hold about 640,000 rows and a snapshot
takes about 0.7 s to write, in the owner's background refresh.
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

from .materialize import _ident

log = logging.getLogger("healthtwin.analytics")

RETAIN = 120.0  # seconds a superseded snapshot is kept for followers still reading it
# base_syndrome and base_hospital: the twin's series name their groups and hospitals (no per-person rows)
_TABLES = ("starts_with(table_name, 'ind_') OR table_name IN ('_ht_cube_state', '_ht_view_state', 'base_syndrome', "
           "'base_hospital')")
_held: dict[str, int] = {}  # lock file -> descriptor, kept open for the process's lifetime


def try_own(folder: str | Path) -> bool:
    """True if this process holds (or now takes) the analytics lock of `folder`."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    lock = str(path / "analytics.lock")
    if lock in _held:
        return True
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held[lock] = fd
    return True


def owner_pid(folder: str | Path) -> str:
    try:
        return (Path(folder) / "analytics.lock").read_text().strip() or "?"
    except OSError:
        return "?"


def publish(con: duckdb.DuckDBPyConnection, folder: str | Path) -> Path:
    """Writes the indicator tables and refresh state into a new snapshot and makes it current."""
    snaps = Path(folder) / "snapshots"
    snaps.mkdir(parents=True, exist_ok=True)
    current = _current_name(snaps)
    number = int(current.split("-")[1].split(".")[0]) + 1 if current else 1
    name = f"analytics-{number:08d}.duckdb"
    tmp = snaps / f".{name}.tmp"
    tmp.unlink(missing_ok=True)
    cur = con.cursor()
    try:
        tables = [r[0] for r in cur.execute(f"SELECT table_name FROM duckdb_tables() WHERE database_name = "
                                            f"current_database() AND ({_TABLES})").fetchall()]
        cur.execute(f"ATTACH '{tmp}' AS _ht_snapshot")
        try:
            cur.execute("BEGIN TRANSACTION")  # one commit for all tables: a fifth faster than one each
            try:
                for table in tables:
                    cur.execute(f"CREATE TABLE _ht_snapshot.{_ident(table)} AS SELECT * FROM main.{_ident(table)}")
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        finally:
            cur.execute("DETACH _ht_snapshot")
    finally:
        cur.close()
    os.replace(tmp, snaps / name)
    pointer = snaps / ".CURRENT.tmp"
    pointer.write_text(name)
    os.replace(pointer, snaps / "CURRENT")
    _tidy(snaps, name)
    return snaps / name


def _current_name(snaps: Path) -> str | None:
    try:
        name = (snaps / "CURRENT").read_text().strip()
    except OSError:
        return None
    return name if name.startswith("analytics-") and name.endswith(".duckdb") and "/" not in name else None


def _tidy(snaps: Path, keep: str) -> None:
    now = time.time()
    for path in snaps.glob("analytics-*.duckdb"):
        if path.name != keep and now - path.stat().st_mtime > RETAIN:
            path.unlink(missing_ok=True)


class SnapshotReader:
    """A follower's view of the newest snapshot: a read-only DuckDB connection, re-opened when it changes."""

    def __init__(self, folder: str | Path) -> None:
        self.snaps = Path(folder) / "snapshots"
        self._lock = threading.Lock()
        self._name: str | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._old: list[duckdb.DuckDBPyConnection] = []  # kept open: requests may still hold their cursors

    def connection(self) -> duckdb.DuckDBPyConnection | None:
        name = _current_name(self.snaps)
        if name is None:
            return None
        with self._lock:
            if name != self._name:
                try:
                    con = duckdb.connect(str(self.snaps / name), read_only=True)
                except duckdb.Error as exc:  # replaced while opening: the previous one still answers
                    log.warning("analytics snapshot %s could not be opened: %s", name, exc)
                    return self._con
                if self._con is not None:
                    self._old = [*self._old[-1:], self._con]
                self._con, self._name = con, name
            return self._con

    def state(self) -> dict[str, tuple[Any, ...]]:
        con = self.connection()
        if con is None:
            return {}
        cur = con.cursor()
        try:
            rows = cur.execute("SELECT name, digest, watermark, row_count, refreshed_at FROM _ht_view_state").fetchall()
        except duckdb.CatalogException:
            return {}
        finally:
            cur.close()
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def close(self) -> None:
        for con in [*self._old, *([self._con] if self._con else [])]:
            con.close()


__all__ = ["try_own", "owner_pid", "publish", "SnapshotReader", "RETAIN"]
