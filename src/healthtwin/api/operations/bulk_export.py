"""$export (FHIR Bulk Data Access 2.0): kick-off, status, files, cancel.

`GET|POST [base]/$export`, `[base]/Patient/$export` and `[base]/Group/[id]/$export`, with
`Prefer: respond-async`, answer 202 with `Content-Location` of a status URL (`$export-poll-status?_jobId=`).
Polling answers 202 with `X-Progress` while the job runs, then 200 with the manifest (`transactionTime`,
`request`, `requiresAccessToken: true`, `output` [{type, url, count}], `error`); `DELETE` on it cancels the
job and removes its files. Files are NDJSON, at most FILE_LIMIT resources each, fetched with
`$export-file?_jobId=&file=` and the same token.

The export runs as its caller: each type passes the policy as a search would, and the rows are the ones a
search by that caller would release (criteria, security labels, consent), so an export never shows more than
paging through searches would. Only the caller who started a job may poll, fetch or cancel it; anyone else
gets 404, as for a job that does not exist. Each file download is audited like any read, one event per
patient in it, so each citizen's access log shows which institution exported their data.

Parameters: `_outputFormat` (application/fhir+ndjson, application/ndjson, ndjson), `_since`, `_type` and
`_typeFilter` (`Type?search`, repeated or comma-separated; several for one type are OR-ed, and types without
one are exported whole). `patient` and `_elements` are refused (400), not ignored: an export wider than asked
for is the wrong failure. Files are kept for RETENTION seconds.
"""
from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.responses import Response

from ...fhir.model import ID_RE, is_resource_type, resource_types
from ...fhir.outcome import FHIRError
from ...fhir.search_query import Criterion, Value
from ...store.records import instant
from ...store.search import run_search
from .. import guard
from ...request import RequestContext
from ..http import since_param
from ..responses import SECURITY_HEADERS, fhir
from .bulk_import import data_folder
from .parameters import inputs
from .registry import operation

log = logging.getLogger("healthtwin.export")
FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
PAGE = 1000
FILE_LIMIT = 20_000  # resources per file: a download is read whole (and scanned for its audit), so bounded
RETENTION = 24 * 3600
_CHUNK = 200  # group members per compartment query
_DEFINITION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
_FILTER_SPLIT = re.compile(r",(?=[A-Z][A-Za-z]+\?)")  # commas between filters, not inside their values
_RESULT_PARAMS = {"_count", "_offset", "_after", "_sort", "_include", "_revinclude", "_summary", "_elements",
                  "_total", "_contained", "_containedType"}


def _root(services) -> Path:
    return data_folder(services, "export")


def _owner(ctx: RequestContext) -> str:
    caller = ctx.caller
    return f"{caller.kind}:{caller.subject}:{caller.client_id or ''}"


def _check(services, ctx: RequestContext, rtype: str) -> None:
    """FHIRError unless the caller may search `rtype` with no criteria of its own: the policy's type check,
    then its row rules (a pharmacy, say, finds prescriptions by identifier only)."""
    services.policy.authorize(ctx, "search", rtype)
    guard.restrict(services, ctx, services.parser.parse([rtype], [], strict=True))


def _types(services, ctx: RequestContext, level: str, asked: list[str]) -> list[str]:
    """The types to export: those asked for (each must pass the policy), or every stored type the caller may
    search (limited to the Patient compartment for Patient and Group exports)."""
    if level != "system":
        allowed = {t for t in resource_types() if services.registry.compartment_params("Patient", t)}
        allowed.add("Patient")
    else:
        allowed = None
    if asked:
        for t in asked:
            if allowed is not None and t not in allowed:
                raise FHIRError(400, f"_type: {t} is not in the Patient compartment, so not in a {level} export")
            _check(services, ctx, t)
        return asked
    stored = [r[0] for r in services.store.query("SELECT DISTINCT type FROM resources WHERE deleted = 0", [])]
    out, refusal = [], None
    for t in sorted(stored):
        if allowed is not None and t not in allowed:
            continue
        try:
            _check(services, ctx, t)
        except FHIRError as exc:
            refusal = refusal or exc  # a type the caller may not search is simply not in its export...
            continue
        out.append(t)
    if refusal is not None and not out:
        raise refusal  # ...unless that leaves nothing: then the answer is the refusal, not an empty export
    return out


def _parse(services, ctx: RequestContext, level: str, params: list[tuple[str, str]]) -> dict[str, Any]:
    if (ctx.header("prefer") or "").replace(" ", "").lower().find("respond-async") < 0:
        raise FHIRError(400, "$export runs asynchronously: send 'Prefer: respond-async'")
    asked: list[str] = []
    since = None
    filters: dict[str, list[list[tuple[str, str]]]] = {}
    for name, value in params:
        if name == "_outputFormat":
            if value not in FORMATS:
                raise FHIRError(400, f"_outputFormat '{value}' is not supported ({', '.join(FORMATS)})")
        elif name == "_type":
            for t in value.split(","):
                if not is_resource_type(t.strip()):
                    raise FHIRError(400, f"_type: unknown resource type '{t}'")
                asked.append(t.strip())
        elif name == "_since":
            since = since_param(value)
        elif name == "_typeFilter":
            for text in _FILTER_SPLIT.split(value):
                rtype, _, query = text.partition("?")
                search = parse_qsl(query, keep_blank_values=True)
                if not is_resource_type(rtype) or not search:
                    raise FHIRError(400, f"_typeFilter: '{text}' is not Type?search")
                if any(k in _RESULT_PARAMS for k, _ in search):
                    raise FHIRError(400, f"_typeFilter: '{text}' may select resources, not shape results")
                services.parser.parse([rtype], search, strict=True)  # FHIRError 400 names a bad parameter
                filters.setdefault(rtype, []).append(search)
        elif name in ("patient", "_elements", "includeAssociatedData"):
            raise FHIRError(400, f"$export: {name} is not supported; ask without it")
        else:
            raise FHIRError(400, f"$export: unknown parameter '{name}'")
    types = _types(services, ctx, level, asked)
    if set(filters) - set(types):
        raise FHIRError(400, f"_typeFilter: {', '.join(sorted(set(filters) - set(types)))} is not exported here")
    return {"types": types, "since": since, "filters": filters}


def _members(services, ctx: RequestContext, group_id: str) -> list[str]:
    stored = services.store.read("Group", group_id) if ID_RE.match(group_id) else None
    stored = guard.release_one(services, ctx, stored)
    if stored is None or stored.deleted:
        raise FHIRError(404, f"Group/{group_id} is not known")
    group = orjson.loads(stored.content)
    refs = [((m.get("entity") or {}).get("reference") or "") for m in group.get("member") or []
            if not m.get("inactive")]
    return sorted({r.split("/", 1)[1] for r in refs if r.startswith("Patient/") and ID_RE.match(r[8:])})


def _pages(services, ctx: RequestContext, rtype: str, since: float | None, level: str, members: list[str] | None,
           filters: list[list[tuple[str, str]]]):
    """Every resource of `rtype` the caller may see, page by page, for the export's level; with several
    filters, those any of them selects, each once."""
    base: list[tuple[str, str]] = [("_count", str(PAGE)), ("_total", "none")]
    if since is not None:
        base.append(("_lastUpdated", "gt" + instant(since)))
    chunks: list[list[str] | None] = [None] if members is None else \
        [members[i:i + _CHUNK] for i in range(0, len(members), _CHUNK)]
    seen: set[str] | None = set() if len(filters) > 1 else None
    for search, chunk in ((f, c) for f in filters for c in chunks):
        after: int | None = None
        while True:
            params = base + search + ([("_after", str(after))] if after is not None else [])
            query = services.parser.parse([rtype], params, strict=True)
            if chunk is not None:
                if rtype == "Patient":
                    query.criteria.append(Criterion("_id", "token", None, [Value(i) for i in chunk]))
                else:
                    codes = tuple(services.registry.compartment_params("Patient", rtype) or ())
                    query.criteria.append(Criterion("_compartment", "compartment", None,
                                                    [Value(f"Patient/{i}") for i in chunk], targets=codes))
            guard.restrict(services, ctx, query)
            page = run_search(services.store, services.registry, query)
            rows = guard.release(services, ctx, page.matches, checked=True)
            if seen is not None:
                rows = [r for r in rows if r.id not in seen]
                seen.update(r.id for r in rows)
            yield rows
            if not page.has_more or page.last_rid is None:
                break
            after = page.last_rid


def _run(services, ctx: RequestContext, job_id: str, plan: dict[str, Any], level: str,
         members: list[str] | None, folder: Path) -> None:
    outputs: list[dict[str, Any]] = []
    done = 0
    try:
        for rtype in plan["types"]:
            part, count, fp, name = 1, 0, None, ""
            try:
                for rows in _pages(services, ctx, rtype, plan["since"], level, members,
                                   plan["filters"].get(rtype) or [[]]):
                    if _cancelled(services.store, job_id):
                        return  # by its caller, through whichever server process answered the DELETE
                    for stored in rows:
                        if fp is None or count == FILE_LIMIT:
                            if fp is not None:
                                fp.close()
                                outputs.append({"type": rtype, "file": name, "count": count})
                                part += 1
                            name = f"{rtype}.ndjson" if part == 1 else f"{rtype}-{part}.ndjson"
                            fp, count = open(folder / name, "wb"), 0
                        fp.write(stored.content.rstrip() + b"\n")
                        count += 1
                        done += 1
                    _update(services.store, job_id, "running", done)
            finally:
                if fp is not None:
                    fp.close()
                    outputs.append({"type": rtype, "file": name, "count": count})
        _update(services.store, job_id, "done", done, {"output": outputs})
    except Exception as exc:  # the job fails visibly; the server goes on
        log.exception("export job %s failed", job_id)
        _update(services.store, job_id, "failed", done, {"error": str(exc) if isinstance(exc, FHIRError) else
                                                          "the export failed; see the server log"})


def _update(store, job_id: str, status: str, done: int, extra: dict[str, Any] | None = None) -> None:
    with store.transaction() as tx:
        if extra is None:
            tx.execute("UPDATE jobs SET status = ?, done = ?, updated = ? WHERE id = ? AND status = 'running'",
                       (status, done, time.time(), job_id))
            return
        row = tx.execute("SELECT detail FROM jobs WHERE id = ?", (job_id,))
        detail = {**orjson.loads(bytes(row[0][0])), **extra} if row else extra
        tx.execute("UPDATE jobs SET status = ?, done = ?, detail = ?, updated = ? WHERE id = ? AND status = 'running'",
                   (status, done, orjson.dumps(detail), time.time(), job_id))


def _cancelled(store, job_id: str) -> bool:
    """Whether the job was cancelled: read from its row once a page (any worker may have taken the DELETE)."""
    rows = store.query("SELECT status FROM jobs WHERE id = ?", [job_id])
    return not rows or rows[0][0] == "cancelled"


def _sweep(services, root: Path) -> None:
    """Files of jobs older than RETENTION go, with their rows."""
    old = services.store.query("SELECT id FROM jobs WHERE kind = 'export' AND created < ?", [time.time() - RETENTION])
    for (job_id,) in old:
        shutil.rmtree(root / job_id, ignore_errors=True)
    if old:
        with services.store.transaction() as tx:
            tx.execute("DELETE FROM jobs WHERE kind = 'export' AND created < ?", (time.time() - RETENTION,))


@operation("export", system=True, types=["Patient", "Group"], type_level=True, instance=True,
           definition=_DEFINITION + "export")
async def kick_off(router, request, ctx, rtype, rid, params, body):
    services = router.services
    level = "system" if rtype is None else ("patient" if rtype == "Patient" and rid is None else "group")
    if rtype == "Patient" and rid is not None or rtype == "Group" and rid is None:
        raise FHIRError(404, "$export runs at [base], [base]/Patient and [base]/Group/[id]", "not-supported")
    if body is not None:  # POST: the parameters as a Parameters resource, checked as every operation's are
        params = [(name, "" if value is None else str(value)) for name, value, _ in inputs([], body, "export")]
    root = _root(services)
    await router.run(_sweep, services, root)
    plan = await router.run(_parse, services, ctx, level, list(params))
    members = await router.run(_members, services, ctx, rid) if level == "group" else None
    job_id = str(uuid.uuid4())
    folder = root / job_id
    folder.mkdir(parents=True)
    request_url = f"{ctx.base_url}/{rtype + '/' if rtype else ''}{rid + '/' if rid else ''}$export"
    detail = {"owner": _owner(ctx), "request": request_url, "types": plan["types"]}
    now = time.time()
    with services.store.transaction() as tx:
        tx.execute("INSERT INTO jobs (id, kind, status, done, detail, created, updated) "
                   "VALUES (?, 'export', 'running', 0, ?, ?, ?)", (job_id, orjson.dumps(detail), now, now))
    threading.Thread(target=_run, args=(services, ctx, job_id, plan, level, members, folder),
                     name=f"export-{job_id}", daemon=True).start()
    return fhir(202, None, ctx, {"content-location": f"{ctx.base_url}/$export-poll-status?_jobId={job_id}"})


def _job(services, ctx: RequestContext, params) -> tuple[str, str, int, dict[str, Any], float]:
    """(id, status, done, detail, created) of the caller's own job; 404 for any other."""
    job_id = dict(params).get("_jobId") or ""
    rows = services.store.query("SELECT status, done, detail, created FROM jobs WHERE id = ? AND kind = 'export'",
                                [job_id])
    detail = orjson.loads(bytes(rows[0][2])) if rows and rows[0][2] else {}
    if not rows or detail.get("owner") != _owner(ctx):
        raise FHIRError(404, f"No export job '{job_id}'")
    return job_id, rows[0][0], rows[0][1], detail, rows[0][3]


@operation("export-poll-status", system=True, definition=_DEFINITION + "export", methods=("GET", "DELETE"))
async def poll(router, request, ctx, rtype, rid, params, body):
    services = router.services
    job_id, status, done, detail, created = await router.run(_job, services, ctx, params)
    if request.method == "DELETE":
        with services.store.transaction() as tx:
            tx.execute("UPDATE jobs SET status = 'cancelled', updated = ? WHERE id = ?", (time.time(), job_id))
        shutil.rmtree(_root(services) / job_id, ignore_errors=True)
        return fhir(202, None, ctx)
    if status == "running":
        return Response(status_code=202, headers={**SECURITY_HEADERS, "x-progress": f"{done} resources exported",
                                                  "retry-after": "1"})
    if status == "cancelled":
        raise FHIRError(404, f"Export job '{job_id}' was cancelled")
    if status == "failed":
        raise FHIRError(500, f"Export job failed: {detail.get('error')}", "exception")
    files = f"{ctx.base_url}/$export-file?_jobId={job_id}&file="
    return fhir(200, {"transactionTime": instant(created), "request": detail["request"], "requiresAccessToken": True,
                      "output": [{"type": o["type"], "url": files + o["file"], "count": o["count"]}
                                 for o in detail.get("output", [])], "error": []}, ctx)


@operation("export-file", system=True, definition=_DEFINITION + "export")
async def file(router, request, ctx, rtype, rid, params, body):
    services = router.services
    job_id, status, _, detail, _ = await router.run(_job, services, ctx, params)
    name = dict(params).get("file") or ""
    if status != "done" or name not in {o["file"] for o in detail.get("output", [])}:
        raise FHIRError(404, f"No file '{name}' in export job '{job_id}'")
    content = await router.run((_root(services) / job_id / name).read_bytes)
    return Response(content, headers=SECURITY_HEADERS, media_type="application/fhir+ndjson")
