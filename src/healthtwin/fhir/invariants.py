"""The spec's invariants (ElementDefinition.constraint): FHIRPath ones through fhirpathpy, some natively.

Each expression is compiled once (fhirpathpy.compile with the R4 model). Evaluating one costs ~20-50 µs, so:
  * invariants that hold on every element or resource are checked natively instead (ele-1, ext-1 in
    validation.py; dom-2..dom-5 in `check_contained`; txt-1/txt-2 in `check_narrative`; per-1 in `check_period`;
    ref-1 in the reference check);
  * dom-6 ("a resource should have narrative", a best-practice warning) is not reported at all: it would flag
    every server-generated resource and fhirpath cannot make it cheaper;
  * invariants that need a server or terminology service (resolve(), memberOf(), conformsTo(), htmlChecks())
    are skipped;
  * an invariant whose result depends only on some child elements of its node (found by scanning the
    expression, see `_root_identifiers`) is not evaluated when none of those children is present: its result is
    then the one it has on an empty node, computed once. Most invariants are guards like "a.empty() or ...",
    so this removes most evaluations;
  * a pure invariant (one that reads neither %resource nor the clock) on a data-type node is evaluated once
    per distinct node content and its result reused: a Duration or dosage Timing recurs across thousands of
    resources. HEALTHTWIN_VERIFY_INVARIANT_SHORTCUT=1 evaluates anyway and raises
    if the shortcut would have differed (the test-suite runs the spec examples that way).
Invariants whose evaluation raises are skipped for that node (counted in `stats`), never failing the resource.
"""
from __future__ import annotations

import os
import re
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import fhirpathpy
import orjson
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from .fhirpath_compile import CompileError, compile_boolean
from .regex import FHIRPATHPY_FUNCTIONS

R4_MODEL = models["r4"]
# fhirpathpy resets module-level state (engine constants) on every evaluation: serialise calls across threads.
_FHIRPATH_LOCK = threading.Lock()
NATIVE = {"ele-1": "native, every element", "ext-1": "native, every extension",
          "dom-2": "native (contained)", "dom-3": "native (contained)", "dom-4": "native (contained)",
          "dom-5": "native (contained)", "txt-1": "native (narrative)", "txt-2": "native (narrative)",
          "per-1": "native (Period)", "ref-1": "native (Reference)"}
SKIPPED = {"dom-6": "best-practice warning on every resource without narrative",
           # `answer is Boolean` asks for System.Boolean; fhirpathpy (correctly by the letter of FHIRPath) says
           # false for a FHIR boolean, so every valid enableWhen with operator 'exists' would fail.
           "que-7": "FHIR boolean vs System.Boolean type test: false positives"}
UNDECIDABLE = re.compile(r"\b(resolve|memberOf|conformsTo|htmlChecks|subsumes|subsumedBy)\(")
VERIFY = os.environ.get("HEALTHTWIN_VERIFY_INVARIANT_SHORTCUT") == "1"

_LAMBDAS = {"exists", "all", "repeat", "where", "select", "aggregate"}
_KEYWORDS = {"and", "or", "xor", "implies", "in", "contains", "div", "mod", "is", "as", "true", "false"}
_CONSTANTS = {"%ucum", "%sct", "%loinc"}
_TOKEN = re.compile(r"`([^`]*)`|'(?:[^'\\]|\\.)*'|(%[A-Za-z_][\w-]*|\$\w+)|([A-Za-z_]\w*)|(\()|(\))|(\.)|(\S)")


def _root_identifiers(expr: str) -> frozenset[str] | None:
    """Names of the node's children the expression can depend on, or None when it may depend on anything else.

    An identifier is a root one when it starts a path outside the argument of a lambda function (where, all,
    exists, select, repeat, aggregate: those arguments only run on items of a focus that itself starts at a
    root identifier). Anything at root level that is not a child name (a bare function such as exists(),
    $this, %resource, a type name) makes the shortcut unsafe.
    """
    roots: set[str] = set()
    stack: list[bool] = []  # True for a lambda's parenthesis
    tokens = [(m.group(0), m) for m in _TOKEN.finditer(expr)]
    prev = ""
    for i, (text, m) in enumerate(tokens):
        nxt = tokens[i + 1][0] if i + 1 < len(tokens) else ""
        in_lambda = any(stack)
        ident = m.group(3) or m.group(1)
        if m.group(4):
            is_call = i > 0 and tokens[i - 1][1].group(3) is not None
            stack.append(bool(is_call) and tokens[i - 1][0] in _LAMBDAS and i >= 2 and tokens[i - 2][0] == ".")
        elif m.group(5):
            if stack:
                stack.pop()
        elif m.group(2):
            if not in_lambda and text not in _CONSTANTS:
                return None  # %resource, $this ... at root level
        elif ident is not None and not in_lambda and prev != ".":
            if ident in _KEYWORDS and m.group(1) is None:
                pass  # an operator, e.g. "and (" is not a call
            elif nxt == "(":
                if ident not in ("iif", "today", "now"):
                    return None  # a bare function call applies to the node itself
            elif prev in ("is", "as"):
                pass  # a type name
            elif ident[:1].isupper():
                return None  # a type-name prefixed path: no shortcut
            else:
                roots.add(ident)
        prev = text
    return frozenset(roots)


def _no_trace(*_args: object) -> None:
    """trace() in the spec's expressions (sdf-16, que-1 ...) would print to stdout."""


def _compile(expression: str) -> Callable[..., list]:
    return fhirpathpy.compile(expression, R4_MODEL, {"traceFn": _no_trace, "userInvocationTable": FHIRPATHPY_FUNCTIONS})


_PRESENCE = re.compile(r"\(?\s*([a-z]\w*)\.(empty|exists)\(\)(\.not\(\))?\s*\)?")
_OPS = ("or", "and", "xor", "implies")


def _split(expr: str) -> tuple[str, list[str]] | None:
    """Split `a or b or c` at its top-level operator when there is exactly one operator kind at top level."""
    depth, quote, cuts, ops = 0, False, [], set()
    i = 0
    while i < len(expr):
        c = expr[i]
        if quote:
            quote = c != "'" or expr[i - 1] == "\\"
        elif c == "'":
            quote = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and c == " ":
            for op in _OPS:
                if expr.startswith(op + " ", i + 1):
                    cuts.append((i, i + len(op) + 2))
                    ops.add(op)
        i += 1
    if len(ops) != 1 or (ops & {"xor", "implies"} and len(cuts) != 1):
        return None
    terms, last = [], 0
    for a, b in cuts:
        terms.append(expr[last:a].strip())
        last = b
    terms.append(expr[last:].strip())
    return ops.pop(), terms


class Term:
    """One operand of a top-level and/or/xor/implies: decided natively when it only tests a child's presence,
    from its empty-node result when none of its root children is present, else through fhirpathpy."""
    __slots__ = ("expression", "fn", "roots", "presence", "empty_result", "triggers", "pure", "native")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.pure = _pure(expression)
        self.fn = _compile(expression)
        self.roots = _root_identifiers(expression)
        m = _PRESENCE.fullmatch(expression)
        # (child name, True when the term is true if the child is present)
        self.presence = (m.group(1), (m.group(2) == "exists") != bool(m.group(3))) if m else None
        self.empty_result: dict[str, bool | None] = {}
        self.triggers: dict[str, frozenset[str]] = {}
        self.native: dict[str, Callable[[Any, Any], Any] | None] = {}  # by type: compiled, or None


class Invariant:
    __slots__ = ("key", "severity", "expression", "human", "fn", "skip", "roots", "empty_result", "triggers",
                 "op", "terms", "pure", "native")

    def __init__(self, key: str, severity: str, expression: str, human: str) -> None:
        self.key, self.severity, self.expression, self.human = key, severity, expression, human
        self.pure = _pure(expression)
        self.fn: Callable[..., list] | None = None
        self.skip: str | None = NATIVE.get(key) or SKIPPED.get(key)
        if self.skip is None and UNDECIDABLE.search(expression):
            self.skip = "needs a server or terminology service"
        self.op: str | None = None
        self.terms: list[Term] | None = None
        if self.skip is None:
            try:
                self.fn = _compile(expression)
                split = _split(expression)
                if split is not None:
                    self.op, terms = split
                    self.terms = [Term(t) for t in terms]
            except Exception as exc:  # noqa: BLE001 - any parser failure means "cannot evaluate"
                self.skip = f"fhirpathpy cannot compile it ({type(exc).__name__})"
                self.fn, self.terms = None, None
        self.roots = _root_identifiers(expression) if self.fn is not None else None
        self.empty_result: dict[str, bool | None] = {}  # by FHIRPath type: the result on an empty node
        self.triggers: dict[str, frozenset[str]] = {}  # by type: JSON keys whose presence forces evaluation
        self.native: dict[str, Callable[[Any, Any], Any] | None] = {}  # by type: compiled to Python, or None


_IMPURE = re.compile(r"%(resource|rootResource|context)\b|\b(now|today|timeOfDay)\(")
_MEMO_MAX = 50_000
_MISSING = object()


def _pure(expression: str) -> bool:
    """Whether the result depends on the node alone (not on the enclosing resource or the clock)."""
    return _IMPURE.search(expression) is None


def _truth(result: list) -> bool | None:
    # FHIRPath three-valued logic: empty is "unknown", which the validator does not report as a violation
    if not result:
        return None
    return result != [False]


class InvariantRegistry:
    """Compiles each (key, expression) once and evaluates them with the shortcuts described above."""

    def __init__(self) -> None:
        self._by_expr: dict[tuple[str, str], Invariant] = {}
        self.stats: Counter[str] = Counter()
        # Results of pure invariants on data-type nodes, by content: the same Duration, Quantity or dosage
        # Timing recurs across thousands of resources, and fhirpathpy costs 50-150 µs per evaluation.
        self._memo: dict[tuple[int, str, bytes], bool | None | str] = {}
        self.choices: Callable[[str], dict[str, str] | None] = lambda _type: None

    def get(self, constraint: list[str], type_name: str) -> Invariant:
        key, severity, expression, human = constraint
        inv = self._by_expr.get((key, expression))
        if inv is None:
            inv = self._by_expr[(key, expression)] = Invariant(key, severity, expression, human)
        return inv

    def all(self) -> list[Invariant]:
        return list(self._by_expr.values())

    def _keys(self, names: frozenset[str] | set[str], type_name: str) -> frozenset[str]:
        keys: set[str] = set()
        choices = self.choices(type_name) or {}
        for name in names:
            keys.update((name, "_" + name))
            for k, base in choices.items():
                if base == name:
                    keys.update((k, "_" + k))
        return frozenset(keys)

    def _evaluate(self, fn: Callable[..., list], node: Any, type_name: str, ctx: Any) -> bool | None | str:
        try:
            with _FHIRPATH_LOCK:
                return _truth(fn(ResourceNode.create_node(node, type_name),
                                 {"resource": ctx.resource, "rootResource": ctx.root}))
        except Exception:  # noqa: BLE001 - an invariant fhirpathpy cannot evaluate is skipped for this node
            return "error"

    def _unit(self, unit: Invariant | Term, node: Any, type_name: str, ctx: Any) -> bool | None | str:
        """The unit's result on a node: compiled to Python where its expression allows (a few µs), else
        through fhirpathpy (50-150 µs)."""
        native = unit.native.get(type_name, _MISSING)
        if native is _MISSING:
            try:
                native = compile_boolean(unit.expression, type_name)
            except CompileError:
                native = None
            unit.native[type_name] = native  # type: ignore[assignment]
        if native is None or type(node) is not dict:
            return self._evaluate(unit.fn, node, type_name, ctx)  # type: ignore[arg-type]
        self.stats["compiled"] += 1
        try:
            return native(node, ctx.resource)  # type: ignore[operator]
        except Exception:  # noqa: BLE001 - as with fhirpathpy: an invariant that cannot be evaluated is skipped
            return "error"

    def _decide(self, unit: Invariant | Term, node: dict, type_name: str, ctx: Any) -> bool | None | str:
        """A term or whole invariant without fhirpathpy when its root children are all absent."""
        if unit.roots is not None:
            triggers = unit.triggers.get(type_name)
            if triggers is None:
                triggers = unit.triggers[type_name] = self._keys(unit.roots, type_name)
            if triggers.isdisjoint(node.keys()):
                if type_name not in unit.empty_result:
                    empty = self._evaluate(unit.fn, {}, type_name, ctx)
                    unit.empty_result[type_name] = None if empty == "error" else empty  # type: ignore[assignment]
                if unit.empty_result[type_name] is not None or unit.fn is None:
                    self.stats["shortcut"] += 1
                    return unit.empty_result[type_name]
        if unit.pure and node is not ctx.resource and node is not ctx.root:
            try:
                key = (id(unit), type_name, orjson.dumps(node, option=orjson.OPT_SORT_KEYS))
            except TypeError:
                key = None
            if key is not None:
                found = self._memo.get(key, _MISSING)
                if found is not _MISSING:
                    self.stats["memo"] += 1
                    return found  # type: ignore[return-value]
                self.stats["evaluated"] += 1
                result = self._unit(unit, node, type_name, ctx)
                if len(self._memo) >= _MEMO_MAX:
                    self._memo.clear()
                self._memo[key] = result
                return result
        self.stats["evaluated"] += 1
        return self._unit(unit, node, type_name, ctx)

    def _term(self, term: Term, node: dict, type_name: str, ctx: Any) -> bool | None | str:
        if term.presence is not None:
            name, if_present = term.presence
            keys = term.triggers.get(type_name)
            if keys is None:
                keys = term.triggers[type_name] = self._keys({name}, type_name)
            self.stats["native"] += 1
            return if_present if not keys.isdisjoint(node.keys()) else not if_present
        return self._decide(term, node, type_name, ctx)

    def _combine(self, inv: Invariant, node: dict, type_name: str, ctx: Any) -> bool | None | str:
        op, terms = inv.op, inv.terms or []
        if op in ("xor", "implies"):
            a = self._term(terms[0], node, type_name, ctx)
            if a == "error":
                return a
            if op == "implies" and a is False:
                return True
            b = self._term(terms[1], node, type_name, ctx)
            if b == "error":
                return b
            if op == "implies":
                return True if b is True else (False if a is True else None)
            return None if a is None or b is None else a != b
        decisive = op == "or"  # the value that decides an or (True) / an and (False)
        unknown = False
        for term in terms:
            r = self._term(term, node, type_name, ctx)
            if r == "error":
                return r
            if r is decisive:
                return decisive
            unknown = unknown or r is None
        return None if unknown else not decisive

    def run(self, invs: list[Invariant], node: Any, type_name: str, loc: str, ctx: Any, out: list, issue: type) -> None:
        for inv in invs:
            if inv.fn is None:
                continue
            if type(node) is not dict:
                self.stats["evaluated"] += 1
                result = self._evaluate(inv.fn, node, type_name, ctx)
            elif inv.terms is not None:
                result = self._combine(inv, node, type_name, ctx)
            else:
                result = self._decide(inv, node, type_name, ctx)
            if VERIFY and result != "error":
                real = self._evaluate(inv.fn, node, type_name, ctx)
                if real != "error" and (real is False) != (result is False):
                    raise AssertionError(f"invariant shortcut unsound for {inv.key} on {loc}: {result} vs {real}")
            if result == "error":
                self.stats["failed-to-evaluate"] += 1
            elif result is False:
                out.append(issue(inv.severity, "invariant", f"{inv.key}: {inv.human}", loc))


# ---- native versions of invariants that would be expensive through FHIRPath -------------------------------------

def _local_refs(value: Any, acc: set[str]) -> None:
    if type(value) is dict:
        for v in value.values():
            _local_refs(v, acc)
    elif type(value) is list:
        for v in value:
            _local_refs(v, acc)
    elif type(value) is str and value[:1] == "#":
        acc.add(value)


def check_contained(resource: dict, loc: str, out: list, issue: type) -> None:
    """dom-3 (every contained resource is referenced, or refers to its container), dom-4, dom-5."""
    contained = resource["contained"]
    refs: set[str] = set()
    for key, value in resource.items():
        if key != "contained":
            _local_refs(value, refs)
    own: list[set[str]] = []
    for c in contained:
        acc: set[str] = set()
        _local_refs(c, acc)
        own.append(acc)
    for i, c in enumerate(contained):
        if type(c) is not dict:
            continue
        where = f"{loc}.contained[{i}]"
        cid = c.get("id")
        others = set().union(*(own[j] for j in range(len(own)) if j != i)) if len(own) > 1 else set()
        if "#" not in own[i] and (cid is None or f"#{cid}" not in refs and f"#{cid}" not in others):
            out.append(issue("error", "invariant", "dom-3: a contained resource SHALL be referred to from elsewhere "
                             "in the resource or SHALL refer to the containing resource", where))
        meta = c.get("meta")
        if type(meta) is dict:
            if "versionId" in meta or "lastUpdated" in meta:
                out.append(issue("error", "invariant", "dom-4: a contained resource SHALL NOT have a "
                                 "meta.versionId or a meta.lastUpdated", f"{where}.meta"))
            if "security" in meta:
                out.append(issue("error", "invariant", "dom-5: a contained resource SHALL NOT have a security label",
                                 f"{where}.meta.security"))


_FORBIDDEN_TAG = re.compile(r"<\s*(script|object|applet|iframe|frame|frameset|form|input|button|select|textarea|"
                            r"embed|style|link|meta|base|head|body|html)\b", re.I)
_EVENT_ATTR = re.compile(r"<[^>]*\s(on[a-z]+)\s*=", re.I)
_JS_URL = re.compile(r"(href|src)\s*=\s*[\"']\s*javascript:", re.I)
_TAG = re.compile(r"<[^>]*>")
_XHTML_NS = re.compile(r"^<div\b[^>]*\sxmlns\s*=\s*[\"']http://www\.w3\.org/1999/xhtml[\"']")


def check_narrative(div: str, loc: str, out: list, issue: type) -> None:
    """txt-1 / txt-2 without an XML parser: the div element in the XHTML namespace, only basic HTML
    (no active content, no event attributes), and some text or an image."""
    text = div.strip()
    if not text.startswith("<div") or not text.endswith("</div>") or _XHTML_NS.match(text) is None:
        out.append(issue("error", "invariant", "txt-1: the narrative SHALL be a <div> element in the XHTML namespace "
                         "(xmlns=\"http://www.w3.org/1999/xhtml\")", loc))
        return
    bad = _FORBIDDEN_TAG.search(text) or _EVENT_ATTR.search(text) or _JS_URL.search(text)
    if bad is not None:
        out.append(issue("error", "invariant", "txt-1: the narrative SHALL contain only basic HTML formatting "
                         f"elements and attributes (found {bad.group(0)[:40]!r})", loc))
    if not _TAG.sub("", text).strip() and "<img" not in text:
        out.append(issue("error", "invariant", "txt-2: the narrative SHALL have some non-whitespace content", loc))


def _instant(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def check_period(period: dict, loc: str, out: list, issue: type) -> None:
    """per-1: start <= end when both are present and comparable (same-zone or both zoned instants)."""
    start, end = period.get("start"), period.get("end")
    if type(start) is not str or type(end) is not str:
        return
    if len(start) <= 10 or len(end) <= 10:
        n = min(len(start), len(end), 10)
        wrong = start[:n] > end[:n]
    else:
        s, e = _instant(start), _instant(end)
        wrong = s is not None and e is not None and s > e
    if wrong:
        out.append(issue("error", "invariant", f"per-1: Period.start ({start}) SHALL be before or equal to "
                         f"Period.end ({end})", loc))
