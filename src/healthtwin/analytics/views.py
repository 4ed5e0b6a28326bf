"""SQL on FHIR v2 ViewDefinition engine (Python back end).

A view is validated and compiled once (``compile_view``): every FHIRPath expression becomes a
closure (see ``fhirpath_sof``), every select node a small row generator.  Running the view is then
a loop over resources producing tuples in a fixed column order; dicts are built only at the end.

Row semantics follow the specification: a select node's rows are the cartesian product of its own
columns, each nested ``select`` and the concatenation of its ``unionAll`` branches, once per item of
its ``forEach`` / ``forEachOrNull`` / ``repeat`` collection (or once for the parent focus).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .fhirpath_sof import Compiler, Env, FhirPathError, Fn


class ViewDefinitionError(ValueError):
    """An invalid view or expression; ``location`` points into the view (``select[0].column[1].path``)."""

    def __init__(self, message: str, location: str = "") -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class ViewEvaluationError(ViewDefinitionError):
    """The view is well-formed but a resource breaks one of its rules (e.g. many values, collection false)."""


VIEW_KEYS = {
    "resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension",
    "modifierExtension", "url", "identifier", "name", "title", "version", "status", "experimental",
    "date", "publisher", "contact", "description", "useContext", "jurisdiction", "purpose",
    "copyright", "resource", "resourceVersion", "profile", "fhirVersion", "constant", "select", "where",
}
SELECT_KEYS = {"id", "extension", "modifierExtension", "column", "select", "forEach", "forEachOrNull",
               "repeat", "unionAll"}
COLUMN_KEYS = {"id", "extension", "modifierExtension", "name", "path", "description", "collection",
               "type", "tag"}
WHERE_KEYS = {"id", "extension", "modifierExtension", "path", "description"}
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass
class ColumnSpec:
    name: str
    path: str
    type: str | None
    collection: bool
    location: str


@dataclass
class SelectNode:
    """One compiled ``select`` element; ``columns`` lists every column it contributes, in order."""

    location: str
    own: list[ColumnSpec] = field(default_factory=list)
    own_fns: list[Callable[[Any, Env], Any]] = field(default_factory=list)
    iterate: Fn | None = None          # forEach / forEachOrNull expression
    iterate_text: str | None = None
    or_null: bool = False
    repeat: list[Fn] | None = None
    repeat_text: list[str] | None = None
    selects: list[SelectNode] = field(default_factory=list)
    union: list[SelectNode] = field(default_factory=list)
    columns: list[ColumnSpec] = field(default_factory=list)
    null_row: tuple[Any, ...] = ()

    @property
    def iterates(self) -> bool:
        return self.iterate is not None or self.repeat is not None

    def rows(self, ctx: Any, row_index: int, env: Env) -> list[tuple[Any, ...]]:
        """All rows of this node for one context item (the parent's focus)."""
        if self.iterate is not None:
            foci: list[Any] | None = self.iterate([ctx], env)
        elif self.repeat is not None:
            foci = self._repeat(ctx, env)
        else:
            return self._rows_at(ctx, row_index, env)
        out: list[tuple[Any, ...]] = []
        for i, focus in enumerate(foci):
            out.extend(self._rows_at(focus, i, env))
        if not foci and self.or_null:
            out.append(self.null_row)
        return out

    def _repeat(self, ctx: Any, env: Env) -> list[Any]:
        # Depth-first pre-order over every path in ``repeat`` (so %rowIndex follows document order).
        assert self.repeat is not None
        out: list[Any] = []

        def walk(node: Any) -> None:
            for fn in self.repeat or ():
                for child in fn([node], env):
                    out.append(child)
                    walk(child)

        walk(ctx)
        return out

    def _rows_at(self, focus: Any, row_index: int, env: Env) -> list[tuple[Any, ...]]:
        env.row_index = row_index
        result = [tuple([fn(focus, env) for fn in self.own_fns])]
        for child in self.selects:
            child_rows = child.rows(focus, row_index, env)
            if not child_rows:
                return []
            result = child_rows if result == [()] else [a + b for a in result for b in child_rows]
        if self.union:
            branch_rows = [r for branch in self.union for r in branch.rows(focus, row_index, env)]
            result = [a + b for a in result for b in branch_rows]
        return result


@dataclass
class CompiledView:
    """A validated view ready to run over many resources."""

    definition: dict[str, Any]
    resource: str
    constants: dict[str, Any]
    root: SelectNode
    wheres: list[tuple[Fn, str, str]]
    uses_row_index: bool

    @property
    def columns(self) -> list[ColumnSpec]:
        return self.root.columns

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.root.columns]

    def tuples(self, resources: Iterable[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
        """Rows as tuples (column order = ``column_names``), skipping resources of other types."""
        rtype, wheres, root = self.resource, self.wheres, self.root
        env = Env()
        for res in resources:
            if res.get("resourceType") != rtype:
                continue
            env.resource = res
            env.row_index = 0
            if wheres and not self._passes(res, env):
                continue
            yield from root.rows(res, 0, env)

    def _passes(self, res: dict[str, Any], env: Env) -> bool:
        for fn, text, loc in self.wheres:
            try:
                got = fn([res], env)
            except FhirPathError as exc:
                raise ViewEvaluationError(str(exc), loc) from None
            if not got:
                return False
            if len(got) > 1 or not isinstance(got[0], bool):
                raise ViewEvaluationError(f"where path {text!r} must evaluate to a boolean, got {got[:3]!r}", loc)
            if not got[0]:
                return False
        return True

    def run(self, resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        names = self.column_names
        return [dict(zip(names, row)) for row in self.tuples(resources)]


def _fail(message: str, location: str) -> ViewDefinitionError:
    return ViewDefinitionError(message, location)


def _check_keys(obj: Any, allowed: set[str], location: str, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(f"{what} must be an object, got {type(obj).__name__}", location)
    unknown = sorted(k for k in obj if k not in allowed and not k.startswith("_"))
    if unknown:
        raise _fail(f"unknown key(s) {', '.join(unknown)} in {what}", location)
    return obj


def _constants(view: dict[str, Any]) -> dict[str, Any]:
    raw = view.get("constant", [])
    if not isinstance(raw, list):
        raise _fail("constant must be an array", "constant")
    out: dict[str, Any] = {}
    for i, const in enumerate(raw):
        loc = f"constant[{i}]"
        if not isinstance(const, dict):
            raise _fail("constant must be an object", loc)
        name = const.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise _fail(f"constant needs a valid 'name', got {name!r}", loc)
        values = [k for k in const if k.startswith("value")]
        extra = sorted(k for k in const if k not in ("name", "id", "extension") and not k.startswith("value"))
        if extra:
            raise _fail(f"unknown key(s) {', '.join(extra)} in constant", loc)
        if len(values) != 1:
            raise _fail(f"constant {name!r} needs exactly one value[x], got {len(values)}", loc)
        if name in out:
            raise _fail(f"duplicate constant {name!r}", loc)
        out[name] = const[values[0]]
    return out


class _Builder:
    def __init__(self, constants: dict[str, Any]) -> None:
        self.compiler = Compiler(constants)

    def expr(self, text: Any, location: str) -> Fn:
        if not isinstance(text, str):
            raise _fail(f"expected a FHIRPath string, got {type(text).__name__}", location)
        try:
            return self.compiler.compile(text)
        except FhirPathError as exc:
            raise _fail(str(exc), location) from None

    def select(self, raw: Any, location: str) -> SelectNode:
        obj = _check_keys(raw, SELECT_KEYS, location, "select")
        node = SelectNode(location)
        iter_keys = [k for k in ("forEach", "forEachOrNull", "repeat") if k in obj]
        if len(iter_keys) > 1:
            raise _fail(f"only one of forEach, forEachOrNull, repeat allowed, got {iter_keys}", location)
        if not any(k in obj for k in ("column", "select", "unionAll")):
            raise _fail("select needs at least one of column, select, unionAll", location)
        if "forEach" in obj or "forEachOrNull" in obj:
            key = "forEach" if "forEach" in obj else "forEachOrNull"
            node.iterate = self.expr(obj[key], f"{location}.{key}")
            node.iterate_text = obj[key]
            node.or_null = key == "forEachOrNull"
        if "repeat" in obj:
            paths = obj["repeat"]
            if not isinstance(paths, list) or not paths:
                raise _fail("repeat must be a non-empty array of FHIRPath strings", f"{location}.repeat")
            node.repeat = [self.expr(p, f"{location}.repeat[{i}]") for i, p in enumerate(paths)]
            node.repeat_text = list(paths)
        for i, col in enumerate(self._array(obj, "column", location)):
            spec, fn = self.column(col, f"{location}.column[{i}]")
            node.own.append(spec)
            node.own_fns.append(fn)
        node.columns.extend(node.own)
        for i, sub in enumerate(self._array(obj, "select", location)):
            child = self.select(sub, f"{location}.select[{i}]")
            node.selects.append(child)
            node.columns.extend(child.columns)
        branches = self._array(obj, "unionAll", location)
        for i, sub in enumerate(branches):
            node.union.append(self.select(sub, f"{location}.unionAll[{i}]"))
        if node.union:
            first = [c.name for c in node.union[0].columns]
            for i, branch in enumerate(node.union[1:], 1):
                names = [c.name for c in branch.columns]
                if names != first:
                    raise _fail(f"unionAll branches must have the same columns in the same order: "
                                f"{first} vs {names}", f"{location}.unionAll[{i}]")
            node.columns.extend(node.union[0].columns)
        # forEachOrNull's empty row: all nulls, but %rowIndex is still 0 (row_index.json).
        own_null = tuple(0 if c.path.strip() == "%rowIndex" else None for c in node.own)
        node.null_row = own_null + (None,) * (len(node.columns) - len(own_null))
        return node

    @staticmethod
    def _array(obj: dict[str, Any], key: str, location: str) -> list[Any]:
        val = obj.get(key, [])
        if not isinstance(val, list):
            raise _fail(f"{key} must be an array", f"{location}.{key}")
        return val

    def column(self, raw: Any, location: str) -> tuple[ColumnSpec, Callable[[Any, Env], Any]]:
        obj = _check_keys(raw, COLUMN_KEYS, location, "column")
        name = obj.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise _fail(f"column needs a 'name' made of letters, digits and _, got {name!r}", f"{location}.name")
        if "path" not in obj:
            raise _fail(f"column {name!r} has no 'path'", location)
        ctype = obj.get("type")
        if ctype is not None and not isinstance(ctype, str):
            raise _fail("column type must be a string", f"{location}.type")
        collection = obj.get("collection", False)
        if not isinstance(collection, bool):
            raise _fail("collection must be true or false", f"{location}.collection")
        fn = self.expr(obj["path"], f"{location}.path")
        spec = ColumnSpec(name, obj["path"], ctype, collection, location)
        return spec, _column_fn(fn, spec)


def _column_fn(fn: Fn, spec: ColumnSpec) -> Callable[[Any, Env], Any]:
    loc = f"{spec.location}.path"
    if spec.collection:
        def many(focus: Any, env: Env) -> Any:
            try:
                return fn([focus], env)
            except FhirPathError as exc:
                raise ViewEvaluationError(str(exc), loc) from None
        return many

    def single(focus: Any, env: Env) -> Any:
        try:
            vals = fn([focus], env)
        except FhirPathError as exc:
            raise ViewEvaluationError(str(exc), loc) from None
        if not vals:
            return None
        if len(vals) > 1:
            raise ViewEvaluationError(
                f"column {spec.name!r} ({spec.path!r}) returned {len(vals)} values; "
                "set collection: true or narrow the path", loc)
        return vals[0]

    return single


def compile_view(view: Any) -> CompiledView:
    """Validate a ViewDefinition and compile it; raises ViewDefinitionError naming the problem."""
    obj = _check_keys(view, VIEW_KEYS, "", "ViewDefinition")
    if obj.get("resourceType", "ViewDefinition") != "ViewDefinition":
        raise _fail("resourceType must be ViewDefinition", "resourceType")
    resource = obj.get("resource")
    if not isinstance(resource, str) or not resource:
        raise _fail("'resource' (the FHIR resource type to view) is required", "resource")
    selects = obj.get("select")
    if not isinstance(selects, list) or not selects:
        raise _fail("'select' must be a non-empty array", "select")
    constants = _constants(obj)
    builder = _Builder(constants)
    root = SelectNode("")
    for i, sub in enumerate(selects):
        child = builder.select(sub, f"select[{i}]")
        root.selects.append(child)
        root.columns.extend(child.columns)
    seen: dict[str, str] = {}
    for col in root.columns:
        if col.name in seen and seen[col.name] != col.location:
            # unionAll branches legitimately repeat names; only the first branch is listed.
            raise _fail(f"duplicate column name {col.name!r} (also at {seen[col.name]})", col.location)
        seen[col.name] = col.location
    wheres: list[tuple[Fn, str, str]] = []
    raw_wheres = obj.get("where", [])
    if not isinstance(raw_wheres, list):
        raise _fail("where must be an array", "where")
    for i, w in enumerate(raw_wheres):
        loc = f"where[{i}]"
        w = _check_keys(w, WHERE_KEYS, loc, "where")
        if "path" not in w:
            raise _fail("where needs a 'path'", loc)
        wheres.append((builder.expr(w["path"], f"{loc}.path"), w["path"], f"{loc}.path"))
    return CompiledView(obj, resource, constants, root, wheres, builder.compiler.uses_row_index)


def run_view(view: dict[str, Any] | CompiledView, resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate, compile and run a view over in-memory resources; returns one dict per row."""
    compiled = view if isinstance(view, CompiledView) else compile_view(view)
    return compiled.run(resources)
