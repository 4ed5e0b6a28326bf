"""$import (FHIR Bulk Data import, the Argonaut/HL7 proposal): kick-off, status polling, outcome.

POST [base]/$import with a Parameters resource (inputFormat application/fhir+ndjson, input parts with
`type` and `url`) answers 202 with Content-Location of a status URL. Polling it answers 202 with
X-Progress while the job runs, then 200 with the outcome (output counts and an error NDJSON of
OperationOutcomes with file and line). Input URLs are `file:` URLs or paths inside the server's import
folder (<data_dir>/import): the server fetches nothing from the network and reads nothing outside it.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

import orjson
from starlette.responses import Response

from ...fhir.outcome import FHIRError
from ...store.records import instant
from ..responses import fhir
from .registry import operation

log = logging.getLogger("healthtwin.import")


def data_folder(services, name: str) -> Path:
    """The server's `<data>/<name>` folder, made if missing ($import reads from `import`, $export writes to
    `export`); 501 for a server without a data folder."""
    if services.data_dir is None:
        raise FHIRError(501, f"${name} needs a data folder (serve with --data-dir)", "not-supported")
    root = (Path(services.data_dir) / name).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def import_root(services) -> Path:
    return data_folder(services, "import")


def _inputs(services, body) -> list[tuple[str, Path]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FHIRError(400, "$import takes a Parameters resource", location="Parameters")
    root = import_root(services)
    fmt = next((p.get("valueString") or p.get("valueCode") for p in body.get("parameter", [])
                if p.get("name") == "inputFormat"), "application/fhir+ndjson")
    if fmt not in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
        raise FHIRError(400, f"$import: inputFormat '{fmt}' is not supported (application/fhir+ndjson)")
    inputs = []
    for n, p in enumerate(body.get("parameter", [])):
        if p.get("name") != "input":
            continue
        parts = {q.get("name"): q for q in p.get("part", [])}
        url = (parts.get("url") or {}).get("valueUri") or (parts.get("url") or {}).get("valueUrl")
        rtype = (parts.get("type") or {}).get("valueCode") or (parts.get("type") or {}).get("valueString")
        if not url:
            raise FHIRError(400, f"$import: input {n} has no url", location=f"Parameters.parameter[{n}]")
        parsed = urlparse(url)
        if parsed.scheme not in ("", "file"):
            raise FHIRError(400, f"$import: only file URLs inside the import folder are accepted, not '{url}'",
                            location=f"Parameters.parameter[{n}]")
        path = Path(unquote(parsed.path))
        path = (root / path).resolve() if not path.is_absolute() else path.resolve()
        if root not in path.parents and path != root:
            raise FHIRError(400, f"$import: '{url}' is outside the import folder", "security",
                            f"Parameters.parameter[{n}]")
        if not path.is_file():
            raise FHIRError(400, f"$import: '{url}' does not exist", location=f"Parameters.parameter[{n}]")
        inputs.append((rtype or "", path))
    if not inputs:
        raise FHIRError(400, "$import: no input given")
    return inputs


def _run(services, job_id: str, inputs: list[tuple[str, Path]], out_dir: Path) -> None:
    store = services.store
    loader = services.loader(services)
    counts: dict[str, int] = {}
    try:
        for _, path in inputs:
            before = loader.report.loaded
            with open(path, "rb") as fp:
                loader.load_lines(fp, path.name)
            counts[path.name] = loader.report.loaded - before
            _update(store, job_id, "running", loader.report.loaded)
        loader.refresh_statistics()  # before "done"
        errors = loader.report.errors
        with open(out_dir / "errors.ndjson", "wb") as fp:
            for e in errors:
                outcome = dict(e["outcome"])
                outcome["issue"] = [dict(i, diagnostics=f"{e['file']}:{e['line']}: {i.get('diagnostics', '')}")
                                    for i in outcome["issue"]]
                fp.write(orjson.dumps(outcome, option=orjson.OPT_APPEND_NEWLINE))
        result = {"counts": counts, "errors": len(errors)}
        _update(store, job_id, "done", loader.report.loaded, result)
    except Exception as exc:  # the job fails visibly; the server goes on
        log.exception("import job %s failed", job_id)
        _update(store, job_id, "failed", loader.report.loaded, {"error": str(exc)})


def _update(store, job_id: str, status: str, done: int, detail: dict | None = None) -> None:
    with store.transaction() as tx:
        if detail is None:
            tx.execute("UPDATE jobs SET status = ?, done = ?, updated = ? WHERE id = ?",
                       (status, done, time.time(), job_id))
        else:
            tx.execute("UPDATE jobs SET status = ?, done = ?, detail = ?, updated = ? WHERE id = ?",
                       (status, done, orjson.dumps(detail), time.time(), job_id))


@operation("import", system=True, definition="http://hl7.org/fhir/uv/bulkdata/OperationDefinition/import")
async def kick_off(router, request, ctx, rtype, rid, params, body):
    services = router.services
    if request.method != "POST":
        raise FHIRError(405, "$import is started with POST", "not-supported")
    services.policy.authorize(ctx, "import", None)
    if services.loader is None:
        raise FHIRError(501, "$import is not available: this server was built without a bulk loader", "not-supported")
    inputs = _inputs(services, body)
    job_id = str(uuid.uuid4())
    out_dir = import_root(services).parent / "import-results" / job_id
    out_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    request_info = orjson.dumps({"request": f"{ctx.base_url}/$import", "inputs": [str(p) for _, p in inputs]})
    with services.store.transaction() as tx:
        tx.execute("INSERT INTO jobs (id, kind, status, done, detail, created, updated) "
                   "VALUES (?, 'import', 'running', 0, ?, ?, ?)", (job_id, request_info, now, now))
    threading.Thread(target=_run, args=(services, job_id, inputs, out_dir), name=f"import-{job_id}",
                     daemon=True).start()
    return fhir(202, None, ctx, {"content-location": f"{ctx.base_url}/$import-poll-status?_jobId={job_id}"})


@operation("import-poll-status", system=True, definition="http://hl7.org/fhir/uv/bulkdata/OperationDefinition/import")
async def poll(router, request, ctx, rtype, rid, params, body):
    services = router.services
    services.policy.authorize(ctx, "import", None)
    job_id = dict(params).get("_jobId")
    rows = services.store.query("SELECT status, done, detail, created FROM jobs WHERE id = ? AND kind = 'import'",
                                [job_id])
    if not rows:
        raise FHIRError(404, f"No import job '{job_id}'")
    status, done, detail, created = rows[0]
    if status == "running":
        return Response(status_code=202, headers={"x-progress": f"{done} resources loaded", "retry-after": "1"})
    info = orjson.loads(bytes(detail)) if detail else {}
    if status == "failed":
        raise FHIRError(500, f"Import job failed: {info.get('error')}", "exception")
    errors_url = f"{ctx.base_url}/$import-poll-status?_jobId={job_id}&errors=true"
    if dict(params).get("errors") == "true":
        path = import_root(services).parent / "import-results" / job_id / "errors.ndjson"
        return Response(path.read_bytes(), media_type="application/fhir+ndjson")
    body = {"transactionTime": instant(created), "request": f"{ctx.base_url}/$import",
            "requiresAccessToken": True,
            "output": [{"type": "OperationOutcome", "inputUrl": name, "count": count}
                       for name, count in info.get("counts", {}).items()],
            "error": ([{"type": "OperationOutcome", "url": errors_url, "count": info["errors"]}]
                      if info.get("errors") else [])}
    return fhir(200, body, ctx)
