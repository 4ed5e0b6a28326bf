"""The batch refresh in bulk: a chunk of children's records read in four plain queries, forecast, and their
recommendations written in one transaction through the store's write path.

Why not the live rule's reader (live.read_cases): that runs each read as a FHIR search (parsing, the search
compiler, paging, a count), seven per batch, and capped the refresh at 576-761 children/s on 2026-12-02
whatever the engine did. Here each worker asks for exactly the rows a forecast reads, by the index tables:
  * the chunk's Patients by id;
  * their Immunizations, by the `patient` reference index;
  * their clinical facts (Condition, AllergyIntolerance, Observation, Procedure) by the `patient`/`subject`
    reference index, only those with a code (or an Observation value) the schedule knows (the engine reads
    only those; the exact system|code is matched again by fhir_io.observation_from);
  * the children's current recommendations by their fixed ids.
The workers read the chunks themselves (the store's WAL on SQLite, or a PostgreSQL connection each), so the
decoding is spread over both cores rather than done by one parent.

Reading happens before the write transaction, so that on SQLite (one writer at a time) one worker reads and
forecasts while the other writes. A dose recorded between the read and the write would then be forecast over
a stale record: the transaction therefore takes the guard (the same lock the live write rule takes) of each
child it has something to write for, and reads their (type, id, version) rows once more, without content; a
child whose rows changed is forecast again inside the transaction by the live rule's own path
(live.refresh_in), which reads through it.
So a refresh and a recorded dose never leave a recommendation behind the record, as with the per-child path.

Writes go through Transaction.insert_many/update_many/delete: new versions, history rows, index rows, one
timestamp per transaction, as any write; unchanged recommendations are left alone. Everything but the SQL
(forecast, comparison with the stored recommendation, index extraction) is done before the transaction.
A recommendation whose version moved since the read sends its child to the per-child path too."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable, Sequence

import orjson

from ...fhir.dates import parse_range
from ...store.records import instant
from . import rules
from .live import SCHEDULES, _STATE, _same, recommendations_for, refresh_in, retired, unindexed_patients
from .recommendations import CLINICAL_TYPES, recommendation_id

Case = tuple[dict, list[dict], list[dict]]
Rows = Callable[[str, Sequence[Any]], list[tuple]]
_COLS = "r.type, r.id, r.version, r.last_updated, r.deleted, r.content"
_KEYS = "r.type, r.id, r.version"


def _marks(n: int) -> str:
    return ",".join("?" * n)


class CohortReader:
    """The four queries of a chunk, over one store and schedule."""

    def __init__(self, store: Any, schedule: rules.Schedule) -> None:
        self.store = store
        self.immunization_pid = store.pid("Immunization", "patient")
        self.clinical_pids = [p for p in (store.pid(t, "subject" if t == "Observation" else "patient")
                                          for t in CLINICAL_TYPES) if p is not None]
        self.code_pids = [p for p in [store.pid(t, "code") for t in CLINICAL_TYPES]
                          + [store.pid("Observation", "value-concept")] if p is not None]
        self.codes = sorted({code for _, code in schedule.coded})
        # the Patient's token parameters the forecast reads, by parameter id (patients())
        self.patient_pids = {p: name for name in ("active", "deceased", "gender")
                             if (p := store.pid("Patient", name)) is not None}
        self.birthdate_pid = store.pid("Patient", "birthdate")

    def _referring(self, rows: Rows, pids: list[int], children: Sequence[str], columns: str,
                   coded: bool) -> list[tuple]:
        if not pids or not children or (coded and (not self.code_pids or not self.codes)):
            return []
        sql = (f"SELECT {columns}, x.target_id FROM idx_reference x JOIN resources r ON r.rid = x.rid "
               f"WHERE x.pid IN ({_marks(len(pids))}) AND x.target_type = 'Patient' "
               f"AND x.target_id IN ({_marks(len(children))}) AND r.deleted = 0")
        params: list[Any] = [*pids, *children]
        if coded:
            sql += (f" AND EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.pid IN "
                    f"({_marks(len(self.code_pids))}) AND t.code IN ({_marks(len(self.codes))}))")
            params += [*self.code_pids, *self.codes]
        return rows(sql, params)  # grouped by child in Python: a chunk is small, and no sort is needed

    def patients(self, rows: Rows, children: Sequence[str]) -> dict[str, tuple[int, dict]]:
        """Each child's (version, Patient) as the forecast reads it: birthDate, gender, active and deceased.

        From the Patient's index rows where they say it exactly, since a Patient is encrypted whole at rest
        and opening one (the data key's unwrap, in Python) cost 117 µs a child on 2026-12-03's machine, a tenth
        of the refresh. The index is written in the same transaction as the content, so it says what the
        content says. The content is opened instead for a Patient without a `deceased` row (not indexed), with
        a birthdate that is not one whole day (parse_range of the day found must give its row back), or with
        more than one row of a parameter."""
        marks = _marks(len(children))
        heads = rows(f"SELECT r.rid, r.id, r.version FROM resources r WHERE r.type = 'Patient' AND r.deleted = 0 "
                     f"AND r.id IN ({marks})", list(children))
        by_rid = {rid: (pid, version, []) for rid, pid, version in heads}
        if by_rid and self.patient_pids:
            rids = list(by_rid)
            names = self.patient_pids
            # `+pid` on SQLite: the (rid, pid) index, a few rows per child, as store/ranked.py does. Without it
            # the planner took the (pid, code) index and scanned every Patient's rows of the parameter for each
            # chunk: 43-53 ms of a chunk's 176 ms of reading at 130,000 children (2026-12-06), and growing with
            # the population, not the chunk (10.2 million citizens' rows a chunk at national scale).
            hint = self.store.index_hint
            for rid, pid, code in rows(f"SELECT rid, pid, code FROM idx_token WHERE rid IN ({_marks(len(rids))}) "
                                       f"AND {hint}pid IN ({_marks(len(names))})", [*rids, *names]):
                by_rid[rid][2].append((names[pid], code))
            if self.birthdate_pid is not None:
                for rid, lo, hi in rows(f"SELECT rid, lo, hi FROM idx_date WHERE rid IN ({_marks(len(rids))}) "
                                        f"AND {hint}pid = ?", [*rids, self.birthdate_pid]):
                    by_rid[rid][2].append(("birthdate", (lo, hi)))
        out: dict[str, tuple[int, dict]] = {}
        unread: list[int] = []
        for rid, (pid, version, found) in by_rid.items():
            patient = _patient_from_index(pid, found)
            if patient is None:
                unread.append(rid)
            else:
                out[pid] = (version, patient)
        if unread:
            opened = self.store.open_content
            for rid, t, pid, version, content in rows(
                    f"SELECT rid, type, id, version, content FROM resources WHERE rid IN ({_marks(len(unread))})",
                    unread):
                if content is not None:
                    out[pid] = (version, orjson.loads(opened(t, pid, content)))
        return out

    def versions(self, rows: Rows, children: Sequence[str]) -> dict[str, frozenset]:
        """Each child's (type, id, version) of every row a forecast reads: what changes when the record does."""
        seen: dict[str, set] = {pid: set() for pid in children}
        for t, rid, version in rows(f"SELECT {_KEYS} FROM resources r WHERE r.type = 'Patient' AND r.deleted = 0 "
                                    f"AND r.id IN ({_marks(len(children))})", list(children)):
            seen[rid].add((t, rid, version))
        for found in (self._referring(rows, [self.immunization_pid] if self.immunization_pid else [], children,
                                      _KEYS, False),
                      self._referring(rows, self.clinical_pids, children, _KEYS, True)):
            for t, rid, version, target in found:
                if target in seen:
                    seen[target].add((t, rid, version))
        return {pid: frozenset(v) for pid, v in seen.items()}

    def cases(self, rows: Rows, children: Sequence[str]) -> tuple[dict[str, Case], dict[str, frozenset]]:
        """Each child's (Patient, Immunizations, clinical facts) and the versions they were read at."""
        opened = self.store.open_content
        cases: dict[str, Case] = {}
        seen: dict[str, set] = {pid: set() for pid in children}
        for pid, (version, patient) in self.patients(rows, children).items():
            if pid in seen:
                cases[pid] = (patient, [], [])
                seen[pid].add(("Patient", pid, version))
        for kind, found in ((1, self._referring(rows, [self.immunization_pid] if self.immunization_pid else [],
                                                children, _COLS, False)),
                            (2, self._referring(rows, self.clinical_pids, children, _COLS, True))):
            for t, rid, version, _, _, content, target in found:
                case = cases.get(target)
                if case is None or (t, rid, version) in seen[target] or content is None:
                    continue
                seen[target].add((t, rid, version))
                case[kind].append(orjson.loads(opened(t, rid, content)))
        for pid in children:
            if pid not in cases:
                seen[pid] = set()  # no Patient: nothing to forecast, and its recommendations go
        return cases, {pid: frozenset(v) for pid, v in seen.items()}


def _patient_from_index(pid: str, found: list[tuple[str, Any]]) -> dict | None:
    """The Patient the forecast reads, from its index rows (CohortReader.patients); None where they do not
    say it exactly."""
    values: dict[str, Any] = {}
    for name, value in found:
        if name in values:
            return None  # two rows of one parameter: a shape the index does not give back exactly
        values[name] = value
    deceased = values.get("deceased")
    if deceased not in ("true", "false"):
        return None  # not indexed (loaded without the index), or an unusual value
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    span = values.get("birthdate")
    if span is not None:
        lo, hi = span
        try:
            day = datetime.fromtimestamp(lo, timezone.utc).date().isoformat()
        except (OverflowError, OSError, ValueError, TypeError):
            return None
        if parse_range(day) != (lo, hi):
            return None  # a year or month only, or a time: read the resource itself
        patient["birthDate"] = day
    if "gender" in values:
        patient["gender"] = values["gender"]
    if values.get("active") in ("true", "false"):
        patient["active"] = values["active"] == "true"
    elif "active" in values:
        return None
    if deceased == "true":
        patient["deceasedBoolean"] = True  # a deceasedDateTime too: is_living reads either as dead
    return patient


def forecast_chunk(cases: dict[str, Case], children: Sequence[str], on: date,
                   schedules: Sequence[str] = SCHEDULES) -> dict[str, list[dict[str, Any]]]:
    """Each child's current recommendations (none without a Patient, as the per-child path)."""
    return {pid: recommendations_for(cases[pid], on, schedules) if pid in cases else [] for pid in children}


@dataclass
class Prepared:
    """A chunk read and forecast, not yet written: the children, the versions the forecast read, and per
    recommendation id what to write (`plan`: id -> (child, version read or None, new resource or None, its
    index rows)); unchanged recommendations are not in the plan."""
    children: list[str]
    on: date
    read_at: dict[str, frozenset]
    plan: dict[str, tuple[str, int | None, dict | None, list[tuple]]]


def _recommendation_rows(rows: Rows, ids: Sequence[str], suffix: str = "", content: bool = True) -> list[tuple]:
    """The recommendations' (type, id, version, last_updated, deleted, content, rid) rows; content NULL when not
    asked for (inside the write: update_many copies the old version to history in SQL, unread)."""
    columns = _COLS.replace("r.", "") if content else _COLS.replace("r.", "").replace("content", "NULL")
    out: list[tuple] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        out += rows(f"SELECT {columns}, rid FROM resources WHERE type = 'ImmunizationRecommendation' "
                    f"AND id IN ({_marks(len(chunk))})" + suffix, chunk)
    return out


def _unchanged(found: Any, new: dict[str, Any]) -> bool:
    """Whether the stored recommendation says what `new` says (live._same: the assessment date aside), mostly
    without parsing it. Stored content is orjson's compact JSON of the same dict (Transaction._stamp), so `new`
    with the stored date and stamp, serialised, is the stored bytes exactly when nothing else differs; and a
    forecast whose recommendations differ is known by their serialised list not being in the stored bytes.
    Parsing and comparing a 6 KB recommendation took 85 us, these 20-25 us (2026-12-06, one machine). Only one in
    another shape (an older writer's) that passes the second test is parsed and compared as live does."""
    if found is None or found.deleted or not found.content:
        return False
    content = found.content
    at = content.find(b',"date":"')
    if at > 0:
        end = content.find(b'"', at + 9)
        meta = {**(new.get("meta") or {}), "versionId": str(found.version), "lastUpdated": instant(found.last_updated)}
        if orjson.dumps({**new, "date": content[at + 9:end].decode(), "meta": meta}) == content:
            return True
    entries = new.get("recommendation")
    if entries is not None and b'"recommendation":' + orjson.dumps(entries) not in content:
        return False
    return _same(orjson.loads(content), new)


def prepare_chunk(services: Any, children: Sequence[str], on: date,
                  schedules: Sequence[str] = SCHEDULES) -> Prepared:
    """Reads (outside any transaction), forecasts, compares with the stored recommendations and extracts the
    new ones' index rows: on SQLite the write transaction (one at a time) is left with the SQL alone."""
    store = services.store
    children = sorted(set(children))
    reader = CohortReader(store, rules.load(schedules[0]))
    cases, read_at = reader.cases(store.query, children)
    results = forecast_chunk(cases, children, on, schedules)
    ids = {recommendation_id(pid, key): pid for pid in children for key in schedules}
    stored = {row[1]: store.stored(row) for row in _recommendation_rows(store.query, sorted(ids))}
    plan: dict[str, tuple[str, int | None, dict | None, list[tuple]]] = {}
    old_ids = {recommendation_id(pid, key): pid for pid in children for key in retired(schedules)}
    for row in _recommendation_rows(store.query, sorted(old_ids), content=False):
        found = store.stored(row)
        if not found.deleted:  # a retired schedule's: deleted with the chunk (live.retired)
            plan[found.id] = (old_ids[found.id], found.version, None, [])
    for pid in children:
        by_id = {r["id"]: r for r in results[pid]}
        for key in schedules:
            rid = recommendation_id(pid, key)
            found = stored.get(rid)
            new = by_id.get(rid)
            version = found.version if found else None
            if new is None:
                if found is not None and not found.deleted:
                    plan[rid] = (pid, version, None, [])
            elif not _unchanged(found, new):
                plan[rid] = (pid, version, new, store.packed_index_rows(new))
    return Prepared(children, on, read_at, plan)


def commit_chunk(services: Any, prepared: Prepared, reindex_patients: bool = True,
                 schedules: Sequence[str] = SCHEDULES) -> tuple[int, int]:
    """Writes a prepared chunk in one transaction: (recommendations written, children forecast again inside it
    because their record, or their recommendation, changed after the read)."""
    children = prepared.children
    store = services.store
    reader = CohortReader(store, rules.load(schedules[0]))
    # Only the children with something to write are guarded: the others get no write from this chunk, so a
    # record changed since the read is left to whoever changed it (the live rule re-forecast it then; a bulk
    # load, which runs no rule, to the next refresh, as one just after this refresh would be). On a daily run
    # that is under 1% of the chunk, and the guard's second read of every child's rows was most of the write
    # transaction's time (0.055 ms a child, 2026-12-06).
    writing = sorted({pid for pid, _, _, _ in prepared.plan.values()})
    with store.transaction() as tx:
        tx.lock_many([f"{_STATE}:{pid}" for pid in writing])
        now = reader.versions(tx.execute, writing) if writing else {}
        stale = {pid for pid in writing if now.get(pid) != prepared.read_at.get(pid)}
        if reindex_patients:
            for pid in unindexed_patients(tx, children):
                found = tx.current("Patient", pid)
                if found is not None and not found[1].deleted and found[1].content:
                    tx.reindex(found[0], "Patient", orjson.loads(found[1].content))
        planned = [rid for rid, (pid, _, _, _) in prepared.plan.items() if pid not in stale]
        existing = {row[1]: (row[6], store.stored(row))
                    for row in _recommendation_rows(tx.execute, planned, store.for_update(), content=False)}
        creates, updates, deletes = [], [], []
        for rid in planned:
            pid, version, new, rows = prepared.plan[rid]
            found = existing.get(rid)
            if (found[1].version if found else None) != version:
                stale.add(pid)  # written since the read (by the live rule): forecast again below
            elif new is None:
                deletes.append((rid, found))
            elif found is None:
                creates.append((rid, new, rows))
            else:
                updates.append((found, new, rows))
        creates = [c for c in creates if prepared.plan[c[0]][0] not in stale]
        updates = [u for u in updates if prepared.plan[u[0][1].id][0] not in stale]
        deletes = [d for d in deletes if prepared.plan[d[0]][0] not in stale]
        tx.insert_many("ImmunizationRecommendation", creates)
        tx.update_many("ImmunizationRecommendation", updates)
        for rid, _ in deletes:
            tx.delete("ImmunizationRecommendation", rid)  # read again with its content, which goes to history
        written = len(creates) + len(updates) + len(deletes)
        if stale:
            written += refresh_in(tx, services, sorted(stale), prepared.on, schedules)
    return written, len(stale)


def refresh_chunk(services: Any, children: Sequence[str], on: date) -> tuple[int, int]:
    return commit_chunk(services, prepare_chunk(services, children, on))
