"""The tamper-evident audit trail: every access as a FHIR AuditEvent (IHE BALP shape) in a hash chain.

Chain: entry n stores hash_n = SHA-256(hash_{n-1} || canonical header || canonical event bytes), where the
header holds seq, recorded, patient and agent. `verify()` walks the chain and names the first entry that
was changed (hash mismatch), removed (gap in seq), reordered or re-linked (prev_hash mismatch). An attacker
with write access who rewrites the whole tail consistently is caught only by an anchor: publish `head()`
somewhere the database admin cannot write (another system, a signed daily mail) and pass the anchors to
`verify()`. On PostgreSQL `harden_postgres()` takes UPDATE/DELETE/TRUNCATE away from the server's role.

Durability ("no acknowledged request goes unaudited, even across a crash"): `append()` returns only after
its transaction has committed, and the request handler must call it BEFORE releasing the response; if it
raises, the handler answers 500 instead of the data. SQLite commits audit batches with synchronous=FULL.

Storage: an event from `rest_events` (nearly all of them: one per patient per request) is stored as the
compact record of the facts it was rendered from (`RestEvent.record`, about a fifth of the bytes), marked by a
leading byte that JSON never starts with; `decode_event()` renders it back into the same AuditEvent. The chain
commits to the stored bytes, so it vouches for the facts; any other event is stored as its JSON. Why: every
audited read appended 1.3 kB to the log, and the WAL that fills sets the reads' p99 (docs/performance.md).

Throughput: appends are group-committed. Concurrent callers queue their events; one of them (the leader)
writes everything queued in one transaction while the others wait, then all return together. No
background thread: if nobody is waiting, a lone append is simply one transaction.
"""
from __future__ import annotations

import base64
import hashlib
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import orjson

from ..store.records import instant

GENESIS = "0" * 64
_SORT = orjson.OPT_SORT_KEYS


class AuditError(Exception):
    """The audit trail could not be written: the request must fail rather than go unaudited."""


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_bad_seq: int | None = None
    reason: str | None = None
    checked: int = 0


def entry_hash(prev_hash: str, seq: int, recorded: float, patient: str | None, agent: str | None,
               event: bytes) -> str:
    header = orjson.dumps({"agent": agent, "patient": patient, "recorded": recorded, "seq": seq}, option=_SORT)
    # Newlines separate the parts unambiguously: neither the hex hash nor compact JSON contains a raw newline.
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + header + b"\n" + event).hexdigest()


def _patient_of(event: dict[str, Any]) -> str | None:
    for entity in event.get("entity") or ():
        ref = ((entity.get("what") or {}).get("reference") or "")
        if ref.startswith("Patient/") and (entity.get("role") or {}).get("code") == "1":
            return ref
    return None


def _agent_of(event: dict[str, Any]) -> str | None:
    for agent in event.get("agent") or ():
        if agent.get("requestor"):
            who = agent.get("who") or {}
            return (who.get("identifier") or {}).get("value") or who.get("reference") or who.get("display")
    return None


def _damaged(recorded: Any, event: Any, patient: Any, agent: Any, prev_hash: Any, stored_hash: Any) -> str | None:
    """Why a row read back from audit_log cannot be an entry the log wrote (a column of another type: SQLite
    stores whatever an UPDATE puts there), or None. Checked before hashing, so verification never crashes."""
    if not isinstance(event, (bytes, bytearray, memoryview)):
        return f"event is {type(event).__name__}, not the bytes the log writes"
    if isinstance(recorded, bool) or not isinstance(recorded, (int, float)):
        return f"recorded is {type(recorded).__name__}, not a number"
    for name, value in (("patient", patient), ("agent", agent)):
        if value is not None and not isinstance(value, str):
            return f"{name} is {type(value).__name__}, not text"
    for name, value in (("prev_hash", prev_hash), ("hash", stored_hash)):
        if not isinstance(value, str):
            return f"{name} is {type(value).__name__}, not text"
    return None


def table_exists(store: Any, name: str) -> bool:
    """Whether the table exists, asked without DDL rights (a hardened server's role has none on the audit
    tables). `name` is one of ours, never input."""
    with store.cursor() as cur:
        if store.dialect == "postgres":
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        else:
            cur.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return bool(cur.fetchone()[0])


class _Pending:
    __slots__ = ("events", "done", "error", "last_seq")

    def __init__(self, events: list[Mapping[str, Any]]) -> None:
        self.events, self.done, self.error, self.last_seq = events, False, None, 0


def _checked(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The events as a list, refusing anything that is not an AuditEvent before it is queued."""
    events = list(events)
    for event in events:
        if isinstance(event, RestEvent):
            continue
        if not isinstance(event, dict) or event.get("resourceType") != "AuditEvent":
            raise ValueError("only AuditEvent resources go into the audit log")
    return events


# The log's indexes: the citizen's access log by patient; auditors' searches by requestor and by date
# (audit_search.py). The last two keys grow with seq, so their inserts land at the end of their B-trees.
_INDEXES = {"audit_log_patient": "patient, recorded", "audit_log_agent": "agent, seq",
            "audit_log_recorded": "recorded"}


def _columns(pg: bool) -> str:
    real, blob = ("DOUBLE PRECISION", "BYTEA") if pg else ("REAL", "BLOB")
    return (f"seq BIGINT PRIMARY KEY, recorded {real} NOT NULL, event {blob} NOT NULL, patient TEXT NULL, "
            f"agent TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL")


class AuditLog:
    def __init__(self, store: Any, batch_window: float = 0.0, max_batch: int = 2000, durable: bool = True) -> None:
        """`batch_window` (seconds) lets a leader wait for more appends before writing; 0 relies on natural
        batching (whatever queued while the previous transaction ran), which costs no latency."""
        self.store, self.batch_window, self.max_batch, self.durable = store, batch_window, max_batch, durable
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._flushing = False
        self._loops: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()
        # PostgreSQL's partitioned log: the highest seq the partitions this process knows of hold (0: none yet
        # known; None: not partitioned, or not PostgreSQL).
        self._covered: int | None = 0 if store.dialect == "postgres" else None

    # -- schema ---------------------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        pg = self.store.dialect == "postgres"
        if table_exists(self.store, "audit_log"):
            self._ensure_indexes()
            return
        columns = _columns(pg)
        with self.store.write_cursor() as cur:
            self.store.lock(cur, "audit-log")
            if pg:  # partitioned by seq, so archiving drops partitions (audit_partitions.py)
                from .audit_partitions import create_table
                create_table(cur, columns)
            else:
                cur.execute(f"CREATE TABLE IF NOT EXISTS audit_log ({columns})")
            for name, columns in _INDEXES.items():
                cur.execute(f"CREATE INDEX IF NOT EXISTS {name} ON audit_log ({columns})")

    def _ensure_indexes(self) -> None:
        """Indexes added since a store was created, where this role may add them: after `audit harden` the
        server's PostgreSQL role may run no DDL on the table (harden, run by an administrator, adds them)."""
        store = self.store
        if store.dialect == "postgres":
            rows = store.query("SELECT pg_has_role(current_user, tableowner, 'USAGE') FROM pg_tables "
                               "WHERE tablename = 'audit_log' AND schemaname = current_schema()", [])
            if not rows or not rows[0][0]:
                return
            have = {r[0] for r in store.query("SELECT indexname FROM pg_indexes WHERE tablename = 'audit_log' "
                                              "AND schemaname = current_schema()", [])}
        else:
            have = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'index' "
                                              "AND tbl_name = 'audit_log'", [])}
        missing = {name: columns for name, columns in _INDEXES.items() if name not in have}
        if missing:
            with store.write_cursor() as cur:
                for name, columns in missing.items():
                    cur.execute(f"CREATE INDEX IF NOT EXISTS {name} ON audit_log ({columns})")

    # -- writing --------------------------------------------------------------------------------------------
    def append(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Writes the events durably and returns the last seq; raises AuditError if they could not be written."""
        events = _checked(events)
        if not events:
            return self.head()[0]
        mine = _Pending(events)
        leader = False
        with self._cond:
            self._queue.append(mine)
            while not mine.done:
                if not self._flushing:
                    self._flushing = leader = True
                    break
                self._cond.wait()
        if leader:
            self._lead(mine)
        if mine.error is not None:
            raise AuditError("the audit trail could not be written") from mine.error
        return mine.last_seq

    async def append_async(self, events: Sequence[Mapping[str, Any]]) -> int:
        """For async handlers: returns once the events are durably written (group commit).

        Requests of one event loop queue their events; one writer task hands whatever has queued to
        append() in a worker thread and resolves every waiting request when that commit returns. Compared with
        a thread per waiting request, this keeps the event loop free of thread hand-offs, which on two cores
        is most of the cost of an audited read."""
        import asyncio
        events = _checked(events)
        if not events:
            return self.head()[0]
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = {"pending": [], "writer": None}
        future = loop.create_future()
        state["pending"].append((events, future))
        if state["writer"] is None or state["writer"].done():
            state["writer"] = loop.create_task(self._write_queued(state))
        return await future

    async def _write_queued(self, state: dict[str, Any]) -> None:
        import asyncio
        while state["pending"]:
            batch, state["pending"] = state["pending"], []
            try:
                last = await asyncio.to_thread(self.append, [e for events, _ in batch for e in events])
            except BaseException as exc:  # none of these requests is acknowledged
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, AuditError) else
                                             AuditError("the audit trail could not be written"))
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(last)

    def _lead(self, mine: _Pending) -> None:
        try:
            if self.batch_window:
                time.sleep(self.batch_window)
            while not mine.done:
                with self._cond:
                    batch, count = [], 0
                    while self._queue and (not batch or count + len(self._queue[0].events) <= self.max_batch):
                        item = self._queue.pop(0)
                        batch.append(item)
                        count += len(item.events)
                try:
                    self._write(batch)
                except BaseException as exc:  # every request in a failed batch fails: none is acknowledged
                    for item in batch:
                        item.error = exc
                with self._cond:
                    for item in batch:
                        item.done = True
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._flushing = False
                self._cond.notify_all()  # a waiter whose events are still queued becomes the next leader

    def _write(self, batch: list[_Pending]) -> None:
        sqlite_full = self.durable and self.store.dialect == "sqlite"
        if sqlite_full:
            # Per-connection and this thread's own connection: the store's NORMAL mode survives a process
            # crash but not power loss; the audit commit must survive both.
            with self.store.cursor() as c:
                c.execute("PRAGMA synchronous=FULL")
        try:
            with self.store.write_cursor() as cur:
                self.append_in(cur, [e for item in batch for e in item.events], batch)
        finally:
            if sqlite_full:
                with self.store.cursor() as c:
                    c.execute("PRAGMA synchronous=NORMAL")

    def append_in(self, cur: Any, events: list[Mapping[str, Any]], batch: list[_Pending] | None = None) -> int:
        """Appends inside the caller's write transaction (e.g. the one that writes the resource, so write and
        audit commit together). Holds the chain lock until that transaction ends — keep it short."""
        store = self.store
        store.lock(cur, "audit-log")  # PostgreSQL: advisory lock across processes; SQLite: BEGIN IMMEDIATE did it
        cur.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        row = cur.fetchone()
        seq, prev = (row[0], row[1]) if row else (0, GENESIS)
        rows = []
        now = time.time()
        for event in events:
            seq += 1
            if isinstance(event, RestEvent):
                patient, agent = event.patient, event.agent
            else:
                event.setdefault("recorded", instant(now))
                patient, agent = _patient_of(event), _agent_of(event)
            body = encode_event(event)
            digest = entry_hash(prev, seq, now, patient, agent, body)
            rows.append((seq, now, body, patient, agent, prev, digest))
            prev = digest
        if self._covered is not None and seq > self._covered:
            self._extend(cur, rows[0][0], seq)
        cur.executemany(store.sql("INSERT INTO audit_log (seq, recorded, event, patient, agent, prev_hash, hash) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?)"), rows)
        if batch is not None:  # tell each waiting request which seq its last event got
            first = rows[0][0]
            for item in batch:
                first += len(item.events)
                item.last_seq = first - 1
        return seq

    def partition(self) -> tuple[int, int] | None:
        """PostgreSQL: a log made before partitioning becomes partitioned (audit_partitions.convert)."""
        if self.store.dialect != "postgres":
            raise ValueError("only a PostgreSQL audit log is partitioned")
        from .audit_partitions import convert
        done = convert(self.store, _columns(True), _INDEXES)
        self._covered = 0
        return done

    def _extend(self, cur: Any, first: int, last: int) -> None:
        """The partitions for seqs first..last, made if missing (once per PARTITION_ROWS entries); a log
        made before partitioning needs none."""
        from .audit_partitions import extend, is_partitioned
        if self._covered == 0 and not is_partitioned(self.store):
            self._covered = None
            return
        self._covered = extend(cur, first, last)

    # -- reading --------------------------------------------------------------------------------------------
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest entry — the value to anchor outside the database."""
        with self.store.cursor() as cur:
            cur.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            row = cur.fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def verify(self, anchors: Iterable[tuple[int, str]] = (), page: int = 5000) -> VerifyResult:
        """Walks the whole chain, from the genesis or from the newest archive checkpoint (audit_archive.py);
        the first problem found is reported with its seq. Anchors older than the checkpoint are the
        archive's to check (`verify_archive`)."""
        from .audit_archive import latest_checkpoint
        anchored = dict(anchors)
        checkpoint = latest_checkpoint(self.store)
        if checkpoint and (isinstance(checkpoint[0], bool) or not isinstance(checkpoint[0], int)
                           or not isinstance(checkpoint[1], str)):
            return VerifyResult(False, 0, "the archive checkpoint is not a (seq, hash) the log wrote (altered)", 0)
        expected, prev = (checkpoint[0] + 1, checkpoint[1]) if checkpoint else (1, GENESIS)
        checked = 0
        if checkpoint and checkpoint[0] in anchored and anchored[checkpoint[0]] != checkpoint[1]:
            return VerifyResult(False, checkpoint[0], "the archive checkpoint differs from the anchored value", 0)
        sql = self.store.sql("SELECT seq, recorded, event, patient, agent, prev_hash, hash FROM audit_log "
                             "WHERE seq >= ? ORDER BY seq LIMIT ?")
        while True:
            with self.store.cursor() as cur:
                cur.execute(sql, (expected, page))
                rows = cur.fetchall()
            for seq, recorded, event, patient, agent, prev_hash, stored_hash in rows:
                if seq != expected:
                    return VerifyResult(False, expected, f"entry {expected} is missing (next entry is {seq})",
                                        checked)
                damaged = _damaged(recorded, event, patient, agent, prev_hash, stored_hash)
                if damaged:
                    return VerifyResult(False, seq, f"{damaged} (altered)", checked)
                if prev_hash != prev:
                    return VerifyResult(False, seq, "broken link: prev_hash is not the hash of the entry before "
                                        "(entries removed, reordered or re-linked)", checked)
                if entry_hash(prev, seq, recorded, patient, agent, bytes(event)) != stored_hash:
                    return VerifyResult(False, seq, "entry content does not match its hash (altered)", checked)
                if seq in anchored and anchored[seq] != stored_hash:
                    return VerifyResult(False, seq, "hash differs from the anchored value (chain rewritten)",
                                        checked)
                prev, expected, checked = stored_hash, expected + 1, checked + 1
            if len(rows) < page:
                break
        missing = [s for s in anchored if s >= expected]
        if missing:
            return VerifyResult(False, expected, f"entries from {expected} on are missing (anchored up to "
                                f"{max(missing)})", checked)
        return VerifyResult(True, None, None, checked)

    def access_log(self, patient_ref: str, since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Who accessed this patient's record: the AuditEvents (id = seq), oldest first."""
        with self.store.cursor() as cur:
            cur.execute(self.store.sql("SELECT seq, event FROM audit_log WHERE patient = ? AND recorded >= ? "
                                       "ORDER BY seq LIMIT ?"), (patient_ref, since or 0.0, limit))
            rows = cur.fetchall()
        out = []
        for seq, body in rows:
            event = stored_event(seq, body)
            event["id"] = str(seq)
            out.append(event)
        return out

    def access_log_page(self, patient_ref: str, before: int | None, count: int, since: float | None = None,
                        other_than: str | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """One page of who accessed this patient's record, newest first: at most `count` AuditEvents with seq
        below `before` (None: from the newest), leaving out those whose requestor is `other_than` (the citizen
        themselves); and the `before` of the next page, None if there is none."""
        sql = "SELECT seq, event FROM audit_log WHERE patient = ? AND recorded >= ?"
        args: list[Any] = [patient_ref, since or 0.0]
        if before is not None:
            sql += " AND seq < ?"
            args.append(before)
        if other_than is not None:
            sql += " AND (agent IS NULL OR agent <> ?)"
            args.append(other_than)
        with self.store.cursor() as cur:
            cur.execute(self.store.sql(sql + " ORDER BY seq DESC LIMIT ?"), (*args, count + 1))
            rows = cur.fetchall()
        out = []
        for seq, body in rows[:count]:
            event = stored_event(seq, body)
            event["id"] = str(seq)
            out.append(event)
        return out, (int(rows[count - 1][0]) if len(rows) > count else None)


# -- building AuditEvents (IHE Basic Audit Log Patterns) ----------------------------------------------------------
_ACTION = {"read": "R", "vread": "R", "history-instance": "R", "search-type": "E", "search-system": "E",
           "search": "E", "history-type": "E", "history-system": "E", "create": "C", "update": "U",
           "patch": "U", "delete": "D", "operation": "E", "transaction": "E", "batch": "E", "capabilities": "R"}
_CS = "http://terminology.hl7.org/CodeSystem/"


def outcome_code(status: int) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (client error), 8 serious failure (server error)."""
    return "0" if status < 400 else ("4" if status < 500 else "8")


class RestEvent(Mapping[str, Any]):
    """An AuditEvent of `rest_events`, held as `record`, the facts it is rendered from (`render_rest`), which is
    what the log stores. Read-only, and rendered only when read as a mapping: a search touching 50 patients
    makes 50 events, which the log never needs rendered."""
    __slots__ = ("record", "_event")

    def __init__(self, record: dict[str, Any]) -> None:
        self.record, self._event = record, None

    def _rendered(self) -> dict[str, Any]:
        if self._event is None:
            self._event = render_rest(self.record)
        return self._event

    def __getitem__(self, key: str) -> Any:
        return self._rendered()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rendered())

    def __len__(self) -> int:
        return len(self._rendered())

    @property
    def patient(self) -> str | None:
        """What `_patient_of` finds in the rendered event."""
        p = self.record.get("p")
        return p if p and p.startswith("Patient/") else None

    @property
    def agent(self) -> str | None:
        """What `_agent_of` finds in the rendered event: the caller's subject, else their kind."""
        return self.record.get("sub") or self.record.get("k")


_COMPACT = b"\x01"  # JSON text never starts with this byte
_COMPACT_VERSION = 1


def encode_event(event: Mapping[str, Any]) -> bytes:
    """The bytes the log stores (and the chain hashes) for an event."""
    if isinstance(event, RestEvent):
        return _COMPACT + orjson.dumps(event.record, option=_SORT)
    return orjson.dumps(event, option=_SORT)


def stored_event(seq: Any, body: Any) -> dict[str, Any]:
    """The AuditEvent of a stored entry, or, when the entry cannot be read as the log wrote it (a column of
    another type, undecodable content), an AuditEvent saying so (outcome 8): the access log, the auditors'
    search and the SIEM feed show an altered entry instead of failing on it."""
    try:
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"event is {type(body).__name__}, not bytes")
        return decode_event(bytes(body))
    except (TypeError, ValueError) as exc:
        return {"resourceType": "AuditEvent", "type": {"system": _CS + "audit-event-type", "code": "rest"},
                "outcome": "8", "outcomeDesc": f"audit entry {seq} cannot be read ({exc}): the stored entry "
                                              f"was altered; `healthtwin audit verify` reports where the chain breaks",
                "agent": [{"who": {"display": "unknown (the audit entry was altered)"}, "requestor": True}],
                "source": {"observer": {"display": "Health Twin"}}}


def decode_event(body: bytes) -> dict[str, Any]:
    """The AuditEvent stored as `body` (see `encode_event`)."""
    if body[:1] == _COMPACT:
        record = orjson.loads(body[1:])
        if record.get("v") != _COMPACT_VERSION:
            raise ValueError(f"unknown compact audit record version {record.get('v')!r}")
        return render_rest(record)
    return orjson.loads(body)


def rest_events(ctx: Any, interaction: str, status: int, resource_type: str | None = None,
                resource_id: str | None = None, patients: Iterable[str] = (), query: str | None = None,
                purpose: str | Sequence[str] | None = None, observer: str = "Health Twin",
                reason: str | None = None) -> list[RestEvent]:
    """BALP RESTful events for one request: one AuditEvent per patient touched (BALP asks for that so each
    patient's access log is complete), or one without a patient."""
    caller = ctx.caller
    record: dict[str, Any] = {"v": _COMPACT_VERSION, "i": interaction, "s": status, "t": instant(time.time()),
                              "sub": caller.subject, "obs": observer, "req": ctx.request_id}
    optional = {"k": caller.kind, "org": caller.organization, "roles": sorted(caller.roles),
                "addr": ctx.client_address,
                "cid": caller.client_id if caller.client_id != caller.subject else None,
                "fu": getattr(caller, "fhir_user", None),
                "rt": resource_type, "rid": resource_id,
                "pur": ([purpose] if isinstance(purpose, str) else list(purpose)) if purpose else None,
                "why": reason if purpose else None}
    record.update((k, v) for k, v in optional.items() if v)
    if query is not None:  # an empty query is still a query entity
        record["q"] = query
    if resource_type == "Patient" and resource_id:
        patients = [f"Patient/{resource_id}", *patients]
    return [RestEvent({**record, "p": patient} if patient else record) for patient in dict.fromkeys(patients) or [None]]


def render_rest(record: dict[str, Any]) -> dict[str, Any]:
    """The BALP AuditEvent of a compact record (`rest_events`)."""
    r = record.get
    agents: list[dict[str, Any]] = [{
        "type": {"coding": [{"system": _CS + "v3-ParticipationType", "code": "IRCP"}]},
        "who": {**({"reference": r("fu")} if r("fu") else {}), "identifier": {"value": r("sub")},
                **({"display": r("k")} if r("k") else {})},
        "requestor": True,
        **({"role": [{"coding": [{"code": role}]} for role in r("roles")]} if r("roles") else {}),
        **({"network": {"address": r("addr"), "type": "2"}} if r("addr") else {}),
    }]
    if r("org"):
        agents[0]["who"]["identifier"]["system"] = r("org")
    if r("cid"):
        agents.append({"type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                            "code": "110150", "display": "Application"}]},
                       "who": {"identifier": {"value": r("cid")}}, "requestor": False})
    rtype, rid, interaction = r("rt"), r("rid"), r("i")
    entities: list[dict[str, Any]] = []
    if r("p"):
        entities.append({"what": {"reference": r("p")}, "type": {"system": _CS + "audit-entity-type", "code": "1"},
                         "role": {"system": _CS + "object-role", "code": "1"}})
    if rtype and rid and rtype != "Patient":
        entities.append({"what": {"reference": f"{rtype}/{rid}"},
                         "type": {"system": _CS + "audit-entity-type", "code": "2"},
                         "role": {"system": _CS + "object-role", "code": "4"}})
    if "q" in record:
        entities.append({"type": {"system": _CS + "audit-entity-type", "code": "2"},
                         "role": {"system": _CS + "object-role", "code": "24"},
                         "query": base64.b64encode(record["q"].encode("utf-8")).decode("ascii"),
                         **({"description": rtype} if rtype else {})})
    event = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": _ACTION.get(interaction, "E"),
        "recorded": r("t"),
        "outcome": outcome_code(r("s")),
        "agent": agents,
        "source": {"observer": {"display": r("obs")},
                   "type": [{"system": _CS + "security-source-type", "code": "4"}]},
        "extension": [{"url": "https://healthtwin.dev/fhir/StructureDefinition/request-id",
                       "valueString": r("req")}],
        "entity": entities,
    }
    if r("pur"):
        event["purposeOfEvent"] = [{"coding": [{"system": _CS + "v3-ActReason", "code": c}],
                                    **({"text": r("why")} if r("why") else {})} for c in r("pur")]
    return event


# -- PostgreSQL hardening -----------------------------------------------------------------------------------------
def harden_postgres(store: Any, app_role: str, owner_role: str = "healthtwin_audit_owner") -> None:
    """Makes audit_log append-only for `app_role` (the server's login role). Run as an administrator (e.g. in
    deployment), after the table exists. The table moves to a separate NOLOGIN owner, the server keeps only
    SELECT and INSERT, and a trigger owned by that owner refuses UPDATE, DELETE and TRUNCATE for everyone —
    including table owners and administrators, unless they deliberately drop it."""
    if store.dialect != "postgres":
        raise ValueError("harden_postgres applies to PostgreSQL stores only")
    from psycopg import sql
    app, owner = sql.Identifier(app_role), sql.Identifier(owner_role)
    AuditLog(store).ensure_schema()
    with store.write_cursor() as cur:
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (app_role,))
        row = cur.fetchone()
        if row is None:
            raise ValueError(f"role {app_role} does not exist")
        if row[0]:
            raise ValueError(f"role {app_role} is a superuser: no privilege can be taken from it")
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner_role,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(owner))
        cur.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (app_role, owner_role))
        if cur.fetchone()[0]:
            raise ValueError(f"{app_role} is a member of {owner_role}; it would keep the owner's rights")
        cur.execute("SELECT current_schema()")
        schema = sql.Identifier(cur.fetchone()[0])
        cur.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(schema, owner))
        cur.execute(sql.SQL("ALTER TABLE {}.audit_log OWNER TO {}").format(schema, owner))
        from .audit_partitions import harden as harden_partitions
        cur.execute("SELECT to_regprocedure('audit_log_extend(bigint,bigint,bigint)') IS NOT NULL")
        if cur.fetchone()[0]:  # a partitioned log: its partitions and the function that adds them
            harden_partitions(cur, schema, owner, app)
        cur.execute(sql.SQL("""CREATE OR REPLACE FUNCTION {}.audit_log_append_only() RETURNS trigger
                               LANGUAGE plpgsql AS $$ BEGIN
                                 RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
                                   USING ERRCODE = 'insufficient_privilege';
                               END $$""").format(schema))
        cur.execute(sql.SQL("ALTER FUNCTION {}.audit_log_append_only() OWNER TO {}").format(schema, owner))
        cur.execute(sql.SQL("DROP TRIGGER IF EXISTS audit_log_no_change ON {}.audit_log").format(schema))
        cur.execute(sql.SQL("DROP TRIGGER IF EXISTS audit_log_no_truncate ON {}.audit_log").format(schema))
        cur.execute(sql.SQL("CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON {}.audit_log "
                            "FOR EACH ROW EXECUTE FUNCTION {}.audit_log_append_only()").format(schema, schema))
        cur.execute(sql.SQL("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {}.audit_log "
                            "FOR EACH STATEMENT EXECUTE FUNCTION {}.audit_log_append_only()").format(schema, schema))
        cur.execute("SELECT to_regclass('audit_log_legacy') IS NOT NULL")
        if cur.fetchone()[0]:  # a converted log (audit_partitions.convert): the parent's triggers now cover it
            for name in ("audit_log_no_change_legacy", "audit_log_no_truncate_legacy"):
                cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}.audit_log_legacy").format(
                    sql.Identifier(name), schema))
        cur.execute(sql.SQL("REVOKE ALL ON {}.audit_log FROM PUBLIC").format(schema))
        cur.execute(sql.SQL("REVOKE ALL ON {}.audit_log FROM {}").format(schema, app))
        cur.execute(sql.SQL("GRANT SELECT, INSERT ON {}.audit_log TO {}").format(schema, app))
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, app))
        # The archive checkpoints (audit_archive.py): read by the server's verify, written by administrators only.
        cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.audit_checkpoint (seq BIGINT PRIMARY KEY, hash TEXT NOT "
                            "NULL, archived DOUBLE PRECISION NOT NULL, file TEXT NOT NULL)").format(schema))
        cur.execute(sql.SQL("ALTER TABLE {}.audit_checkpoint OWNER TO {}").format(schema, owner))
        cur.execute(sql.SQL("REVOKE ALL ON {}.audit_checkpoint FROM PUBLIC").format(schema))
        cur.execute(sql.SQL("REVOKE ALL ON {}.audit_checkpoint FROM {}").format(schema, app))
        cur.execute(sql.SQL("GRANT SELECT ON {}.audit_checkpoint TO {}").format(schema, app))
