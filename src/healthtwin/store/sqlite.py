"""SQLite, the embedded default: one file in the data folder, WAL mode, one connection per thread.

SQLite serialises writers itself: a write transaction starts with BEGIN IMMEDIATE, which takes the
database's write lock at once, so read-then-write sequences (conditional create, If-Match) are atomic
without further locking, across threads and across server worker processes alike.

Writers of this store also queue on a lock file beside the database (`<db>.writer`, an `fcntl` lock) before
BEGIN IMMEDIATE. SQLite's own wait for a busy database sleeps 1, 2, 5, 10… ms between attempts; with
several server workers appending audit batches of a fraction of a millisecond, those sleeps made a worker's
requests wait tens to hundreds of milliseconds (p99 0.7 s at 64 connections). The kernel hands a file lock
to the next waiter as soon as it is released.

Checkpoints (copying the WAL back into the database file) run in a background thread once a second rather
than inside the commit that crosses SQLite's threshold: that commit paid for the copy on a request's time
(transaction ingest went from about 4,000 to 5,000 resources/s). Once the WAL outgrows WAL_LIMIT_PAGES
(back-to-back writers never let it start over), the thread empties it with writers held off.

A full disk: a write that meets it rolls back and answers 507 (faults.Unavailable); reads go on. While the
disk is full or nearly so (less free than the WAL cap), the thread empties the WAL every round, so the log
cannot keep the space it holds nor grow into space freed later, and writes resume by themselves once the
database file can take what the WAL held.
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .base import Store
from .faults import unavailable
from .records import Stored

CHECKPOINT_SECONDS = 1.0
# About 16 MB of WAL: then writers wait while it is copied and emptied. The pause grows with what is copied:
# at 25,000 pages (100 MB) the audited reads' p99 was 36-50 ms, at 4,000 30-39 ms (bench_read, three runs
# each on 2026-11-26), with the same throughput; bulk loading showed no difference (9.3-9.7k/s both).
WAL_LIMIT_PAGES = 4000
# The WAL file is cut back to this when it starts over (journal_size_limit), so the cap holds on disk too:
# at 64 MB a WAL that had once grown kept 48 MB beside a 280 kB database on a disk that had filled up.
WAL_KEEP_BYTES = WAL_LIMIT_PAGES * 4096
LOW_SPACE_BYTES = WAL_KEEP_BYTES  # below this much free space the WAL is emptied every round
_FULL = "The data folder's disk is full"
# Held around the checkpointer's calls into SQLite. A process forked while another thread is inside SQLite
# inherits SQLite's mutexes locked, and its first connection waits forever (the loader's workers are forked
# and open the store): a fork waits until the checkpoint in progress is done.
_FORK_GUARD = threading.Lock()
os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release,
                    after_in_child=_FORK_GUARD.release)
_READ = "SELECT type, id, version, last_updated, deleted, content FROM resources WHERE type = ? AND id = ?"


def _set_wal(conn: sqlite3.Connection, seconds: float = 60.0) -> None:
    """WAL mode on a new connection, waiting for the database where SQLite will not. Switching a new file to WAL
    takes an exclusive lock, and a connection that already reads is refused at once rather than made to wait (a
    wait could deadlock): server workers opening a fresh store together failed with "database is locked" in a
    third of the tries."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SQLiteStore(Store):
    dialect = "sqlite"
    index_hint = "+"
    row_locator = "rowid"  # every index table has one (none is WITHOUT ROWID)
    batched_creates = True
    blocking = False

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._writer = threading.RLock()  # this process's writers; the lock file orders the processes
        self._full_at: float | None = None  # when a write last met a full disk (None: since emptied)
        self._writer_fd = (os.open(self.path + ".writer", os.O_RDWR | os.O_CREAT, 0o600)
                           if self.path != ":memory:" else None)
        self.migrate()
        self.observe_clock()
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if self.path != ":memory:":
            self._checkpointer = threading.Thread(target=self._checkpoints, name="healthtwin-sqlite-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()

    def _checkpoints(self) -> None:
        with _FORK_GUARD:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        try:
            while not self._stop.wait(CHECKPOINT_SECONDS):
                try:
                    with _FORK_GUARD:
                        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames > WAL_LIMIT_PAGES or (frames > 0 and self._short_of_space()):
                        # Writers that follow each other without a pause never find the WAL wholly copied
                        # and unused, so it never starts over and grows without end (4.5 GB in a 3M-resource
                        # load). With writers held off, TRUNCATE copies the rest, waits for readers, and
                        # empties the file. On a (nearly) full disk every round: the WAL's space is freed as
                        # soon as the database file can take its pages.
                        if not self._truncate(conn):
                            self._full_at = None
                except sqlite3.Error:
                    continue  # busy (another process checkpoints), disk full or closing: the next round tries
        finally:
            with _FORK_GUARD:
                conn.close()

    def _short_of_space(self) -> bool:
        """Whether a write met a full disk since the WAL was last emptied, or the disk has less free space
        than the WAL may take."""
        if self._full_at is not None:
            return True
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < LOW_SPACE_BYTES

    def _fault(self, exc: sqlite3.Error) -> Exception | None:
        """The 507 a full disk becomes (None for other errors, which stay what they are)."""
        code = getattr(exc, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
            self._full_at = time.monotonic()
            return unavailable(f"{_FULL} ({self.path}): nothing was stored. Reads go on; writes resume by "
                               f"themselves once space is freed", 507)
        return None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
            try:
                _set_wal(conn)  # makes the -wal and -shm files: on a full disk, "disk I/O error"
            except sqlite3.Error as exc:
                conn.close()
                if self._fault(exc) is None and not self._short_of_space():
                    raise
                self._full_at = time.monotonic()
                raise unavailable(f"{_FULL}: the database ({self.path}) cannot be opened until space is freed",
                                  507) from exc
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA temp_store=MEMORY")
            # Checkpoints run in a thread of their own (_checkpoints), not inside whichever commit crosses
            # the WAL threshold: that commit used to copy the WAL into the database on a request's time.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def read(self, rtype: str, rid: str) -> Stored | None:
        # The hottest path of the server: one indexed lookup, no cursor management.
        row = self._conn().execute(_READ, (rtype, rid)).fetchone()
        return self.stored(row) if row else None

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        # Inside reads_within(tx) nothing changes: this thread's connection is the transaction's.
        cur = self._conn().cursor()
        try:
            yield cur
        finally:
            cur.close()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """This process's turn to write: its writer lock, then the lock file that orders the processes."""
        with self._writer:
            if self._writer_fd is not None:
                fcntl.lockf(self._writer_fd, fcntl.LOCK_EX)  # blocks until the process before is done
            try:
                yield
            finally:
                if self._writer_fd is not None:
                    fcntl.lockf(self._writer_fd, fcntl.LOCK_UN)

    @contextmanager
    def write_cursor(self) -> Iterator[Any]:
        conn = self._conn()
        with self._writing():
            cur = conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                yield cur
                conn.commit()
            except BaseException as exc:
                # Also after a failed COMMIT: SQLite may keep that transaction open, and this thread's connection
                # would then hold the write lock for good (a full disk once stopped every writer until a restart).
                try:
                    conn.rollback()
                except sqlite3.Error:
                    pass  # rolled back by SQLite already
                fault = self._fault(exc) if isinstance(exc, sqlite3.Error) else None
                if fault is not None:
                    raise fault from exc
                raise
            finally:
                cur.close()

    def checkpoint(self) -> None:
        """Copies the whole WAL into the database file and empties it, now, with writers held off. For
        maintenance and benchmarks: a bench that times work after a burst of writes waits here first, so the
        background thread's copy of that burst is not timed with it."""
        if self.path == ":memory:":
            return
        conn = self._conn()
        while self._truncate(conn):  # busy: a reader, or another process's checkpoint, is still on the WAL
            self._stop.wait(0.01)

    def _truncate(self, conn: sqlite3.Connection) -> bool:
        """A TRUNCATE checkpoint with this store's writers held off; True if SQLite found the WAL busy. The
        writer lock is taken before the fork guard: a thread that forks while holding it waits for the guard."""
        with self._writing(), _FORK_GUARD:
            return bool(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass  # closed from another thread already
            self._all.clear()
        self._local = threading.local()
        if self._writer_fd is not None:
            os.close(self._writer_fd)
            self._writer_fd = None
