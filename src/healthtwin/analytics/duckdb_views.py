"""Compile SQL on FHIR v2 ViewDefinitions into DuckDB SQL over JSON resources.

Resources live in a relation with columns ``(resource_type VARCHAR, id VARCHAR, content JSON)``:
a table (see ``load_resources``) or an NDJSON file (``ndjson_source``).  The compiled query uses
DuckDB's JSON functions: chains of member steps fuse into one JSONPath (``$.code.coding[*]``),
``forEach`` becomes a lateral ``unnest``, ``forEachOrNull`` a ``LEFT JOIN LATERAL``, ``unionAll`` a
lateral ``UNION ALL`` subquery.  So a large view runs as one vectorised DuckDB query, close to
hand-written SQL.

FHIR JSON has no cardinality markers, so before compiling we ask DuckDB for the merged shape of a
sample of the resources (``json_group_structure``): it tells which elements are arrays and which
choice keys (``valueQuantity`` ...) occur.  Elements missing from the sample fall back to a generic
SQL step that checks ``json_type`` per row, which is slower but always correct.  A choice element reached
without ``ofType()`` is compiled to the one type the sample shows only if the sample saw every resource;
otherwise the Python engine runs the view (``ofType()`` keeps a view on the fast path).

Anything outside the compiled subset raises ``NotCompilable``; ``run_view_duckdb`` then runs the
Python engine over the same resources and bulk-loads the rows, so callers always get an answer.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from typing import Any

import duckdb
import orjson

from .fhirpath_parse import Node, parse, type_name_of
from .fhirpath_sof import REFERENCE_RE, _SUFFIXES, choice_key
from .views import CompiledView, SelectNode, ViewDefinitionError, ViewEvaluationError, compile_view


class NotCompilable(Exception):
    """The view uses something the SQL compiler does not translate (the Python engine will)."""


_INT_TYPES = {"integer", "positiveInt", "unsignedInt", "integer64"}
_LEAF_TYPES = {"VARCHAR": "VARCHAR", "DOUBLE": "DOUBLE", "UBIGINT": "BIGINT", "BIGINT": "BIGINT",
               "BOOLEAN": "BOOLEAN"}
# Choice element names: with an unknown shape we cannot scan keys in SQL, so don't guess.
_CHOICE_BASES = {"value", "effective", "onset", "abatement", "deceased", "multipleBirth", "occurrence",
                 "performed", "timing", "born", "age", "medication", "serviced", "location", "product",
                 "reported", "allowed", "used", "identified", "defaultValue", "fixed", "pattern", "answer"}
_ERROR_MARK = "healthtwin-view:"


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class SqlVal:
    """A compiled FHIRPath value. kind: 'json' (one JSON or NULL), 'list' (JSON[]) or 'scalar'.

    json/list values keep (base, jpath) while they are plain member chains so consecutive steps
    fuse into a single json_extract; ``sql`` is set once a value is no longer a plain path.
    """

    kind: str
    sql: str | None = None
    base: str | None = None
    jpath: str | None = None
    struct: Any = None           # sampled shape at this point (dict, leaf type name) or None
    stype: str | None = None     # SQL type of a scalar
    idx: str = "0"               # SQL of %rowIndex for a focus
    root: bool = False

    def expr(self) -> str:
        if self.sql is not None:
            return self.sql
        if self.jpath == "$":
            return str(self.base)
        return f"json_extract({self.base}, {_q(str(self.jpath))})"

    def leaf(self) -> str | None:
        return _LEAF_TYPES.get(self.struct) if isinstance(self.struct, str) else None


def _known(struct: Any) -> Any:
    return None if struct in ("NULL", "JSON") else struct


# Set in a shape drawn from part of the resources only (more than the sample size): a choice element reached
# without ofType() may then have types the sample did not show, so it is not compiled to the one it showed.
_PARTIAL = "\x00partial"


class _SqlCompiler:
    def __init__(self, view: CompiledView, partial: bool = False) -> None:
        self.view = view
        self.partial = partial
        self.n = itertools.count(1)

    def alias(self, prefix: str) -> str:
        return f"{prefix}{next(self.n)}"

    # ---- FHIRPath -> SQL ----
    def expr(self, n: Node, focus: SqlVal) -> SqlVal:
        kind = n[0]
        if kind == "lit":
            return self.literal(n[1])
        if kind == "this":
            return focus
        if kind == "var":
            if n[1] == "rowIndex":
                return SqlVal("scalar", sql=focus.idx, stype="BIGINT")
            if n[1] in self.view.constants:
                return self.literal(self.view.constants[n[1]])
            raise NotCompilable(f"%{n[1]}")
        if kind == "id":
            return self.member(focus, str(n[1]))
        if kind == "member":
            return self.member(self.expr(n[1], focus), str(n[2]))
        if kind == "call":
            return self.call(n, focus)
        if kind == "indexer":
            index = n[2]
            if index[0] == "var" and isinstance(self.view.constants.get(index[1]), int):
                index = ("lit", self.view.constants[index[1]])
            if index[0] != "lit" or not isinstance(index[1], int) or isinstance(index[1], bool):
                raise NotCompilable("computed index")
            base, i = self.expr(n[1], focus), int(index[1])
            if base.kind == "list":
                return SqlVal("json", sql=f"({base.expr()})[{i + 1}]", struct=base.struct, idx=focus.idx)
            if base.kind == "json":
                return base if i == 0 else SqlVal("json", sql="NULL::JSON")
            raise NotCompilable("index on a scalar")
        if kind == "neg":
            v = self.scalar(self.expr(n[1], focus), "DOUBLE")
            return SqlVal("scalar", sql=f"(-{v.sql})", stype=v.stype)
        if kind == "bin":
            return self.binary(str(n[1]), self.expr(n[2], focus), self.expr(n[3], focus))
        raise NotCompilable(f"FHIRPath {kind}")

    @staticmethod
    def literal(value: Any) -> SqlVal:
        if isinstance(value, bool):
            return SqlVal("scalar", sql="TRUE" if value else "FALSE", stype="BOOLEAN")
        if isinstance(value, int):
            return SqlVal("scalar", sql=f"{value}::BIGINT", stype="BIGINT")
        if isinstance(value, float):
            return SqlVal("scalar", sql=f"{value!r}::DOUBLE", stype="DOUBLE")
        if isinstance(value, str):
            return SqlVal("scalar", sql=_q(value), stype="VARCHAR")
        raise NotCompilable(f"literal {value!r}")

    def member(self, v: SqlVal, name: str) -> SqlVal:
        if v.kind == "scalar":
            raise NotCompilable(f"member {name} of a scalar")
        st, key, sub, seen = _known(v.struct), name, None, False
        if isinstance(st, dict):
            if name in st:
                sub, seen = st[name], True
            else:
                cands = [k for k in st if k.startswith(name) and k[len(name):] in _SUFFIXES]
                if len(cands) > 1:
                    raise NotCompilable(f"choice element {name} has several types")
                if cands and self.partial:
                    raise NotCompilable(f"choice element {name} without ofType(): the sample may not show all "
                                        "of its types")
                if cands:
                    key, sub, seen = cands[0], st[cands[0]], True
        if not seen or v.jpath is None:
            return self.generic_member(v, key)
        is_array = isinstance(sub, list)
        elem = _known(sub[0]) if is_array and sub else (None if is_array else _known(sub))
        kind = "list" if is_array or v.kind == "list" else "json"
        return SqlVal(kind, base=v.base, jpath=f"{v.jpath}.{key}" + ("[*]" if is_array else ""), struct=elem)

    def generic_member(self, v: SqlVal, key: str) -> SqlVal:
        # Shape unknown: decide array-or-object per row.
        if key in _CHOICE_BASES:
            raise NotCompilable(f"choice element {key} not seen in the data sample")
        path = _q(f"$.{key}")
        arr = _q(f"$.{key}[*]")

        def one(x: str) -> str:
            return (f"(CASE WHEN json_type({x}, {path}) = 'ARRAY' THEN json_extract({x}, {arr}) "
                    f"WHEN json_extract({x}, {path}) IS NULL THEN []::JSON[] "
                    f"ELSE [json_extract({x}, {path})] END)")

        if v.kind == "json":
            return SqlVal("list", sql=one(v.expr()))
        e = self.alias("e")
        return SqlVal("list", sql=f"flatten(list_transform({v.expr()}, lambda {e}: {one(e)}))")

    def call(self, n: Node, focus: SqlVal) -> SqlVal:
        _, tnode, name, args = n
        if name == "ofType" and tnode is not None and tnode[0] in ("id", "member") and len(args) == 1:
            tname = type_name_of(args[0])
            if tname is None:
                raise NotCompilable("ofType")
            owner = focus if tnode[0] == "id" else self.expr(tnode[1], focus)
            return self.member(owner, choice_key(str(tnode[-1]), tname))
        base = focus if tnode is None else self.expr(tnode, focus)
        if name == "first" and not args:
            return SqlVal("json", sql=f"({base.expr()})[1]", struct=base.struct) if base.kind == "list" else base
        if name in ("exists", "empty") and not args:
            test = "> 0" if name == "exists" else "= 0"
            if base.kind == "list":
                return SqlVal("scalar", sql=f"(coalesce(len({base.expr()}), 0) {test})", stype="BOOLEAN")
            return SqlVal("scalar", sql=f"({base.expr()} IS {'NOT ' if name == 'exists' else ''}NULL)",
                          stype="BOOLEAN")
        if name == "not" and not args:
            return SqlVal("scalar", sql=f"(NOT {self.scalar(base, 'BOOLEAN').sql})", stype="BOOLEAN")
        if name == "count" and not args:
            sql = f"coalesce(len({base.expr()}), 0)" if base.kind == "list" else f"({base.expr()} IS NOT NULL)::BIGINT"
            return SqlVal("scalar", sql=sql, stype="BIGINT")
        if name == "where" and len(args) == 1 and base.kind in ("list", "json"):
            e = self.alias("e")
            item = SqlVal("json", base=e, jpath="$", struct=base.struct, idx=focus.idx)
            crit = self.scalar(self.expr(args[0], item), "BOOLEAN").sql
            if base.kind == "list":
                return SqlVal("list", sql=f"list_filter({base.expr()}, lambda {e}: {crit})", struct=base.struct)
            return SqlVal("json", sql=f"(SELECT CASE WHEN {crit} THEN {e} END FROM (SELECT {base.expr()} AS {e}))",
                          struct=base.struct)
        if name == "join" and len(args) <= 1:
            sep = self.scalar(self.expr(args[0], focus), "VARCHAR").sql if args else "''"
            if base.kind == "list":
                e = self.alias("e")
                return SqlVal("scalar", sql=f"array_to_string(list_transform({base.expr()}, lambda {e}: {e}->>'$'), {sep})",
                              stype="VARCHAR")
            return SqlVal("scalar", sql=f"coalesce({self.scalar(base, 'VARCHAR').sql}, '')", stype="VARCHAR")
        if name == "getResourceKey" and not args and base.root:
            return SqlVal("scalar", sql=f"json_extract_string({base.expr()}, '$.id')", stype="VARCHAR")
        if name == "extension" and len(args) == 1 and args[0][0] == "lit":
            exts = self.member(base, "extension")
            e = self.alias("e")
            url = _q(str(args[0][1]))
            return SqlVal("list", sql=f"list_filter({_as_list(exts)}, lambda {e}: json_extract_string({e}, '$.url') = {url})",
                          struct=exts.struct)
        if name == "getReferenceKey" and len(args) <= 1 and base.kind == "list":
            e = self.alias("e")
            item = SqlVal("json", base=e, jpath="$", struct=base.struct)
            key = self.call(("call", None, name, args), item).sql
            return SqlVal("list", sql=f"list_filter(list_transform({base.expr()}, lambda {e}: to_json({key})), "
                                      f"lambda {e}: {e} IS NOT NULL)", struct="VARCHAR")
        if name == "getReferenceKey" and len(args) <= 1 and base.kind == "json":
            rtype = type_name_of(args[0]) if args else None
            pattern = REFERENCE_RE.pattern if rtype is None else REFERENCE_RE.pattern.replace("[A-Za-z]+", rtype, 1)
            ref = f"json_extract_string({base.expr()}, '$.reference')" if base.jpath is None else \
                f"json_extract_string({base.base}, {_q(str(base.jpath) + '.reference')})"
            return SqlVal("scalar", sql=f"nullif(regexp_extract({ref}, {_q(pattern)}, 3), '')", stype="VARCHAR")
        raise NotCompilable(f"function {name}()")

    def scalar(self, v: SqlVal, want: str | None) -> SqlVal:
        """A single SQL value of type ``want`` (or of the sampled leaf type when ``want`` is None)."""
        if v.kind == "list":
            raise NotCompilable("a collection where one value is needed")
        if v.kind == "scalar":
            if want is None or v.stype == want or (want == "DOUBLE" and v.stype == "BIGINT"):
                return v
            return SqlVal("scalar", sql=f"CAST({v.sql} AS {want})", stype=want)
        target = want or v.leaf()
        if target is None:
            raise NotCompilable("value of unknown type")
        if target == "VARCHAR":
            sql = (f"json_extract_string({v.base}, {_q(str(v.jpath))})" if v.jpath is not None
                   else f"json_extract_string({v.expr()}, '$')")
        else:
            sql = f"CAST({v.expr()} AS {target})"
        return SqlVal("scalar", sql=sql, stype=target)

    def binary(self, op: str, a: SqlVal, b: SqlVal) -> SqlVal:
        if op in ("and", "or", "xor", "implies"):
            x, y = self.scalar(a, "BOOLEAN").sql, self.scalar(b, "BOOLEAN").sql
            sql = {"and": f"({x} AND {y})", "or": f"({x} OR {y})", "xor": f"({x} <> {y})",
                   "implies": f"((NOT {x}) OR {y})"}[op]
            return SqlVal("scalar", sql=sql, stype="BOOLEAN")
        if op in ("=", "!=") and (a.kind == "list") != (b.kind == "list"):
            # FHIRPath collection = single value: empty -> empty, one item -> compare, more -> false.
            lst, one = (a, b) if a.kind == "list" else (b, a)
            first = SqlVal("json", sql=f"({lst.expr()})[1]", struct=lst.struct)
            cmp = self.binary(op, first, one).sql
            other = "FALSE" if op == "=" else "TRUE"
            return SqlVal("scalar", sql=f"(CASE coalesce(len({lst.expr()}), 0) WHEN 0 THEN NULL WHEN 1 THEN {cmp} "
                                        f"ELSE {other} END)", stype="BOOLEAN")
        if op in ("=", "!=", "<", ">", "<=", ">="):
            hint = next((v.stype for v in (a, b) if v.kind == "scalar"), None) or a.leaf() or b.leaf()
            if hint is None:
                raise NotCompilable("comparison of values of unknown type")
            hint = "DOUBLE" if hint == "BIGINT" else hint
            x, y = self.scalar(a, hint).sql, self.scalar(b, hint).sql
            sqlop = "<>" if op == "!=" else op
            return SqlVal("scalar", sql=f"({x} {sqlop} {y})", stype="BOOLEAN")
        if op in ("+", "-", "*", "/"):
            if op == "+" and "VARCHAR" in (a.stype, a.leaf(), b.stype, b.leaf()):
                return SqlVal("scalar", sql=f"({self.scalar(a, 'VARCHAR').sql} || {self.scalar(b, 'VARCHAR').sql})",
                              stype="VARCHAR")
            x, y = self.scalar(a, "DOUBLE").sql, self.scalar(b, "DOUBLE").sql
            if op == "/":
                return SqlVal("scalar", sql=f"(CASE WHEN {y} = 0 THEN NULL ELSE {x} / {y} END)", stype="DOUBLE")
            return SqlVal("scalar", sql=f"({x} {op} {y})", stype="DOUBLE")
        if op == "&":
            x, y = self.scalar(a, "VARCHAR").sql, self.scalar(b, "VARCHAR").sql
            return SqlVal("scalar", sql=f"(coalesce({x}, '') || coalesce({y}, ''))", stype="VARCHAR")
        raise NotCompilable(f"operator {op}")

    # ---- columns and select structure ----
    def column(self, spec: Any, focus: SqlVal) -> str:
        v = self.expr(parse(spec.path), focus)
        ctype = spec.type
        want = ("BOOLEAN" if ctype == "boolean" else "BIGINT" if ctype in _INT_TYPES
                else "DOUBLE" if ctype == "decimal" else "VARCHAR" if ctype and ctype[0].islower() else None)
        if ctype and want is None:
            raise NotCompilable(f"column of complex type {ctype}")
        if spec.collection:
            e = self.alias("e")
            conv = self.scalar(SqlVal("json", base=e, jpath="$", struct=v.struct), want).sql
            if v.kind == "list":
                return f"list_transform({v.expr()}, lambda {e}: {conv})"
            one = self.scalar(v, want).sql
            return f"(CASE WHEN {one} IS NULL THEN [] ELSE [{one}] END)"
        if v.kind == "list":
            e = self.alias("e")
            conv = self.scalar(SqlVal("json", sql=f"({v.expr()})[1]", struct=v.struct), want).sql
            msg = _q(f"{_ERROR_MARK}{spec.location}.path: column {spec.name!r} returned several values; "
                     "set collection: true")
            return f"(CASE WHEN len({v.expr()}) > 1 THEN error({msg}) ELSE {conv} END)"
        return str(self.scalar(v, want).sql)

    def select(self, node: SelectNode, focus: SqlVal, joins: list[str], cols: list[str], guard: str | None) -> None:
        if node.repeat is not None:
            raise NotCompilable("repeat")
        if node.iterate_text is not None:
            items = self.expr(parse(node.iterate_text), focus)
            if items.kind != "list":
                items = SqlVal("list", sql=_as_list(items), struct=items.struct)
            t = self.alias("t")
            if self.view.uses_row_index:
                rel = (f"LATERAL (SELECT unnest(l) AS v, generate_subscripts(l, 1) - 1 AS i "
                       f"FROM (SELECT {items.expr()} AS l))")
            else:
                rel = f"LATERAL (SELECT unnest({items.expr()}) AS v)"
            if node.or_null:
                if _nested_iteration(node):
                    raise NotCompilable("forEachOrNull around nested iteration")
                joins.append(f"LEFT JOIN {rel} {t} ON TRUE")
                guard = f"{t}.v IS NOT NULL"
            else:
                joins.append(f"CROSS JOIN {rel} {t}")
            idx = (f"coalesce({t}.i, 0)" if node.or_null else f"{t}.i") if self.view.uses_row_index else "0"
            focus = SqlVal("json", base=f"{t}.v", jpath="$", struct=items.struct, idx=idx)
        for spec in node.own:
            sql = self.column(spec, focus)
            keep = guard is None or spec.path.strip() == "%rowIndex"
            cols.append(sql if keep else f"(CASE WHEN {guard} THEN {sql} END)")
        for child in node.selects:
            self.select(child, focus, joins, cols, guard)
        if node.union:
            u = self.alias("u")
            branches = []
            for branch in node.union:
                b = self.alias("b")
                bjoins: list[str] = []
                bcols: list[str] = []
                bfocus = replace(focus, kind="json", sql=None, base=f"{b}.v", jpath="$", idx=f"{b}.i", root=focus.root)
                self.select(branch, bfocus, bjoins, bcols, None)
                sel = ", ".join(f"{c} AS c{i}" for i, c in enumerate(bcols))
                branches.append(f"SELECT {sel} FROM (SELECT {focus.expr()} AS v, {focus.idx} AS i) {b} "
                                + " ".join(bjoins))
            joins.append(f"CROSS JOIN LATERAL ({' UNION ALL '.join(branches)}) {u}")
            cols.extend(f"{u}.c{i}" for i in range(len(node.union[0].columns)))


def _as_list(v: SqlVal) -> str:
    if v.kind == "list":
        return v.expr()
    return f"list_filter([{v.expr()}], lambda x: x IS NOT NULL)"


def _nested_iteration(node: SelectNode) -> bool:
    return bool(node.union) or any(c.iterates or _nested_iteration(c) for c in node.selects)


def sample_structure(con: duckdb.DuckDBPyConnection, source: str, resource: str, sample: int = 10000) -> Any:
    """Merged JSON shape of up to ``sample`` resources of one type (arrays shown as lists)."""
    row = con.execute(
        f"SELECT json_group_structure(content), count(*) FROM (SELECT content FROM {source} "
        f"WHERE resource_type = ? LIMIT {int(sample)})", [resource]).fetchone()
    shape = json.loads(row[0]) if row and row[0] else {}
    if row and row[1] >= sample and isinstance(shape, dict):
        shape[_PARTIAL] = True  # there may be more resources than were sampled
    return shape


def compile_view_sql(view: dict[str, Any] | CompiledView, con: duckdb.DuckDBPyConnection,
                     source: str = "resources", structure: Any = None) -> tuple[str, list[str]]:
    """DuckDB SQL for a view and its column names; raises NotCompilable or ViewDefinitionError."""
    compiled = view if isinstance(view, CompiledView) else compile_view(view)
    if structure is None:
        structure = sample_structure(con, source, compiled.resource)
    comp = _SqlCompiler(compiled, partial=isinstance(structure, dict) and bool(structure.get(_PARTIAL)))
    root = SqlVal("json", base="r.content", jpath="$", struct=structure, root=True)
    joins: list[str] = []
    cols: list[str] = []
    for child in compiled.root.selects:
        comp.select(child, root, joins, cols, None)
    conds = [f"r.resource_type = {_q(compiled.resource)}"]
    for _fn, text, _loc in compiled.wheres:
        v = comp.expr(parse(text), root)
        if v.kind != "scalar" and v.leaf() not in (None, "BOOLEAN"):
            raise NotCompilable("non-boolean where (the Python engine reports the error)")
        conds.append(str(comp.scalar(v, "BOOLEAN").sql))
    names = compiled.column_names
    select = ",\n  ".join(f'{sql} AS "{name}"' for sql, name in zip(cols, names))
    sql = f"SELECT\n  {select}\nFROM {source} AS r\n" + "".join(f"  {j}\n" for j in joins)
    return sql + "WHERE " + " AND ".join(conds), names


def ndjson_source(path: str) -> str:
    """A relation over an NDJSON file with the (resource_type, id, content) shape."""
    return (f"(SELECT json->>'resourceType' AS resource_type, json->>'id' AS id, json AS content "
            f"FROM read_ndjson_objects({_q(path)}))")


def load_resources(con: duckdb.DuckDBPyConnection, resources: list[dict[str, Any]], table: str = "resources") -> None:
    """Create ``table(resource_type, id, content JSON)`` and insert resources."""
    con.execute(f"CREATE OR REPLACE TABLE {table} (resource_type VARCHAR, id VARCHAR, content JSON)")
    con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)",
                    [(r.get("resourceType"), r.get("id"), orjson.dumps(r).decode()) for r in resources])


@dataclass
class DuckDBViewResult:
    columns: list[str]
    rows: list[dict[str, Any]] | None   # None when written to a table
    compiled: bool                      # True: ran as SQL; False: Python fallback
    sql: str | None
    reason: str | None = None           # why it fell back


def _python_fallback(compiled: CompiledView, con: duckdb.DuckDBPyConnection, source: str) -> list[tuple[Any, ...]]:
    cur = con.execute(f"SELECT content FROM {source} WHERE resource_type = ?", [compiled.resource])
    resources = (orjson.loads(row[0]) for row in iter(cur.fetchone, None))
    return list(compiled.tuples(resources))


def run_view_duckdb(view: dict[str, Any] | CompiledView, con: duckdb.DuckDBPyConnection,
                    source: str = "resources", into: str | None = None) -> DuckDBViewResult:
    """Run a view inside DuckDB (or via the Python engine when it cannot be compiled).

    With ``into`` the rows go to a new table of that name (``CREATE OR REPLACE TABLE``) and are not
    fetched; otherwise they are returned as dicts.
    """
    compiled = view if isinstance(view, CompiledView) else compile_view(view)
    names = compiled.column_names
    try:
        sql, _ = compile_view_sql(compiled, con, source)
    except NotCompilable as exc:
        tuples = _python_fallback(compiled, con, source)
        if into is None:
            return DuckDBViewResult(names, [dict(zip(names, t)) for t in tuples], False, None, str(exc))
        cols = ", ".join(f'"{n}" {_sql_type(c.type, c.collection)}' for n, c in zip(names, compiled.columns))
        con.execute(f"CREATE OR REPLACE TABLE {into} ({cols})")
        if tuples:
            con.executemany(f"INSERT INTO {into} VALUES ({', '.join('?' * len(names))})",
                            [[_to_param(v) for v in t] for t in tuples])
        return DuckDBViewResult(names, None, False, None, str(exc))
    try:
        if into is not None:
            con.execute(f"CREATE OR REPLACE TABLE {into} AS {sql}")
            return DuckDBViewResult(names, None, True, sql)
        rows = con.execute(sql).fetchall()
    except duckdb.Error as exc:
        located = located_error(exc)
        if located is not None:
            raise ViewEvaluationError(located[1], located[0]) from None
        raise
    return DuckDBViewResult(names, [dict(zip(names, r)) for r in rows], True, sql)


def _sql_type(ctype: str | None, collection: bool) -> str:
    base = ("BOOLEAN" if ctype == "boolean" else "BIGINT" if ctype in _INT_TYPES
            else "DOUBLE" if ctype == "decimal" else "VARCHAR" if ctype and ctype[0].islower() else "JSON")
    return base + "[]" if collection else base


def _to_param(v: Any) -> Any:
    return orjson.dumps(v).decode() if isinstance(v, dict) else v


def duckdb_runner(view: dict[str, Any], resources: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Conformance-suite runner for the DuckDB path (in-memory database per call)."""
    compiled = compile_view(view)
    con = duckdb.connect()
    try:
        load_resources(con, resources)
        result = run_view_duckdb(compiled, con)
    finally:
        con.close()
    return result.columns, result.rows or []


__all__ = ["NotCompilable", "compile_view_sql", "run_view_duckdb", "load_resources", "ndjson_source",
           "sample_structure", "duckdb_runner", "DuckDBViewResult", "ViewDefinitionError"]


def located_error(exc: Exception) -> tuple[str, str] | None:
    """(location, message) of an error the compiled SQL raised on purpose (marked with _ERROR_MARK), else None."""
    text = str(exc)
    if _ERROR_MARK not in text:
        return None
    loc, _, msg = text.split(_ERROR_MARK, 1)[1].partition(": ")
    return loc, msg.strip()
