"""Parsing a FHIR search request (query parameters) into a structured SearchQuery.

Parsing knows FHIR's search syntax (modifiers, prefixes, escaping, chains, _has) and the search parameters
of each type; it knows nothing of SQL. The store compiles a SearchQuery into SQL (store/search_sql.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from .outcome import FHIRError

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_PREFIXED = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[-+0-9.])")
RESULT_PARAMS = {"_sort", "_count", "_offset", "_after", "_total", "_summary", "_elements", "_include",
                 "_revinclude", "_format", "_pretty", "_contained", "_containedType"}
# Parameters every resource type has, answered from the resources table itself.
COLUMN_PARAMS = {"_id": "token", "_lastUpdated": "date"}
TEXT_PARAMS = {"_text", "_content"}
MODIFIERS = {"exact", "contains", "missing", "not", "text", "above", "below", "identifier", "of-type", "in",
             "not-in", "iterate"}
DEFAULT_COUNT = 50
MAX_COUNT = 1000
MAX_CHAIN_DEPTH = 4
MAX_PARAMS = 64


@dataclass
class Value:
    """One OR-alternative of a parameter's value: prefix split off for ordered types; `parts` for composites."""

    raw: str
    prefix: str = "eq"
    parts: list[str] = field(default_factory=list)


@dataclass
class Criterion:
    """One AND-term: `param` (with `modifier`) matches any of `values`; or a chain / _has into `inner`."""

    code: str
    type: str  # search parameter type, or 'chain' / 'has' / 'text'
    modifier: str | None
    values: list[Value]
    targets: tuple[str, ...] = ()  # for chains: the resource types the reference may point to
    inner: "Criterion | None" = None  # chain: the criterion on the target; _has: on the referring resource
    has_type: str | None = None  # _has: the type of the referring resource
    has_param: str | None = None  # _has: its reference parameter


@dataclass
class Include:
    source_type: str
    param: str  # '*' for all reference parameters
    target_type: str | None
    iterate: bool
    reverse: bool


@dataclass
class SearchQuery:
    types: tuple[str, ...]  # one type, or several for a system search (empty: all)
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param code, descending)
    count: int = DEFAULT_COUNT
    offset: int = 0
    after: int | None = None  # keyset paging on row id when no _sort is given
    total: str | None = None  # none | estimate | accurate | None (only when cheaply known)
    summary: str | None = None
    elements: list[str] | None = None
    includes: list[Include] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # unknown parameters skipped under handling=lenient
    echo: list[tuple[str, str]] = field(default_factory=list)  # the parameters used, for self links


def split_unescaped(text: str, sep: str) -> list[str]:
    """Splits on `sep` not preceded by a backslash, then unescapes \\, \\$ \\| \\\\."""
    parts, buf, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\([,$|\\])", r"\1", text)


def _value(raw: str, ptype: str) -> Value:
    if ptype in ("number", "date", "quantity"):
        m = _PREFIXED.match(raw)
        if m:
            return Value(unescape(raw[2:]), m.group(1))
        return Value(unescape(raw))
    if ptype == "composite":
        return Value(raw, parts=[unescape(p) for p in split_unescaped(raw, "$")])
    return Value(raw)  # tokens keep escapes so the '|' split is exact; unescaped when compiled


class SearchParser:
    """Builds SearchQuery objects against a SearchRegistry (which knows each type's parameters)."""

    def __init__(self, registry) -> None:
        self.registry = registry

    def parse(self, types: Iterable[str], params: list[tuple[str, str]], strict: bool = False) -> SearchQuery:
        types = tuple(types)
        query = SearchQuery(types=types)
        if len(params) > MAX_PARAMS:
            raise FHIRError(400, f"Too many search parameters ({len(params)}; at most {MAX_PARAMS})", "too-costly")
        for name, value in params:
            if name in ("_format", "_pretty"):
                continue
            if name in RESULT_PARAMS or name.startswith(("_include:", "_revinclude:")):
                self._result_param(query, name, value)
                query.echo.append((name, value))
                continue
            if name == "_type":
                continue  # handled by the caller for system searches
            criterion = self._criterion(types, name, value, strict, depth=0)
            if criterion is None:
                query.ignored.append(name)
                continue
            query.criteria.append(criterion)
            query.echo.append((name, value))
        if query.count == 0:
            query.summary = "count"  # search.html: _count=0 is read as _summary=count (a total, no entries)
        return query

    # -- criteria -----------------------------------------------------------------------------------------------
    def _lookup(self, types: tuple[str, ...], code: str):
        found = [p for p in (self.registry.get(t, code) for t in (types or ("Resource",))) if p is not None]
        return found[0] if found else None

    def _criterion(self, types, name: str, value: str, strict: bool, depth: int) -> Criterion | None:
        if depth > MAX_CHAIN_DEPTH:
            raise FHIRError(400, f"Chain '{name}' is deeper than {MAX_CHAIN_DEPTH} levels", "too-costly")
        if name.startswith("_has:"):
            return self._has(types, name, value, strict, depth)
        head, _, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        modifier = modifier or None
        if code in COLUMN_PARAMS:
            if rest:
                raise FHIRError(400, f"Parameter '{code}' cannot be chained")
            self._check_modifier(code, modifier, COLUMN_PARAMS[code])
            ptype = COLUMN_PARAMS[code]
            return Criterion(code, ptype, modifier, [_value(v, ptype) for v in split_unescaped(value, ",")])
        if code in TEXT_PARAMS:
            return Criterion(code, "text", modifier, [Value(unescape(v)) for v in split_unescaped(value, ",")])
        if code == "_list":
            # The resources a List holds: _list=5 is _has:List:item:_id=5 (List.item is List.entry.item).
            if modifier or rest:
                raise FHIRError(400, "'_list' takes neither modifiers nor chains")
            if any(v.startswith("$") for v in split_unescaped(value, ",")):
                raise FHIRError(400, f"Functional lists ('{value}') are not supported: name a List by its id",
                                "not-supported")
            return self._has(types, "_has:List:item:_id", value, strict, depth)
        param = self._lookup(types, code)
        if param is None:
            return self._unknown(types, code, strict)
        if rest:  # chained: subject:Patient.name=x
            if param.type != "reference":
                raise FHIRError(400, f"Parameter '{code}' is of type {param.type} and cannot be chained")
            if modifier is not None and modifier not in param.targets and param.targets:
                raise FHIRError(400, f"'{modifier}' is not a target type of '{code}'")
            targets = (modifier,) if modifier else (param.targets or ())
            targets = tuple(t for t in targets if self._lookup((t,), rest.partition(".")[0].partition(":")[0])
                            or rest.split(".")[0].partition(":")[0] in COLUMN_PARAMS or rest.startswith("_has"))
            if not targets:
                return self._unknown(types, name, strict)
            inner = self._criterion(targets, rest, value, strict, depth + 1)
            if inner is None:
                return None
            return Criterion(code, "chain", None, [], targets=targets, inner=inner)
        self._check_modifier(code, modifier, param.type, param.targets)
        values = [_value(v, param.type) for v in split_unescaped(value, ",")]
        if modifier == "missing":
            if value not in ("true", "false"):
                raise FHIRError(400, f"':missing' takes true or false, not '{value}'")
        if any(v.raw == "" and not v.parts for v in values) and modifier != "missing":
            raise FHIRError(400, f"Parameter '{code}' has an empty value")
        return Criterion(code, param.type, modifier, values, targets=param.targets)

    def _has(self, types, name: str, value: str, strict: bool, depth: int) -> Criterion | None:
        # _has:Observation:patient:code=1234  or nested _has:A:p:_has:B:q:param=v
        parts = name.split(":", 3)
        if len(parts) < 4 or not parts[1] or not parts[2] or not parts[3]:
            raise FHIRError(400, f"Malformed _has parameter '{name}': expected _has:Type:reference:parameter")
        _, has_type, has_param, rest = parts
        ref = self._lookup((has_type,), has_param)
        if ref is None or ref.type != "reference":
            raise FHIRError(400, f"'{has_param}' is not a reference parameter of {has_type}")
        inner = self._criterion((has_type,), rest, value, strict, depth + 1)
        if inner is None:
            return None
        return Criterion("_has", "has", None, [], has_type=has_type, has_param=has_param, inner=inner)

    def _unknown(self, types, code: str, strict: bool) -> None:
        if strict:
            where = ", ".join(types) or "system-level search"
            raise FHIRError(400, f"Unknown search parameter '{code}' for {where}", "not-supported")
        return None

    @staticmethod
    def _check_modifier(code: str, modifier: str | None, ptype: str, targets=()) -> None:
        if modifier is None or modifier == "missing":
            return
        allowed = {
            "string": {"exact", "contains"},
            "token": {"not", "text", "above", "below", "in", "not-in", "of-type"},
            "reference": {"identifier", "above", "below"},
            "uri": {"above", "below", "contains"},
            "date": set(), "number": set(), "quantity": set(), "composite": set(),
        }.get(ptype, set())
        if ptype == "reference" and modifier in targets:
            return
        if ptype == "reference" and modifier[:1].isupper():
            raise FHIRError(400, f"'{modifier}' is not a target type of '{code}'")
        if modifier not in allowed:
            raise FHIRError(400, f"Modifier ':{modifier}' is not supported on {ptype} parameter '{code}'")

    # -- result parameters --------------------------------------------------------------------------------------
    def _result_param(self, query: SearchQuery, name: str, value: str) -> None:
        if name == "_count":
            query.count = _int(name, value, 0, MAX_COUNT)
        elif name == "_offset":
            query.offset = _int(name, value, 0, 10**9)
        elif name == "_after":
            query.after = _int(name, value, 0, 2**62)
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise FHIRError(400, f"_total must be none, estimate or accurate, not '{value}'")
            query.total = value
        elif name == "_summary":
            if value not in ("true", "text", "data", "count", "false"):
                raise FHIRError(400, f"_summary must be true, text, data, count or false, not '{value}'")
            query.summary = None if value == "false" else value
        elif name == "_elements":
            query.elements = [e.strip() for e in value.split(",") if e.strip()]
            for e in query.elements:
                if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*", e):
                    raise FHIRError(400, f"_elements: '{e}' is not an element name")
        elif name == "_sort":
            for key in value.split(","):
                desc = key.startswith("-")
                code = key[1:] if desc else key
                if code not in COLUMN_PARAMS and self._lookup(query.types, code) is None:
                    raise FHIRError(400, f"Cannot sort by unknown parameter '{code}'")
                query.sort.append((code, desc))
        elif name.startswith(("_include", "_revinclude")):
            query.includes.append(self._include(name, value))
        # _contained: containment searches are not supported; the default (false) applies

    def _include(self, name: str, value: str) -> Include:
        iterate = name.endswith(":iterate") or name.endswith(":recurse")
        parts = value.split(":")
        if value == "*":
            return Include("*", "*", None, iterate, name.startswith("_revinclude"))
        if len(parts) < 2 or len(parts) > 3:
            raise FHIRError(400, f"{name}={value}: expected Type:parameter[:targetType]")
        source, param, target = parts[0], parts[1], parts[2] if len(parts) == 3 else None
        if param != "*":
            p = self.registry.get(source, param)
            if p is None or p.type != "reference":
                raise FHIRError(400, f"{name}: '{param}' is not a reference parameter of {source}")
        return Include(source, param, target, iterate, name.startswith("_revinclude"))


def _int(name: str, value: str, lo: int, hi: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise FHIRError(400, f"{name} must be an integer, not '{value}'") from None
    if number < lo:
        raise FHIRError(400, f"{name} must be at least {lo}")
    return min(number, hi)
