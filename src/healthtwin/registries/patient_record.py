"""One patient's record read as the caller: what the patient summary and the citizen's twin are built from.

Every read is the caller's own search (authorized, restricted by the policy's visibility criteria, released
through api/guard.release), as Observation/$lastn reads, so a summary or a twin never holds a row the caller
could not have searched for. A type the caller's role may not search at all comes back as `withheld`
rather than failing the whole answer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import orjson

from ..api import guard
from ..api.interactions.search import parse
from ..fhir.outcome import FHIRError
from ..request import RequestContext
from ..store.ranked import group_ranked, ranked_codes, ranked_codes_sql, ranked_rids, rows_by_rid
from ..store.search import page_sql, run_search
from ..store.search_sql import alias_pids

SCAN_LIMIT = 5_000  # rows of one type read for one patient; past it the answer says it was cut


@dataclass
class Rows:
    """What one search gave: the released rows (parsed once) and whether some were withheld or cut."""
    rtype: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    withheld: bool = False
    truncated: bool = False


@dataclass(frozen=True)
class Read:
    """One read of the record as a section or the twin asks for it: a search's newest `limit` matches or, with
    `latest`, the newest match of each code (PatientRecord.latest_of_each; its sort is then required)."""
    rtype: str
    criteria: tuple[tuple[str, str], ...] = ()
    sort: str | None = None
    limit: int = SCAN_LIMIT
    latest: bool = False
    patient_param: str = "patient"


# The columns of one statement that carries several reads (PatientRecord._together): the read's number, the
# row's place in its order, a resource row (search.page_sql) or a row id with one indexed code
# (ranked.ranked_codes_sql); what an arm does not carry is NULL, typed, so the UNION's types resolve alike.
_ROW_ARM = ("SELECT {k}, row_number() OVER (), a.type, a.id, a.version, a.last_updated, a.deleted, a.content, "
            "a.rid, NULL::text, NULL::text FROM ({sql}) a")
_CODE_ARM = ("SELECT {k}, row_number() OVER (), NULL::text, NULL::text, NULL::integer, NULL::float8, "
             "NULL::smallint, NULL::bytea, a.rid, a.system, a.code FROM ({sql}) a")

_PATIENT = ("SELECT type, id, version, last_updated, deleted, content, rid FROM resources "
            "WHERE type = 'Patient' AND id = ?")


class PatientRecord:
    def __init__(self, services: Any, ctx: RequestContext, pid: str) -> None:
        self.services, self.ctx, self.pid = services, ctx, pid
        self._patient_row: list = []  # the Patient's row (or None) when read_all read it

    def patient(self) -> dict[str, Any]:
        """The Patient as the caller may see it; 404 when absent or hidden (hidden answers like absent)."""
        self.services.policy.authorize(self.ctx, "read", "Patient")
        row = self._patient_row[0] if self._patient_row else self.services.store.read("Patient", self.pid)
        released = guard.release_one(self.services, self.ctx, row)
        if released is None or released.deleted or released.content is None:
            raise FHIRError(404, f"Patient/{self.pid} is not known")
        return orjson.loads(released.content)

    def _query(self, rtype: str, criteria: list[tuple[str, str]], sort: str | None, patient_param: str):
        """The caller's own search for `criteria` on this patient, restricted to what they may see; None when
        their role may not search the type at all."""
        try:
            self.services.policy.authorize(self.ctx, "search", rtype)
        except FHIRError as exc:
            if exc.status in (401, 403):
                return None
            raise
        params = [(patient_param, f"Patient/{self.pid}")] + criteria + ([("_sort", sort)] if sort else [])
        query = parse(self.services, self.ctx, [rtype], params)
        guard.restrict(self.services, self.ctx, query)  # only what the caller may see is read
        return query

    def never_indexed(self, rtype: str, patient_param: str) -> bool:
        """No row of `rtype` was ever indexed as naming a patient (a type the store holds none of, such as
        MedicationStatement in a record kept as MedicationRequests): the search can match nothing. Asked
        first, it costs one look-up of the parameter ids instead of the search's statement and the reloads of
        the id table that each of its other never-seen parameters (status, the sort's date) would cause."""
        return not alias_pids(self.services.store, self.services.registry, [rtype], patient_param)

    def search(self, rtype: str, criteria: list[tuple[str, str]], sort: str | None = None,
               limit: int = SCAN_LIMIT, patient_param: str = "patient") -> Rows:
        query = self._query(rtype, criteria, sort, patient_param)
        if query is None:
            return Rows(rtype, withheld=True)
        if self.never_indexed(rtype, patient_param):
            return Rows(rtype)
        store = self.services.store
        # SQLite: the ids sorted on their date rows, then the rows (its correlated sort per match is slow);
        # PostgreSQL: the general search, one statement (each is planned there: fewer is faster)
        rids = ranked_rids(store, self.services.registry, query, limit + 1) if store.dialect == "sqlite" else None
        if rids is None:
            query.count = limit
            page = run_search(store, self.services.registry, query)
            return Rows(rtype, self._released(page.matches), truncated=page.has_more)
        rows = rows_by_rid(store, rids[:limit])
        return Rows(rtype, self._released([rows[r] for r in rids[:limit] if r in rows]), truncated=len(rids) > limit)

    def _released(self, rows: list) -> list[dict[str, Any]]:
        released = guard.release(self.services, self.ctx, rows, checked=True)
        return [orjson.loads(r.content) for r in released if r.content]

    def latest_of_each(self, rtype: str, criteria: list[tuple[str, str]], sort: str = "-date",
                       patient_param: str = "patient") -> Rows:
        """`latest_per_code` of the search's matches (newest first), reading only the resources that can be the
        newest of their code. The token index says which codes each match carries, and a match's code key (its
        first coding's system and code) is one of them: a match whose every indexed code already has a newer
        match kept cannot be the newest of its own, so it is not read. A match with one indexed code has that
        key; one with several, or none (a code by text alone), is read and judged on its content. The answer is
        the same resources as `latest_per_code(search(...))`, in the same order."""
        query = self._query(rtype, criteria, sort, patient_param)
        if query is None:
            return Rows(rtype, withheld=True)
        if self.never_indexed(rtype, patient_param):
            return Rows(rtype)
        store, registry = self.services.store, self.services.registry
        ranked = ranked_codes(store, registry, query, "code", SCAN_LIMIT + 1)
        if ranked is None:  # an order or codes the index cannot give: read them all
            rows = self.search(rtype, criteria, sort, patient_param=patient_param)
            rows.resources = latest_per_code(rows.resources)
            return rows
        pick = _pick(ranked)
        return self._newest(rtype, criteria, sort, patient_param, pick, rows_by_rid(store, pick[1]))

    def _newest(self, rtype: str, criteria: list[tuple[str, str]], sort: str, patient_param: str, pick,
                stored: dict) -> Rows:
        """The resources `_pick` chose, released; the plain search's answer where the shortcut's premise fails."""
        truncated, chosen, assumed = pick
        resources = []
        for rid in chosen:
            found = self._released([stored[rid]]) if rid in stored else []
            if rid in assumed and (not found or code_key(found[0].get("code")) != assumed[rid]):
                # the content does not carry the indexed code as its key (masked, or indexed otherwise): the
                # shortcut's premise fails, so read every match as the plain search does
                rows = self.search(rtype, criteria, sort, patient_param=patient_param)
                rows.resources = latest_per_code(rows.resources)
                return rows
            resources += found
        return Rows(rtype, latest_per_code(resources), truncated=truncated)

    def read_all(self, reads: Sequence[Read]) -> dict[Read, Rows]:
        """Every read of `reads`, each as `search` or `latest_of_each` gives it. On PostgreSQL as one statement
        (and one more for the newest of each code), which reads the Patient's row too, for `patient()`: there
        every statement is planned for its values and is a round trip, about 1-2 ms each on a quiet machine,
        several times that on a loaded one; SQLite reads them one by one, cheaply."""
        if self.services.store.dialect != "postgres":
            return {read: self._one(read) for read in reads}
        return self._together(reads)

    def _one(self, read: Read) -> Rows:
        if read.latest:
            return self.latest_of_each(read.rtype, list(read.criteria), read.sort or "-date", read.patient_param)
        return self.search(read.rtype, list(read.criteria), read.sort, read.limit, read.patient_param)

    def _together(self, reads: Sequence[Read]) -> dict[Read, Rows]:
        store, registry = self.services.store, self.services.registry
        done: dict[Read, Rows] = {}
        arms: list[tuple[Read, str, list]] = []
        for read in reads:
            query = self._query(read.rtype, list(read.criteria), read.sort, read.patient_param)
            if query is None:
                done[read] = Rows(read.rtype, withheld=True)
                continue
            if self.never_indexed(read.rtype, read.patient_param):
                done[read] = Rows(read.rtype)
                continue
            query.count = read.limit
            statement = ranked_codes_sql(store, registry, query, "code") if read.latest else \
                page_sql(store, registry, query)
            if statement is None:  # a blinded sort or code: read as on its own
                done[read] = self._one(read)
                continue
            arms.append((read, *statement))
        got: dict[int, list[tuple]] = {k: [] for k in range(-1, len(arms))}
        sql = " UNION ALL ".join([_ROW_ARM.format(k=-1, sql=_PATIENT)] + [
            (_CODE_ARM if read.latest else _ROW_ARM).format(k=k, sql=text) for k, (read, text, _) in enumerate(arms)])
        for row in store.query(sql, [self.pid] + [p for _, _, params in arms for p in params]):
            got[row[0]].append(row)
        self._patient_row = [store.stored(got[-1][0][2:9]) if got[-1] else None]
        picks = {}
        for k, (read, _, _) in enumerate(arms):
            rows = sorted(got[k], key=lambda r: r[1])  # each read's rows in its own order
            if read.latest:
                picks[read] = _pick(group_ranked([r[8:11] for r in rows], SCAN_LIMIT + 1))
            else:
                matches = [store.stored(r[2:9]) for r in rows[:read.limit]]
                done[read] = Rows(read.rtype, self._released(matches), truncated=len(rows) > read.limit)
        stored = rows_by_rid(store, [rid for _, chosen, _ in picks.values() for rid in chosen])
        for read, pick in picks.items():
            done[read] = self._newest(read.rtype, list(read.criteria), read.sort or "-date", read.patient_param,
                                      pick, stored)
        return done

    def read(self, reference: str) -> dict[str, Any] | None:
        """A resource the record refers to (a practitioner, an organisation), if the caller may read it."""
        rtype, _, rid = reference.partition("/")
        if not rid or "/" in rid:
            return None
        try:
            self.services.policy.authorize(self.ctx, "read", rtype)
        except FHIRError:
            return None
        released = guard.release_one(self.services, self.ctx, self.services.store.read(rtype, rid))
        if released is None or released.deleted or released.content is None:
            return None
        return orjson.loads(released.content)


def _pick(ranked: list[tuple[int, set]]) -> tuple[bool, list[int], dict[int, tuple]]:
    """(cut?, the matches that can be the newest of their code, the code assumed of those with one indexed
    code), from the ranked matches newest first: a match whose every indexed code already has a newer match
    kept cannot be the newest of its own."""
    truncated, ranked = len(ranked) > SCAN_LIMIT, ranked[:SCAN_LIMIT]
    settled: set[tuple[str | None, str | None]] = set()
    chosen, assumed = [], {}
    for rid, codes in ranked:
        if codes and codes <= settled:
            continue
        chosen.append(rid)
        if len(codes) == 1:
            assumed[rid] = next(iter(codes))
            settled |= codes
    return truncated, chosen, assumed


def code_key(concept: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """A CodeableConcept's first coding (system, code), or its text: how results of one test are grouped."""
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            return coding.get("system"), coding["code"]
    return None, (concept or {}).get("text")


def latest_per_code(resources: list[dict[str, Any]], per_code: int = 1) -> list[dict[str, Any]]:
    """The newest `per_code` of each code, from resources already sorted newest first."""
    kept: dict[tuple[str | None, str | None], int] = {}
    out = []
    for res in resources:
        key = code_key(res.get("code"))
        if kept.get(key, 0) < per_code:
            kept[key] = kept.get(key, 0) + 1
            out.append(res)
    return out
