"""FHIRPath subset for SQL on FHIR v2, compiled once into Python closures.

Why our own evaluator rather than fhirpathpy on the hot path: a view evaluates the same handful of
paths millions of times.  A general interpreter re-walks the AST and wraps every value for each
resource; here each expression is turned once into a chain of plain closures over raw JSON
(``dict``/``list``/``str``/numbers as parsed by orjson), so evaluation is a few dict lookups.

Every compiled expression has the signature ``fn(focus: list, env: Env) -> list``: FHIRPath is
collection-in / collection-out, and the empty list plays the role of SQL NULL.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ..fhir import regex
from .fhirpath_parse import FhirPathSyntaxError, Node, parse, type_name_of

Fn = Callable[[list[Any], "Env"], list[Any]]


class FhirPathError(ValueError):
    """Compile-time (unknown function, bad arguments, undefined %constant) or evaluation error."""


class Env:
    """Per-evaluation variables: the resource being viewed and the current %rowIndex."""

    __slots__ = ("resource", "row_index")

    def __init__(self, resource: Any = None, row_index: int = 0) -> None:
        self.resource = resource
        self.row_index = row_index


# FHIR type names that may appear as a choice-element suffix (valueQuantity, deceasedBoolean ...).
PRIMITIVES = {
    "boolean", "integer", "integer64", "string", "decimal", "uri", "url", "canonical", "base64Binary",
    "instant", "date", "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt",
    "positiveInt", "uuid",
}
COMPLEX = {
    "Address", "Age", "Annotation", "Attachment", "CodeableConcept", "CodeableReference", "Coding",
    "ContactPoint", "Count", "Distance", "Duration", "HumanName", "Identifier", "Money", "Period",
    "Quantity", "Range", "Ratio", "RatioRange", "Reference", "SampledData", "Signature", "Timing",
    "ContactDetail", "Contributor", "DataRequirement", "Expression", "ParameterDefinition",
    "RelatedArtifact", "TriggerDefinition", "UsageContext", "Dosage", "Meta",
}
_SUFFIXES = {t[0].upper() + t[1:]: t for t in PRIMITIVES} | {t: t for t in COMPLEX}


def choice_key(name: str, type_name: str) -> str:
    """JSON key of a choice element of a given type: ('value', 'Quantity') -> 'valueQuantity'."""
    t = type_name.split(".")[-1]
    return name + t[0].upper() + t[1:]


def _member(item: dict[str, Any], name: str) -> Any:
    """Child of a JSON object, resolving FHIR choice elements (``value`` -> ``valueString``)."""
    val = item.get(name)
    if val is None and name != "resourceType":
        n = len(name)
        for key in item:
            if len(key) > n and key.startswith(name) and key[n:] in _SUFFIXES:
                return item[key]
    return val


def _member_fn(target: Fn | None, name: str, choice: bool = True) -> Fn:
    # One closure per step; lists are flattened as FHIRPath requires.
    def step(focus: list[Any], env: Env) -> list[Any]:
        src = target(focus, env) if target is not None else focus
        out: list[Any] = []
        for item in src:
            if type(item) is dict:
                val = item.get(name)
                if val is None:
                    val = _member(item, name) if choice else None
                    if val is None:
                        continue
                if type(val) is list:
                    out.extend(val)
                else:
                    out.append(val)
        return out

    return step


def _type_matches(item: Any, type_name: str) -> bool:
    """Best-effort runtime type test for values whose FHIR type was not fixed by a choice key."""
    t = type_name.split(".")[-1]
    if isinstance(item, bool):
        return t == "boolean"
    if isinstance(item, int):
        return t in ("integer", "integer64", "unsignedInt", "positiveInt", "decimal")
    if isinstance(item, float):
        return t == "decimal"
    if isinstance(item, str):
        return t in PRIMITIVES and t not in ("boolean", "integer", "decimal", "unsignedInt", "positiveInt")
    if isinstance(item, dict):
        rt = item.get("resourceType")
        if rt is not None:
            return t in (rt, "Resource", "DomainResource")
        return t in COMPLEX
    return False


def _singleton(coll: list[Any], what: str) -> Any:
    if len(coll) > 1:
        raise FhirPathError(f"{what} expects a single value, got {len(coll)}")
    return coll[0] if coll else None


def _as_bool(coll: list[Any]) -> bool | None:
    """FHIRPath singleton-to-boolean conversion: empty -> None, one boolean -> it, other -> True."""
    if not coll:
        return None
    if len(coll) > 1:
        raise FhirPathError(f"expected a single boolean, got a collection of {len(coll)}")
    v = coll[0]
    return v if isinstance(v, bool) else True


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if not ((_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise FhirPathError(f"cannot compare {type(a).__name__} with {type(b).__name__}")
    if op == "<":
        return bool(a < b)
    if op == ">":
        return bool(a > b)
    if op == "<=":
        return bool(a <= b)
    return bool(a >= b)


# Reference strings: [base/]Type/id[/_history/vid]; group 2 = type, group 3 = id.
REFERENCE_RE = re.compile(r"(^|/)([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[^/]+)?$")


def reference_key(ref: Any, type_name: str | None) -> str | None:
    """Key of the resource a Reference points to, matching ``getResourceKey()`` (the id)."""
    if not isinstance(ref, dict):
        return None
    text = ref.get("reference")
    if not isinstance(text, str):
        return None
    m = REFERENCE_RE.search(text)
    if m is None or (type_name is not None and m.group(2) != type_name):
        return None
    return m.group(3)


# ---- boundaries (lowBoundary/highBoundary) for decimals and partial dates/times ----
_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def _month_days(year: int, month: int) -> int:
    if month == 2 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return 28
    return _DAYS[month - 1]


def _boundary(value: Any, high: bool, static_type: str | None) -> Any:
    if _is_num(value):
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        exp = d.as_tuple().exponent
        half = Decimal(5).scaleb(int(exp) - 1 if isinstance(exp, int) else -1)
        return float(d + half if high else d - half)
    if not isinstance(value, str):
        return None
    is_time = re.fullmatch(r"\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?", value) is not None
    if (static_type in ("date", "dateTime", "instant") and is_time) or (static_type == "time" and not is_time):
        return None
    if is_time:
        parts = (value.split(".")[0].split(":") + ["", ""])[:3]
        fill = ("23", "59", "59") if high else ("00", "00", "00")
        hms = ":".join(p or f for p, f in zip(parts, fill))
        frac = value.split(".")[1] if "." in value else ("999" if high else "000")
        return f"{hms}.{frac}"
    m = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(T.*)?", value)
    if m is None:
        return None
    year, month, day, rest = int(m.group(1)), m.group(2), m.group(3), m.group(4)
    mm = int(month) if month else (12 if high else 1)
    dd = int(day) if day else (_month_days(year, mm) if high else 1)
    date = f"{year:04d}-{mm:02d}-{dd:02d}"
    if static_type != "dateTime" and rest is None:
        return date
    if rest is None:
        return f"{date}T23:59:59.999-12:00" if high else f"{date}T00:00:00.000+14:00"
    return date + rest  # already a full dateTime: boundaries equal the value at ms precision


# ---- compiler ----
_STRING_FNS: dict[str, Callable[..., Any]] = {
    "upper": lambda s: s.upper(),
    "lower": lambda s: s.lower(),
    "length": lambda s: len(s),
    "trim": lambda s: s.strip(),
    "startsWith": lambda s, p: s.startswith(p),
    "endsWith": lambda s, p: s.endswith(p),
    "contains": lambda s, p: p in s,
    "indexOf": lambda s, p: s.find(p),
    "replace": lambda s, a, b: s.replace(a, b),
    "matches": regex.matches,  # RE2: a ViewDefinition's pattern is caller input (fhir/regex.py)
    "replaceMatches": regex.replace_matches,
    "substring": lambda s, start, n=None: s[start:] if n is None else s[start : start + n],
}


class Compiler:
    """Compiles AST nodes to closures; ``constants`` are substituted at compile time."""

    def __init__(self, constants: dict[str, Any] | None = None) -> None:
        self.constants = constants or {}
        self.uses_row_index = False

    def compile(self, text: str) -> Fn:
        try:
            node = parse(text)
        except FhirPathSyntaxError as exc:
            raise FhirPathError(f"invalid FHIRPath {text!r}: {exc}") from None
        return self.node(node)[0]

    # Each node compiles to (closure, static FHIR type or None); the static type is only known
    # after ofType()/choice resolution and lets boundaries tell a date from a dateTime.
    def node(self, n: Node, target: Fn | None = None) -> tuple[Fn, str | None]:
        kind = n[0]
        if kind == "lit":
            val = [n[1]]
            return (lambda focus, env: val), None
        if kind == "empty":
            return (lambda focus, env: []), None
        if kind == "this":
            return (lambda focus, env: focus), None
        if kind == "index":
            raise FhirPathError("$index is not supported")
        if kind == "var":
            return self._var(str(n[1]))
        if kind == "id":
            return _member_fn(target, str(n[1])), None
        if kind == "member":
            base, _ = self.node(n[1], target)
            return _member_fn(base, str(n[2])), None
        if kind == "call":
            return self._call(n, target)
        if kind == "indexer":
            base, st = self.node(n[1], target)
            idx, _ = self.node(n[2])

            def indexer(focus: list[Any], env: Env) -> list[Any]:
                i = _singleton(idx(focus, env), "indexer")
                coll = base(focus, env)
                return [coll[i]] if isinstance(i, int) and 0 <= i < len(coll) else []

            return indexer, st
        if kind == "neg":
            inner, st = self.node(n[1], target)
            return (lambda focus, env: [-v for v in inner(focus, env)]), st
        if kind == "bin":
            return self._binary(str(n[1]), self.node(n[2], target)[0], self.node(n[3], target)[0]), None
        if kind == "type":
            base, _ = self.node(n[2], target)
            tname = str(n[3])
            if n[1] == "is":
                return (lambda focus, env: [_type_matches(v, tname) for v in base(focus, env)][:1]), "boolean"
            return (lambda focus, env: [v for v in base(focus, env) if _type_matches(v, tname)]), tname
        raise FhirPathError(f"unsupported expression node {kind}")

    def _var(self, name: str) -> tuple[Fn, str | None]:
        if name == "rowIndex":
            self.uses_row_index = True
            return (lambda focus, env: [env.row_index]), "integer"
        if name in ("resource", "rootResource", "context"):
            return (lambda focus, env: [env.resource]), None
        if name in ("ucum",):
            return (lambda focus, env: ["http://unitsofmeasure.org"]), "string"
        if name not in self.constants:
            raise FhirPathError(f"undefined constant %{name}")
        val = self.constants[name]
        coll = val if isinstance(val, list) else [val]
        return (lambda focus, env: coll), None

    def _binary(self, op: str, left: Fn, right: Fn) -> Fn:
        if op in ("and", "or", "xor", "implies"):
            return _logic(op, left, right)
        if op in ("=", "!="):
            negate = op == "!="

            def equals(focus: list[Any], env: Env) -> list[Any]:
                a, b = left(focus, env), right(focus, env)
                if not a or not b:
                    return []
                same = len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
                return [same != negate]

            return equals
        if op in ("~", "!~"):
            negate = op == "!~"

            def equiv(focus: list[Any], env: Env) -> list[Any]:
                a, b = left(focus, env), right(focus, env)
                norm = [[x.lower().strip() if isinstance(x, str) else x for x in c] for c in (a, b)]
                same = len(a) == len(b) and sorted(map(repr, norm[0])) == sorted(map(repr, norm[1]))
                return [same != negate]

            return equiv
        if op in ("<", ">", "<=", ">="):

            def compare(focus: list[Any], env: Env) -> list[Any]:
                a, b = left(focus, env), right(focus, env)
                if not a or not b:
                    return []
                return [_compare(op, _singleton(a, op), _singleton(b, op))]

            return compare
        if op == "|":

            def union(focus: list[Any], env: Env) -> list[Any]:
                out: list[Any] = []
                for v in left(focus, env) + right(focus, env):
                    if not any(_eq(v, w) for w in out):
                        out.append(v)
                return out

            return union
        if op in ("in", "contains"):
            elem, coll = (left, right) if op == "in" else (right, left)

            def member_of(focus: list[Any], env: Env) -> list[Any]:
                e = elem(focus, env)
                if not e:
                    return []
                v = _singleton(e, op)
                return [any(_eq(v, w) for w in coll(focus, env))]

            return member_of
        if op == "&":
            return lambda focus, env: [
                "".join(str(_singleton(f(focus, env), "&") or "") for f in (left, right))
            ]
        return _arith(op, left, right)

    def _call(self, n: Node, target: Fn | None) -> tuple[Fn, str | None]:
        _, tnode, name, args = n
        if tnode is not None:
            base, st = self.node(tnode, target)
        else:
            base, st = (target if target is not None else (lambda focus, env: focus)), None
        nargs = len(args)

        def need(lo: int, hi: int) -> None:
            if not lo <= nargs <= hi:
                raise FhirPathError(f"{name}() takes {lo}..{hi} arguments, got {nargs}")

        if name == "ofType":
            need(1, 1)
            tname = type_name_of(args[0])
            if tname is None:
                raise FhirPathError("ofType() needs a type name")
            # value.ofType(Quantity) -> the 'valueQuantity' key: exact and as fast as a member step.
            if tnode is not None and tnode[0] in ("id", "member"):
                owner = target if tnode[0] == "id" else self.node(tnode[1], target)[0]
                typed = _member_fn(owner, choice_key(str(tnode[-1]), tname))
                # Fallback only for a real (non-choice) element of that name, e.g. Quantity.value.
                plain = _member_fn(owner, str(tnode[-1]), choice=False)

                def of_choice(focus: list[Any], env: Env) -> list[Any]:
                    got = typed(focus, env)
                    if got:
                        return got
                    return [v for v in plain(focus, env) if _type_matches(v, tname)]

                return of_choice, tname.split(".")[-1]
            return (lambda focus, env: [v for v in base(focus, env) if _type_matches(v, tname)]), tname
        if name in ("where", "select", "exists", "all", "repeat") and nargs:
            need(1, 1)
            crit, cst = self.node(args[0])
            return self._iterating(name, base, crit), (cst if name == "select" else None)
        if name in ("empty", "exists", "not", "first", "last", "tail", "count", "single", "distinct",
                    "hasValue", "allTrue", "anyTrue", "allFalse", "anyFalse", "getResourceKey",
                    "toString", "toInteger", "toDecimal", "lowBoundary", "highBoundary", "children"):
            need(0, 1 if name in ("lowBoundary", "highBoundary") else 0)
            return self._simple(name, base, st), _RESULT_TYPES.get(name, st)
        if name in ("skip", "take"):
            need(1, 1)
            count, _ = self.node(args[0])
            take = name == "take"

            def slicer(focus: list[Any], env: Env) -> list[Any]:
                k = _singleton(count(focus, env), name) or 0
                coll = base(focus, env)
                return coll[:k] if take else coll[k:]

            return slicer, st
        if name == "extension":
            need(1, 1)
            url_fn, _ = self.node(args[0])

            def extension(focus: list[Any], env: Env) -> list[Any]:
                url = _singleton(url_fn(focus, env), "extension")
                return [e for item in base(focus, env) if isinstance(item, dict)
                        for e in item.get("extension", ()) if e.get("url") == url]

            return extension, "Extension"
        if name == "join":
            need(0, 1)
            sep_fn = self.node(args[0])[0] if args else (lambda focus, env: [""])
            return (lambda focus, env: [
                (_singleton(sep_fn(focus, env), "join") or "").join(str(v) for v in base(focus, env))
            ]), "string"
        if name == "getReferenceKey":
            need(0, 1)
            rtype = type_name_of(args[0]) if args else None
            if args and rtype is None:
                raise FhirPathError("getReferenceKey() takes a resource type name")
            return (lambda focus, env: [k for r in base(focus, env)
                                        if (k := reference_key(r, rtype)) is not None]), "string"
        if name == "iif":
            need(2, 3)
            cond, yes = self.node(args[0])[0], self.node(args[1])[0]
            no = self.node(args[2])[0] if nargs == 3 else (lambda focus, env: [])

            def iif(focus: list[Any], env: Env) -> list[Any]:
                coll = base(focus, env)
                return yes(coll, env) if _as_bool(cond(coll, env)) else no(coll, env)

            return iif, None
        if name in _STRING_FNS:
            fn = _STRING_FNS[name]
            arg_fns = [self.node(a)[0] for a in args]

            def string_fn(focus: list[Any], env: Env) -> list[Any]:
                s = _singleton(base(focus, env), name)
                if s is None:
                    return []
                vals = [_singleton(a(focus, env), name) for a in arg_fns]
                if any(v is None for v in vals):
                    return []
                try:
                    return [fn(str(s), *vals)]
                except regex.RegexError as exc:
                    raise FhirPathError(f"{name}(): {exc}") from None

            return string_fn, None
        raise FhirPathError(f"unknown or unsupported function {name}()")

    def _iterating(self, name: str, base: Fn, crit: Fn) -> Fn:
        # The criteria sees one item at a time as its focus (and as $this).
        if name == "where":
            return lambda focus, env: [v for v in base(focus, env) if _as_bool(crit([v], env)) is True]
        if name == "select":
            return lambda focus, env: [r for v in base(focus, env) for r in crit([v], env)]
        if name == "exists":
            return lambda focus, env: [any(_as_bool(crit([v], env)) is True for v in base(focus, env))]
        if name == "all":
            return lambda focus, env: [all(_as_bool(crit([v], env)) is True for v in base(focus, env))]

        def repeat(focus: list[Any], env: Env) -> list[Any]:
            out: list[Any] = []
            todo = list(base(focus, env))
            while todo:
                v = todo.pop(0)
                out.append(v)
                todo[:0] = crit([v], env)
            return out

        return lambda focus, env: repeat(base(focus, env), env)

    def _simple(self, name: str, base: Fn, st: str | None) -> Fn:
        if name == "empty":
            return lambda focus, env: [not base(focus, env)]
        if name in ("exists", "hasValue"):
            return lambda focus, env: [bool(base(focus, env))]
        if name == "not":
            def negation(focus: list[Any], env: Env) -> list[Any]:
                b = _as_bool(base(focus, env))
                return [] if b is None else [not b]
            return negation
        if name == "first":
            return lambda focus, env: base(focus, env)[:1]
        if name == "last":
            return lambda focus, env: base(focus, env)[-1:]
        if name == "tail":
            return lambda focus, env: base(focus, env)[1:]
        if name == "count":
            return lambda focus, env: [len(base(focus, env))]
        if name == "single":
            return lambda focus, env: [v] if (v := _singleton(base(focus, env), "single()")) is not None else []
        if name == "distinct":
            return lambda focus, env: list({repr(v): v for v in base(focus, env)}.values())
        if name in ("allTrue", "anyTrue", "allFalse", "anyFalse"):
            want = name.endswith("True")
            agg = all if name.startswith("all") else any
            return lambda focus, env: [agg(v is want for v in base(focus, env))]
        if name == "getResourceKey":
            return lambda focus, env: [v["id"] for v in base(focus, env) if isinstance(v, dict) and "id" in v]
        if name == "toString":
            return lambda focus, env: [_to_string(v) for v in base(focus, env)[:1]]
        if name in ("toInteger", "toDecimal"):
            conv: Callable[[Any], Any] = int if name == "toInteger" else float
            return lambda focus, env: [_convert(conv, v) for v in base(focus, env)[:1] if _convert(conv, v) is not None]
        if name == "children":
            return lambda focus, env: [c for v in base(focus, env) if isinstance(v, dict)
                                       for x in v.values() for c in (x if isinstance(x, list) else [x])]
        high = name == "highBoundary"
        return lambda focus, env: [b for v in base(focus, env)[:1] if (b := _boundary(v, high, st)) is not None]


_RESULT_TYPES = {"empty": "boolean", "exists": "boolean", "not": "boolean", "count": "integer",
                 "getResourceKey": "string", "toString": "string", "toInteger": "integer",
                 "toDecimal": "decimal", "hasValue": "boolean"}


def _to_string(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _convert(conv: Callable[[Any], Any], v: Any) -> Any:
    try:
        return conv(v) if not isinstance(v, (dict, list)) else None
    except (TypeError, ValueError):
        return None


def _logic(op: str, left: Fn, right: Fn) -> Fn:
    # Three-valued logic as specified by FHIRPath (None = empty).
    def logic(focus: list[Any], env: Env) -> list[Any]:
        a = _as_bool(left(focus, env))
        if op == "and":
            if a is False:
                return [False]
            b = _as_bool(right(focus, env))
            if b is False:
                return [False]
            return [True] if a and b else []
        if op == "or":
            if a is True:
                return [True]
            b = _as_bool(right(focus, env))
            if b is True:
                return [True]
            return [False] if a is False and b is False else []
        if op == "implies":
            if a is False:
                return [True]
            b = _as_bool(right(focus, env))
            if b is True:
                return [True]
            return [False] if a is True and b is False else []
        b = _as_bool(right(focus, env))
        return [] if a is None or b is None else [a != b]

    return logic


def _arith(op: str, left: Fn, right: Fn) -> Fn:
    def arith(focus: list[Any], env: Env) -> list[Any]:
        a, b = _singleton(left(focus, env), op), _singleton(right(focus, env), op)
        if a is None or b is None:
            return []
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            return [a + b]
        if not (_is_num(a) and _is_num(b)):
            raise FhirPathError(f"operator {op} needs numbers, got {type(a).__name__} and {type(b).__name__}")
        if op == "+":
            return [a + b]
        if op == "-":
            return [a - b]
        if op == "*":
            return [a * b]
        if b == 0:
            return []  # FHIRPath: division by zero is empty, not an error
        if op == "/":
            return [a / b]
        if op == "div":
            return [int(a // b)]
        if op == "mod":
            return [a % b]
        raise FhirPathError(f"unknown operator {op}")

    return arith


def compile_path(text: str, constants: dict[str, Any] | None = None) -> Fn:
    """Compile one expression (convenience for callers outside a view)."""
    return Compiler(constants).compile(text)


def evaluate(text: str, resource: Any, constants: dict[str, Any] | None = None) -> list[Any]:
    """Evaluate an expression against one resource (slow path: compiles each call unless cached)."""
    return compile_path(text, constants)([resource], Env(resource))
