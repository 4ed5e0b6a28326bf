"""`$viewdefinition-run` (SQL on FHIR v2): run a ViewDefinition and return its rows synchronously.

Where it is invoked. ViewDefinition is a logical model, not an R4 resource type, so an R4 server cannot store
it as a resource or route `ViewDefinition/...`. The specification's R4 compatibility mode therefore puts the
operation at the system level, which is the primary endpoint here:

* `POST [base]/$viewdefinition-run` with a Parameters body (`viewResource` inline or `viewReference`);
* `POST|GET [base]/Library/[id]/$viewdefinition-run`: the ViewDefinition stored in a Library (below);
* `$run` is accepted as an alias of the name (the operation's name in earlier drafts).

Stored ViewDefinitions (`viewReference`) are Library resources whose `content` holds an attachment with
`contentType` `application/json` (or `application/json+viewdefinition`) and the ViewDefinition JSON in `data`
(base64). A reference is `Library/<id>` or the Library's canonical `url` (optionally `|version`).

Parameters: `viewResource` (a `resource` part, or JSON in `valueString`), `viewReference`, `resource` (inline
resources to use instead of the store), `patient` and `group` (restrict to those patients' compartments),
`_since`, `_limit`, `_format` (json | ndjson | csv | parquet, or their MIME types; otherwise taken from
`Accept`, default ndjson as the specification says) and `header` (CSV header row, default true).
Definition problems answer 400 with an OperationOutcome naming the problem and its location in the view.
"""
from __future__ import annotations

import base64
import csv
import io
import os
import tempfile
from typing import Any, Iterable, Iterator

import duckdb
import orjson
from starlette.responses import Response

from ..fhir.dates import parse_range
from ..fhir.outcome import FHIRError
from ..api import guard
from ..api.operations.parameters import inputs
from ..api.operations.registry import define
from .duckdb_views import _sql_type
from .views import CompiledView, ViewDefinitionError, ViewEvaluationError, compile_view

DEFINITION = "http://sql-on-fhir.org/OperationDefinition/$viewdefinition-run"
FORMATS = {"json": "json", "application/json": "json", "application/fhir+json": "json",
           "ndjson": "ndjson", "application/x-ndjson": "ndjson", "application/ndjson": "ndjson",
           "application/fhir+ndjson": "ndjson", "csv": "csv", "text/csv": "csv",
           "parquet": "parquet", "application/vnd.apache.parquet": "parquet", "application/parquet": "parquet"}
MEDIA = {"json": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8",
         "parquet": "application/vnd.apache.parquet"}
PAGE = 1000


def _ref_id(value: Any, rtype: str, where: str) -> str:
    ref = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str) or not ref:
        raise FHIRError(400, f"{where} needs a reference to a {rtype} (or its id)", location=where)
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == rtype:
        return parts[-1]
    if len(parts) == 1:
        return parts[0]
    if len(parts) >= 4 and parts[-4] == rtype and parts[-2] == "_history":
        return parts[-3]
    raise FHIRError(400, f"{where}: '{ref}' is not a reference to a {rtype}", location=where)


def view_from_library(library: dict[str, Any], where: str) -> dict[str, Any]:
    for att in library.get("content") or []:
        ctype = str(att.get("contentType", ""))
        if not ctype.startswith(("application/json", "application/fhir+json")) or "data" not in att:
            continue
        try:
            view = orjson.loads(base64.b64decode(att["data"]))
        except (ValueError, orjson.JSONDecodeError):
            raise FHIRError(400, f"{where}: the Library's attachment is not base64 JSON", location=where) from None
        if isinstance(view, dict):
            return view
    raise FHIRError(400, f"{where}: the Library holds no ViewDefinition (an application/json attachment)",
                    location=where)


def _library(services: Any, ctx: Any, ref: str, where: str) -> dict[str, Any]:
    services.policy.authorize(ctx, "read", "Library")
    store = services.store
    if ref.startswith("Library/") or "/" not in ref and "|" not in ref and ":" not in ref:
        stored = store.read("Library", ref.split("/", 1)[-1])
        if stored is None or stored.deleted or stored.content is None:
            raise FHIRError(404, f"{where}: {ref} is not known", location=where)
        return orjson.loads(stored.content)
    url, _, version = ref.partition("|")
    found = []
    for rid, content in store.query("SELECT id, content FROM resources WHERE type = 'Library' AND deleted = 0", []):
        lib = orjson.loads(store.open_content("Library", rid, content))
        if lib.get("url") == url and (not version or lib.get("version") == version):
            found.append(lib)
    if not found:
        raise FHIRError(404, f"{where}: no Library with url {ref}", location=where)
    return max(found, key=lambda lib: str(lib.get("version", "")))


def _resources_from_store(services: Any, ctx: Any, compiled: CompiledView, patients: list[str] | None,
                          since: float | None) -> Iterator[dict[str, Any]]:
    """The view's resources, each let out through guard.release like any other row the server sends."""
    store, rtype = services.store, compiled.resource
    if patients is not None:
        from ..store.search import compartment_rids
        rids: set[int] = set()
        for pid in patients:
            rids.update(compartment_rids(store, services.registry, "Patient", pid, [rtype], since))
            if rtype == "Patient":
                rids.update(r[0] for r in store.query("SELECT rid FROM resources WHERE type = 'Patient' AND id = ? "
                                                      "AND deleted = 0", [pid]))
        ordered = sorted(rids)
        for start in range(0, len(ordered), PAGE):
            for stored in guard.release(services, ctx, store.fetch_rows(ordered[start:start + PAGE])):
                if stored.content is not None and stored.type == rtype:
                    yield orjson.loads(stored.content)
        return
    last = ""
    cond, extra = ("AND last_updated >= ? ", [since]) if since is not None else ("", [])
    while True:  # keyset pages: memory stays flat and _limit stops reading early
        rows = store.query(f"SELECT id, rid FROM resources WHERE type = ? AND id > ? AND deleted = 0 {cond}"
                           f"ORDER BY id LIMIT ?", [rtype, last, *extra, PAGE])
        for stored in guard.release(services, ctx, store.fetch_rows([rid for _, rid in rows])):
            if stored.content is not None:
                yield orjson.loads(stored.content)
        if len(rows) < PAGE:
            return
        last = rows[-1][0]


def _in_compartment(resource: dict[str, Any], patients: set[str]) -> bool:
    """For inline resources: the Patient itself, or anything that refers to one of the patients."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id") in patients
    targets = {f"Patient/{p}" for p in patients}

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and any(ref == t or ref.endswith("/" + t) for t in targets):
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(resource)


def run_rows(compiled: CompiledView, resources: Iterable[dict[str, Any]], limit: int | None) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for res in resources:
        rows.extend(compiled.tuples([res]))
        if limit is not None and len(rows) >= limit:
            return rows[:limit]
    return rows


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return orjson.dumps(v).decode()
    return v


def render(compiled: CompiledView, rows: list[tuple[Any, ...]], fmt: str, header: bool = True) -> bytes:
    names = compiled.column_names
    if fmt == "json":
        return orjson.dumps([dict(zip(names, r)) for r in rows])
    if fmt == "ndjson":
        return b"".join(orjson.dumps(dict(zip(names, r))) + b"\n" for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if header:
            w.writerow(names)
        w.writerows([_cell(v) for v in r] for r in rows)
        return buf.getvalue().encode()
    return _parquet(compiled, rows)


def _parquet(compiled: CompiledView, rows: list[tuple[Any, ...]]) -> bytes:
    """Parquet through DuckDB, with column types from the view (so an empty result still has its schema)."""
    names = compiled.column_names
    types = {n: _sql_type(c.type, c.collection) for n, c in zip(names, compiled.columns)}
    with tempfile.TemporaryDirectory(prefix="ht-run-") as tmp:
        src, out = os.path.join(tmp, "rows.ndjson"), os.path.join(tmp, "rows.parquet")
        con = duckdb.connect()
        try:
            cols = ", ".join(f'"{n}" {t}' for n, t in types.items())
            con.execute(f"CREATE TABLE t ({cols})")
            if rows:
                with open(src, "wb") as f:
                    for r in rows:
                        f.write(orjson.dumps(dict(zip(names, r))) + b"\n")
                spec = "{" + ", ".join(f"'{n}': '{t}'" for n, t in types.items()) + "}"
                con.execute(f"INSERT INTO t SELECT * FROM read_json('{src}', format='newline_delimited', "
                            f"columns={spec})")
            con.execute(f"COPY t TO '{out}' (FORMAT parquet)")
        finally:
            con.close()
        with open(out, "rb") as f:
            return f.read()


def _format(value: str | None, accept: str | None) -> str:
    if value:
        fmt = FORMATS.get(value.split(";")[0].strip().lower())
        if fmt is None:
            raise FHIRError(400, f"_format '{value}' is not supported: use json, ndjson, csv or parquet",
                            "not-supported", "_format")
        return fmt
    for item in (accept or "").split(","):
        fmt = FORMATS.get(item.split(";")[0].strip().lower())
        if fmt:
            return fmt
    return "ndjson"


def execute(services: Any, ctx: Any, rtype: str | None, rid: str | None, params: list[tuple[str, str]],
            body: Any) -> Response:
    view: dict[str, Any] | None = None
    inline: list[dict[str, Any]] = []
    patients: list[str] | None = None
    limit = since = fmt_value = None
    header = True
    if rtype == "Library" and rid is not None:
        view = view_from_library(_library(services, ctx, f"Library/{rid}", "Library"), "Library")
    for i, (name, value, part) in enumerate(inputs(params, body, "viewdefinition-run")):
        where = f"Parameters.parameter[{i}]" if part else name
        if name == "viewResource":
            if view is not None:
                raise FHIRError(400, "give one of viewResource, viewReference or a Library id", location=where)
            view = part.get("resource") if part.get("resource") is not None else value
            if isinstance(view, str):
                try:
                    view = orjson.loads(view)
                except orjson.JSONDecodeError as exc:
                    raise FHIRError(400, f"viewResource is not JSON: {exc}", location=where) from None
            if not isinstance(view, dict):
                raise FHIRError(400, "viewResource must hold a ViewDefinition", location=where)
        elif name == "viewReference":
            if view is not None:
                raise FHIRError(400, "give one of viewResource, viewReference or a Library id", location=where)
            ref = value.get("reference") if isinstance(value, dict) else value
            if not isinstance(ref, str) or not ref:
                raise FHIRError(400, "viewReference needs a Library reference or canonical URL", location=where)
            view = view_from_library(_library(services, ctx, ref, where), where)
        elif name == "resource":
            res = part.get("resource") if part else None
            if res is None and isinstance(value, str):
                try:
                    res = orjson.loads(value)
                except orjson.JSONDecodeError:
                    res = None
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                raise FHIRError(400, "each resource parameter must hold a FHIR resource", location=where)
            inline.append(res)
        elif name == "patient":
            patients = (patients or []) + [_ref_id(value, "Patient", where)]
        elif name == "group":
            patients = (patients or []) + _group_members(services, ctx, _ref_id(value, "Group", where), where)
        elif name == "_limit":
            try:
                limit = int(value)
                assert limit >= 1
            except (TypeError, ValueError, AssertionError):
                raise FHIRError(400, f"_limit must be a positive integer, not {value!r}", location=where) from None
        elif name == "_since":
            try:
                since = parse_range(str(value))[0]
            except ValueError as exc:
                raise FHIRError(400, f"_since: {exc}", location=where) from None
        elif name == "_format":
            fmt_value = str(value)
        elif name == "header":
            header = value not in (False, "false")
        elif name == "source":
            raise FHIRError(400, "external data sources are not supported: omit 'source'", "not-supported", where)
        elif name in ("_pretty", "_summary", "_elements"):
            continue
        else:
            raise FHIRError(400, f"unknown parameter '{name}' for $viewdefinition-run", location=where)
    if view is None:
        raise FHIRError(400, "$viewdefinition-run needs viewResource or viewReference (or Library/[id])")
    fmt = _format(fmt_value, ctx.header("accept"))
    try:
        compiled = compile_view(view)
    except ViewDefinitionError as exc:
        raise FHIRError(400, f"Invalid ViewDefinition: {exc.message}", "invalid",
                        f"ViewDefinition.{exc.location}" if exc.location else "ViewDefinition") from None
    services.policy.authorize(ctx, "viewdefinition-run", compiled.resource)
    if inline:
        resources: Iterable[dict[str, Any]] = (
            r for r in inline if r.get("resourceType") == compiled.resource
            and (patients is None or _in_compartment(r, set(patients))))
    else:
        resources = _resources_from_store(services, ctx, compiled, patients, since)
    try:
        rows = run_rows(compiled, resources, limit)
    except ViewEvaluationError as exc:
        raise FHIRError(422, f"The ViewDefinition failed on the data: {exc.message}", "processing",
                        f"ViewDefinition.{exc.location}" if exc.location else None) from None
    return Response(render(compiled, rows, fmt, header), media_type=MEDIA[fmt],
                    headers={"x-content-type-options": "nosniff", "cache-control": "no-store"})


def _group_members(services: Any, ctx: Any, gid: str, where: str) -> list[str]:
    services.policy.authorize(ctx, "read", "Group")
    stored = services.store.read("Group", gid)
    if stored is None or stored.deleted or stored.content is None:
        raise FHIRError(404, f"{where}: Group/{gid} is not known", location=where)
    group = orjson.loads(stored.content)
    members = []
    for m in group.get("member") or []:
        if m.get("inactive") is True:
            continue
        ref = (m.get("entity") or {}).get("reference", "")
        if isinstance(ref, str) and ref.split("/")[-2:-1] == ["Patient"]:
            members.append(ref.split("/")[-1])
    return members


async def _handler(router: Any, request: Any, ctx: Any, rtype: str | None, rid: str | None,
                   params: list[tuple[str, str]], body: Any) -> Response:
    return await router.run(execute, router.services, ctx, rtype, rid, params, body)


# Contributed to the application by analytics/plugin.py (`$run` is the name in earlier drafts).
OPERATIONS = [define(name, types=["Library"], system=True, type_level=True, instance=True, definition=DEFINITION)(_handler)
              for name in ("viewdefinition-run", "run")]
