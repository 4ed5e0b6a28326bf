"""Background jobs of the server: reindexing after a SearchParameter changes.

A job is a row in `jobs` (kind, status, done/total), so its progress can be read by anyone
(`GET /fhir/$reindex`), and it advances in small committed batches, so a restart loses nothing but
the batch in flight; an unfinished job is resumed when the server starts.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import orjson

from ..store.faults import Unavailable

log = logging.getLogger("healthtwin.jobs")
BATCH = 500


class Jobs:
    def __init__(self, services) -> None:
        self.services = services
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="healthtwin-jobs", daemon=True)
            self._thread.start()
        if self.pending():
            self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def request_reindex(self, definition: dict[str, Any] | None, types: list[str] | None = None, tx=None) -> str:
        """Queues a reindex of the given types (or the bases of a SearchParameter); returns the job id.

        Given `tx`, the job is queued in that transaction, so it exists exactly when the definition does."""
        if types is None:
            bases = (definition or {}).get("base") or []
            types = [bases] if isinstance(bases, str) else list(bases)
        if "Resource" in types or "DomainResource" in types:
            types = []  # every type
        job_id = str(uuid.uuid4())
        store = self.services.store
        where, params = _type_filter(types)
        detail = orjson.dumps({"types": types, "after": 0,
                               "reason": (definition or {}).get("url", "requested")})
        now = time.time()
        sql = ("INSERT INTO jobs (id, kind, status, done, total, detail, created, updated) "
               "VALUES (?, 'reindex', 'queued', 0, ?, ?, ?, ?)")
        if tx is not None:
            total = tx.execute(f"SELECT COUNT(*) FROM resources WHERE deleted = 0{where}", params)[0][0]
            tx.execute(sql, (job_id, total, detail, now, now))
        else:
            with store.transaction() as own:
                total = own.execute(f"SELECT COUNT(*) FROM resources WHERE deleted = 0{where}", params)[0][0]
                own.execute(sql, (job_id, total, detail, now, now))
        self._wake.set()
        return job_id

    def pending(self) -> list[tuple]:
        return self.services.store.query(
            "SELECT id, done, total, detail FROM jobs WHERE kind = 'reindex' AND status IN ('queued', 'running') "
            "ORDER BY created", [])

    def status(self, job_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, kind, status, done, total, created, updated FROM jobs WHERE kind = 'reindex'"
        rows = self.services.store.query(sql + (" AND id = ?" if job_id else "") + " ORDER BY created",
                                         [job_id] if job_id else [])
        return [{"id": r[0], "kind": r[1], "status": r[2], "done": r[3], "total": r[4],
                 "created": r[5], "updated": r[6]} for r in rows]

    def run_pending(self) -> None:
        """Runs every queued job to the end (the worker thread calls this; tests may too)."""
        for job_id, done, total, detail in self.pending():
            self._reindex(job_id, done, orjson.loads(bytes(detail)))

    def _run(self) -> None:
        while not self._stop:
            # Polling (as well as waking) also finds jobs queued by other server processes, and jobs
            # whose queuing transaction committed after the wake-up.
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self._stop:
                return
            try:
                self.sync_definitions()
                self.run_pending()
            except Unavailable as exc:  # the database is away (restarting, disk full): one line, not a traceback
                log.warning("reindex jobs wait for the database: %s", exc.diagnostics)
            except Exception:  # a failing job must not kill the worker; it is retried on the next wake
                log.exception("reindex job failed")

    def sync_definitions(self) -> None:
        """Picks up SearchParameters and profiles written through other server processes."""
        from .definitions import definitions_version, load_runtime_definitions
        if definitions_version(self.services.store) != getattr(self.services, "_definitions_version", None):
            load_runtime_definitions(self.services)

    def _reindex(self, job_id: str, done: int, detail: dict[str, Any]) -> None:
        store = self.services.store
        where, params = _type_filter(detail["types"])
        after = detail.get("after", 0)
        while True:
            rows = store.query(f"SELECT rid, type, id, content FROM resources WHERE deleted = 0 AND rid > ?{where} "
                               f"ORDER BY rid LIMIT {BATCH}", [after, *params])
            with store.transaction() as tx:
                for rid, rtype, rid_text, content in rows:
                    tx.reindex(rid, rtype, orjson.loads(store.open_content(rtype, rid_text, content)))
                done += len(rows)
                after = rows[-1][0] if rows else after
                detail["after"] = after
                status = "running" if rows else "done"
                tx.execute("UPDATE jobs SET status = ?, done = ?, detail = ?, updated = ? WHERE id = ?",
                           (status, done, orjson.dumps(detail), time.time(), job_id))
            if not rows:
                log.info("reindex job %s finished: %d resources", job_id, done)
                return


def _type_filter(types: list[str]) -> tuple[str, list]:
    if not types:
        return "", []
    return f" AND type IN ({','.join('?' * len(types))})", list(types)
