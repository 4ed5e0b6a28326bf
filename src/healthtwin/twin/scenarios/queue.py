"""The queue of scenario runs, shared by every server process through the analytics folder.

Any process answers `POST /analytics/scenarios`: it writes the run's record as `queued` (records.py), which is
the queue. The process that holds the analytics database (analytics/snapshot.py's lock; it alone reads the
views a run needs) runs a `Worker`: one thread that takes the oldest queued record, claims it by creating
`<id>.claim` exclusively (so two workers on one folder never run a run twice), runs it (runner.execute, which
writes its progress into the record) and looks again; it looks when its own process queued a run, and every
`poll` seconds for those other processes queued. A run whose claim names a process no longer alive on this
machine (the server stopped mid-run) is queued again when a worker starts, so nothing posted is lost; a run
queued while no worker runs waits for the next.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any, Callable

import duckdb

from .records import RunStore
from .runner import execute

log = logging.getLogger("healthtwin.twin")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class Worker:
    def __init__(self, runs: RunStore, connect: Callable[[], duckdb.DuckDBPyConnection], poll: float = 2.0) -> None:
        self.runs, self.connect, self.poll = runs, connect, poll
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.requeue_orphans()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="scenario-runs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)  # a run in progress is left to finish in its daemon thread
            self._thread = None

    def wake(self) -> None:
        """Looks at the queue now (starting the thread if the application's lifespan has not)."""
        if self._thread is None:
            self.start()
        self._wake.set()

    def claim(self, run_id: str) -> bool:
        try:
            fd = os.open(self.runs.claim_path(run_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fp:
            fp.write(self.name)
        return True

    def requeue_orphans(self) -> int:
        """Queues again the runs claimed by a process of this machine that is gone; how many."""
        n = 0
        for path in self.runs.claims():
            try:
                host, pid, _ = path.read_text().split(":")
            except (OSError, ValueError):
                continue
            if host != socket.gethostname() or _alive(int(pid)):
                continue
            run_id = path.name.split(".")[0]
            try:
                record = self.runs.load(run_id)
            except KeyError:
                path.unlink(missing_ok=True)
                continue
            if record["status"] in ("queued", "running"):
                record["status"], record["progress"] = "queued", 0.0
                self.runs.save(record)
                n += 1
            path.unlink(missing_ok=True)
        return n

    def run_next(self) -> dict[str, Any] | None:
        """Claims and runs the oldest queued run; its record, or None if none was queued (or all were taken)."""
        for run_id in self.runs.queued():
            if self.claim(run_id):
                record = self.runs.load(run_id)
                if record["status"] != "queued":  # finished by a worker whose claim was cleared meanwhile
                    self.runs.claim_path(run_id).unlink(missing_ok=True)
                    continue
                record["ran_by"] = self.name
                try:
                    return execute(self.runs, record, self.connect)
                finally:
                    self.runs.claim_path(run_id).unlink(missing_ok=True)
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.run_next() is not None:
                    continue
            except Exception:
                log.exception("scenario queue: a run could not be taken")
            self._wake.wait(self.poll)
            self._wake.clear()
