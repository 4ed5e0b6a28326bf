"""Forwarding the audit trail to a security operations centre (a SIEM, or an IHE ATNA Audit Record Repository).

The ministry's SOC watches every institution's systems in one place; it gets Health Twin's trail as it is
written, as syslog: RFC 5424 messages over TCP with octet-counting framing (RFC 6587), or over TLS (RFC 5425),
one per entry, in chain order. Each message carries the AuditEvent as JSON (ATNA's FHIR format), facility 10
(security/authorization, as ATNA asks), severity 5 (notice) for answered requests, 4 for refused ones and 3
for failures. The event names its entry: `id` is the sequence number, and an extension holds the entry's
hash and the previous entry's hash, so the receiver sees gaps and reorderings, and every (seq, hash) it
holds is an anchor for `healthtwin audit verify --anchor SEQ:HASH`: a trail rewritten in the database no
longer matches what the SOC received.

The last sequence number sent to a target is kept in the `audit_feed` table and moved on once the socket has
taken the batch; after a restart or a refused connection the feed resumes after it, so an entry may arrive
twice (same `id`). Syslog has no acknowledgement: a receiver that dies with a batch in its buffers loses it.
Before each batch the feed checks that the receiver has not closed the connection (a restarted collector is
noticed, not written into), and the ids and hashes let the SOC see any gap; setting the target's row of
`audit_feed` back sends again from there. The server answers whether or not the SOC is reachable (the
database is the record; the feed catches up). Whatever the number of workers, one
process per data folder forwards: the one that holds `<data>/audit-feed.lock`; the others try again every
LOCK_RETRY seconds and take over if it stops.
"""
from __future__ import annotations

import fcntl
import logging
import os
import select
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from .audit import stored_event

log = logging.getLogger("healthtwin.audit")

CHAIN_EXTENSION = "https://healthtwin.dev/fhir/StructureDefinition/audit-chain"
FACILITY = 10  # security/authorization messages
SEVERITY = {"0": 5, "4": 4, "8": 3}  # notice, warning, error
BATCH = 500
LOCK_RETRY = 30.0
MAX_BACKOFF = 60.0


def syslog_frame(seq: int, prev_hash: str, hash_: str, body: Any, recorded: Any, host: str,
                 app: str = "healthtwin") -> bytes:
    """One entry as an octet-counted RFC 5424 message. An entry that cannot be read as the log wrote it
    (a column of another type, undecodable content) goes out as a serious failure saying so, rather than
    stopping the feed at it for ever: the SOC is exactly who must hear of an altered entry."""
    event = stored_event(seq, body)
    if isinstance(recorded, bool) or not isinstance(recorded, (int, float)):
        recorded = time.time()
    prev_hash, hash_ = (v if isinstance(v, str) else repr(v) for v in (prev_hash, hash_))
    event["id"] = str(seq)
    event.setdefault("extension", []).append({"url": CHAIN_EXTENSION, "extension": [
        {"url": "seq", "valueString": str(seq)}, {"url": "hash", "valueString": hash_},
        {"url": "previous", "valueString": prev_hash}]})
    severity = SEVERITY.get(str(event.get("outcome")), 5)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(recorded)) + f".{int(recorded * 1000) % 1000:03d}Z"
    header = f"<{FACILITY * 8 + severity}>1 {stamp} {host} {app} {os.getpid()} AuditEvent - ".encode()
    message = header + orjson.dumps(event)
    return str(len(message)).encode() + b" " + message


def parse_target(url: str) -> tuple[str, str, int]:
    """("tcp" | "tls", host, port) of tcp://host:port or tls://host:port; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or not parts.port:
        raise ValueError(f"the audit feed takes tcp://host:port or tls://host:port, not {url!r}")
    return parts.scheme, parts.hostname, parts.port


class AuditFeed:
    """Sends the entries of `store`'s audit log to `target` from a background thread (`start`, `stop`)."""

    def __init__(self, store: Any, target: str, lock_dir: str | Path, ca_file: str | None = None,
                 interval: float = 1.0) -> None:
        self.store, self.target, self.interval = store, target, interval
        self.scheme, self.host, self.port = parse_target(target)
        self.ca_file = ca_file
        self.lock_path = Path(lock_dir) / "audit-feed.lock"
        self.hostname = socket.gethostname()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._lock_fd: int | None = None
        self.sent = 0  # entries sent by this process (for tests and status)
        self._ensure_table()

    def _ensure_table(self) -> None:
        real = "DOUBLE PRECISION" if self.store.dialect == "postgres" else "REAL"
        with self.store.write_cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS audit_feed (target TEXT PRIMARY KEY, seq BIGINT NOT NULL, "
                        f"updated {real} NOT NULL)")

    # -- life ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="healthtwin-audit-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._disconnect()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock: another process takes over
            self._lock_fd = None

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            if not self._hold_lock():
                self._stop.wait(LOCK_RETRY)
                continue
            try:
                sent = self.forward_once()
                backoff = 1.0
                if not sent:
                    self._stop.wait(self.interval)
            except OSError as exc:
                log.warning("audit feed to %s: %s; retrying in %.0f s (entries wait in the database)",
                            self.target, exc, backoff)
                self._disconnect()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except Exception:  # the feed must not die on one bad entry or a database hiccup
                log.exception("audit feed to %s failed; retrying", self.target)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _hold_lock(self) -> bool:
        if self._lock_fd is not None:
            return True
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    # -- one round ----------------------------------------------------------------------------------------------
    def cursor(self) -> int:
        rows = self.store.query("SELECT seq FROM audit_feed WHERE target = ?", [self.target])
        return rows[0][0] if rows else 0

    def forward_once(self) -> int:
        """Sends the next batch after the cursor and moves the cursor; the number sent (0: nothing new)."""
        after = self.cursor()
        rows = self.store.query("SELECT seq, recorded, event, prev_hash, hash FROM audit_log WHERE seq > ? "
                                "ORDER BY seq LIMIT ?", [after, BATCH])
        if not rows:
            return 0
        payload = b"".join(syslog_frame(seq, prev, digest, body, recorded, self.hostname)
                           for seq, recorded, body, prev, digest in rows)
        self._connection().sendall(payload)
        last = rows[-1][0]
        with self.store.write_cursor() as cur:
            cur.execute(self.store.sql("UPDATE audit_feed SET seq = ?, updated = ? WHERE target = ?"),
                        (last, time.time(), self.target))
            if cur.rowcount == 0:
                cur.execute(self.store.sql("INSERT INTO audit_feed (target, seq, updated) VALUES (?, ?, ?)"),
                            (self.target, last, time.time()))
        self.sent += len(rows)
        return len(rows)

    def _connection(self) -> socket.socket:
        if self._sock is not None and _closed_by_peer(self._sock):
            self._disconnect()
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=10)
            if self.scheme == "tls":
                context = ssl.create_default_context(cafile=self.ca_file)
                sock = context.wrap_socket(sock, server_hostname=self.host)
            self._sock = sock
        return self._sock

    def _disconnect(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the receiver has closed the connection (or sent something, which a syslog receiver never does):
    written into, such a socket swallows the first batch before the error shows. poll, not select: a server
    holding many connections gives its sockets descriptors past 1024, which select() refuses."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if not poller.poll(0):
        return False
    if isinstance(sock, ssl.SSLSocket):
        return True  # a receiver sends nothing but its close over TLS (and TLS cannot peek): start afresh
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
