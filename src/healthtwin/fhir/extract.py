"""Search index extraction: resource JSON → index rows, through one compiled function per resource type.

Row shapes (first two items are the parameter code and the kind; the store depends on these):
  (code, "string", normalized, exact)
  (code, "token", system, code, text)              text = normalized display / CodeableConcept.text / type.text
  (code, "reference", type, id, url)               and (code + ":identifier", "token", system, value, None)
  (code + ":of-type", "token", type.system, type.code + "|" + value, None)   for each Identifier.type coding
  (code, "date", lo, hi)                           epoch seconds, hi exclusive (see dates.py)
  (code, "number", value, lo, hi)
  (code, "quantity", value, lo, hi, system, unit_code, unit_display, canonical_code, canonical_value)
  (code, "uri", value)
  (code, "composite", [component rows without their code]);  ("near", "special", lat, lon)

Converters below take one value of a known FHIR type and return its rows *without* the parameter code
("bare" rows), so that composites can reuse them as components. Which converter applies is decided at
compile time from the (search parameter type, FHIR element type) pair.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from itertools import product
from typing import TYPE_CHECKING, Any

from healthtwin.fhir import fhirpath_compile as fc
from healthtwin.fhir.dates import NEG_INF, POS_INF, number_range, parse_range
from healthtwin.fhir.regex import FHIRPATHPY_FUNCTIONS
from healthtwin.fhir.ucum import canonical

if TYPE_CHECKING:
    from healthtwin.fhir.search_params import SearchParam, SearchRegistry

log = logging.getLogger(__name__)

UCUM = "http://unitsofmeasure.org"
ISO4217 = "urn:iso:std:iso:4217"
Row = tuple
Bare = tuple

# ------------------------------------------------------------------------------------------ normalisation

_NORM: dict[str, str] = {}


def normalize(text: str) -> str:
    """Lower-case, accents removed (NFKD minus combining marks), whitespace collapsed. Memoised: the same
    displays and names recur across resources, and NFKD is the most expensive step of extraction."""
    out = _NORM.get(text)
    if out is None:
        if text.isascii():
            out = " ".join(text.lower().split())
        else:
            decomposed = unicodedata.normalize("NFKD", text)
            out = " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).lower().split())
        if len(_NORM) > 100_000:
            _NORM.clear()
        _NORM[text] = out
    return out


def _text(value: Any) -> str | None:
    return normalize(value) if type(value) is str and value else None


# ------------------------------------------------------------------------------------------------ strings

def s_prim(v: Any) -> tuple[Bare, ...]:
    return (("string", normalize(v), v),) if type(v) is str else ()


def _strings(v: dict, keys: tuple[str, ...]) -> list[Bare]:
    out = []
    for key in keys:
        x = v.get(key)
        if x is None:
            continue
        for s in (x if type(x) is list else (x,)):
            if type(s) is str:
                out.append(("string", normalize(s), s))
    return out


def s_name(v: Any) -> list[Bare]:
    return _strings(v, ("family", "given", "prefix", "suffix", "text")) if type(v) is dict else []


def s_address(v: Any) -> list[Bare]:
    return _strings(v, ("line", "city", "district", "state", "postalCode", "country", "text")) \
        if type(v) is dict else []


# ------------------------------------------------------------------------------------------------- tokens

def t_prim(v: Any) -> tuple[Bare, ...]:
    if type(v) is bool:
        return (("token", None, "true" if v else "false", None),)
    return (("token", None, v, None),) if type(v) is str else ()


def t_coding(c: Any) -> tuple[Bare, ...]:
    if type(c) is not dict:
        return ()
    system, code, display = c.get("system"), c.get("code"), c.get("display")
    if system is None and code is None and display is None:
        return ()
    return (("token", system, code, _text(display)),)


def t_concept(v: Any) -> list[Bare]:
    """A coding row each, and a text-only row for `CodeableConcept.text` unless a coding's row already holds that
    text: `:text` matches the text column of any row, and no other token search reads a row without a code, so
    the second row would answer nothing the first does not. Why it matters: a concept whose text repeats its
    display (the registry's vaccine groups and forecast statuses, most clinical codes) had two rows, and as a
    composite's component two composite rows per pair (a third of a recommendation's index rows)."""
    if type(v) is not dict:
        return []
    out = []
    for c in v.get("coding") or ():
        out.extend(t_coding(c))
    text = v.get("text")
    if type(text) is str and text:
        folded = normalize(text)
        if not any(row[3] == folded for row in out):
            out.append(("token", None, None, folded))
    return out


def t_identifier(v: Any) -> tuple[Bare, ...]:
    if type(v) is not dict or (v.get("value") is None and v.get("system") is None):
        return ()
    kind = v.get("type")
    return (("token", v.get("system"), v.get("value"), _text(kind.get("text")) if type(kind) is dict else None),)


def t_identifier_of_type(v: Any) -> tuple[Bare, ...]:
    """Rows for `code:of-type` (system|code of Identifier.type, then the value): the pair must match together,
    so it is one row, not a type row and a value row that could come from two different identifiers."""
    if type(v) is not dict or v.get("value") is None or type(v.get("type")) is not dict:
        return ()
    return tuple(("token", c.get("system"), f"{c['code']}|{v['value']}", None)
                 for c in v["type"].get("coding") or () if type(c) is dict and c.get("code"))


def t_contact(v: Any) -> tuple[Bare, ...]:
    # Token search on ContactPoint matches the value only (the ContactPoint system is "phone", not a namespace).
    value = v.get("value") if type(v) is dict else None
    return (("token", None, value, None),) if type(value) is str else ()


# --------------------------------------------------------------------------------------------- references

_RESOURCE_TYPES = frozenset(k for k, kind in fc.ElementTypes.default().kinds.items() if kind == "resource")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_REFS: dict[str, tuple[Bare, ...]] = {}


def parse_reference(text: str) -> tuple[Bare, ...]:
    """'Patient/1' → ('Patient', '1', 'Patient/1'); version dropped; absolute URLs keep the URL (the store
    decides whether the base is local); '#contained' → no row (contained resources are not indexed)."""
    out = _REFS.get(text)
    if out is None:
        if text.startswith("#") or not text:
            out = ()
        else:
            parts = text.split("/")
            if len(parts) >= 4 and parts[-2] == "_history":
                parts = parts[:-2]
            if len(parts) >= 2 and parts[-2] in _RESOURCE_TYPES and _ID.fullmatch(parts[-1]):
                out = (("reference", parts[-2], parts[-1], "/".join(parts)),)
            else:
                out = (("reference", None, None, text),)
        if len(_REFS) > 100_000:
            _REFS.clear()
        _REFS[text] = out
    return out


def r_reference(v: Any) -> tuple[Bare, ...]:
    ref = v.get("reference") if type(v) is dict else None
    return parse_reference(ref) if type(ref) is str else ()


def r_identifier(v: Any) -> tuple[Bare, ...]:
    """Rows for `code:identifier` (Reference.identifier, a logical reference)."""
    ident = v.get("identifier") if type(v) is dict else None
    if type(ident) is not dict or ident.get("value") is None:
        return ()
    return (("token", ident.get("system"), ident.get("value"), None),)


def r_canonical(v: Any) -> tuple[Bare, ...]:
    return (("reference", None, None, v.split("|", 1)[0]),) if type(v) is str and v else ()


def r_resource(v: Any) -> tuple[Bare, ...]:
    # `Bundle.entry[0].resource`: the reference is to the resource itself.
    if type(v) is not dict or not v.get("resourceType") or not v.get("id"):
        return ()
    return (("reference", v["resourceType"], v["id"], f"{v['resourceType']}/{v['id']}"),)


# -------------------------------------------------------------------------------------------------- dates

def d_prim(v: Any) -> tuple[Bare, ...]:
    try:
        return (("date",) + parse_range(v),)
    except ValueError:
        return ()  # invalid dates are a validation matter; they are simply not searchable


def d_period(v: Any) -> tuple[Bare, ...]:
    if type(v) is not dict:
        return ()
    start, end = v.get("start"), v.get("end")
    if start is None and end is None:
        return ()
    try:
        lo = parse_range(start)[0] if start is not None else NEG_INF
        hi = parse_range(end)[1] if end is not None else POS_INF
    except ValueError:
        return ()
    return (("date", lo, hi),)


def d_timing(v: Any) -> list[Bare]:
    if type(v) is not dict:
        return []
    out = [r for e in v.get("event") or () for r in d_prim(e)]
    repeat = v.get("repeat")
    if not out and type(repeat) is dict and "boundsPeriod" in repeat:
        out.extend(d_period(repeat["boundsPeriod"]))
    return out


# ----------------------------------------------------------------------------------- numbers, quantities

def n_number(v: Any) -> tuple[Bare, ...]:
    if type(v) not in (int, float):
        return ()
    return (("number", v) + number_range(v),)


def q_quantity(v: Any) -> tuple[Bare, ...]:
    if type(v) is not dict:
        return ()
    value, system, code = v.get("value"), v.get("system"), v.get("code")
    if type(value) not in (int, float):
        return ()
    lo, hi = number_range(value)
    comparator = v.get("comparator")
    if comparator is not None:  # "<5" is everything below 5
        lo, hi = (NEG_INF, value if comparator == "<" else hi) if comparator[0] == "<" else \
                 (value if comparator == ">" else lo, POS_INF)
    canon = canonical(value, code) if system in (UCUM, None) else None
    return (("quantity", value, lo, hi, system, code, v.get("unit"),
             canon[1] if canon else None, canon[0] if canon else None),)


def q_money(v: Any) -> tuple[Bare, ...]:
    if type(v) is not dict or type(v.get("value")) not in (int, float):
        return ()
    value = v["value"]
    return (("quantity", value) + number_range(value) + (ISO4217, v.get("currency"), None, None, None),)


def q_range(v: Any) -> tuple[Bare, ...]:
    """A Range indexes as a quantity with no point value: lo = low.value, hi = high.value (open sides ±1e18),
    unit from whichever bound has one; no canonical form."""
    if type(v) is not dict:
        return ()
    low, high = v.get("low") or {}, v.get("high") or {}
    lv, hv = low.get("value"), high.get("value")
    if lv is None and hv is None:
        return ()
    unit = low if lv is not None else high
    return (("quantity", None, lv if lv is not None else NEG_INF, hv if hv is not None else POS_INF,
             unit.get("system"), unit.get("code"), unit.get("unit"), None, None),)


def q_number(v: Any) -> tuple[Bare, ...]:
    if type(v) not in (int, float):
        return ()
    return (("quantity", v) + number_range(v) + (None, None, None, None, None),)


def u_prim(v: Any) -> tuple[Bare, ...]:
    return (("uri", v),) if type(v) is str else ()


def sp_near(v: Any) -> tuple[Bare, ...]:
    if type(v) is not dict or v.get("latitude") is None or v.get("longitude") is None:
        return ()
    return (("special", v["latitude"], v["longitude"]),)


# ------------------------------------------------------------------------------------ converter selection

_STRINGY = ("string", "markdown", "code", "id", "uri", "url", "canonical", "oid", "uuid")
_DATES = ("date", "dateTime", "instant")
_NUMBERS = ("integer", "decimal", "positiveInt", "unsignedInt")
_QUANTITIES = ("Quantity", "Age", "Duration", "Count", "Distance", "SimpleQuantity", "MoneyQuantity")

CONVERTERS: dict[str, dict[str, str]] = {
    "string": {**dict.fromkeys(_STRINGY, "s_prim"), "HumanName": "s_name", "Address": "s_address"},
    "token": {**dict.fromkeys(_STRINGY + ("boolean",), "t_prim"), "Coding": "t_coding",
              "CodeableConcept": "t_concept", "Identifier": "t_identifier", "ContactPoint": "t_contact"},
    "reference": {"Reference": "r_reference", "canonical": "r_canonical", "uri": "r_canonical",
                  "url": "r_canonical", "Resource": "r_resource"},
    # string: `scheduledString`, `onsetString` ... are indexed when they happen to hold a date (else no row)
    "date": {**dict.fromkeys(_DATES + ("string",), "d_prim"), "Period": "d_period", "Timing": "d_timing"},
    "number": dict.fromkeys(_NUMBERS, "n_number"),
    "quantity": {**dict.fromkeys(_QUANTITIES, "q_quantity"), "Money": "q_money", "Range": "q_range",
                 **dict.fromkeys(_NUMBERS, "q_number")},
    "uri": dict.fromkeys(_STRINGY, "u_prim"),
}


def _extension_converter(param_type: str) -> Callable[[Any], list[Bare]]:
    """Extensions carry value[x]; the type is known only from the key at run time."""
    table = CONVERTERS[param_type]
    prims = {t for t, kind in fc.ElementTypes.default().kinds.items() if kind == "primitive"}

    def convert(ext: Any) -> list[Bare]:
        if type(ext) is not dict:
            return []
        for key, value in ext.items():
            if key.startswith("value") and len(key) > 5:
                t = key[5].lower() + key[6:] if key[5].lower() + key[6:] in prims else key[5:]
                name = table.get(t)
                return list(NAMESPACE[name](value)) if name else []
        return []
    return convert


NAMESPACE: dict[str, Any] = {
    **fc.RUNTIME, "_product": product,
    **{f.__name__: f for f in (s_prim, s_name, s_address, t_prim, t_coding, t_concept, t_identifier, t_identifier_of_type, t_contact,
                               r_reference, r_identifier, r_canonical, r_resource, d_prim, d_period, d_timing,
                               n_number, q_quantity, q_money, q_range, q_number, u_prim, sp_near)},
}
for _ptype in CONVERTERS:
    NAMESPACE[f"x_{_ptype}"] = _extension_converter(_ptype)
    CONVERTERS[_ptype]["Extension"] = f"x_{_ptype}"


def converter_for(param_type: str, code: str, fhir_type: str) -> str | None:
    if param_type == "special":
        return "sp_near" if code == "near" else None
    return CONVERTERS.get(param_type, {}).get(fhir_type)


# ---------------------------------------------------------------------------------- fallback (fhirpathpy)

def _plain(v: Any) -> Any:
    """fhirpathpy hands back Decimals; the rows must look like those of orjson-parsed JSON."""
    if isinstance(v, Decimal):  # orjson: "12" → int, "12.0" / "1e3" → float
        text = str(v)
        return float(v) if "." in text or "E" in text or "e" in text else int(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


_CONTACT_SYSTEMS = {"phone", "fax", "email", "pager", "url", "sms", "other"}


def guess_type(v: Any, param_type: str) -> str:
    """The FHIR type of an untyped (interpreter-produced) value, from its JSON shape and the parameter type."""
    if type(v) is bool:
        return "boolean"
    if type(v) in (int, float):
        return "decimal"
    if type(v) is str:
        return {"date": "dateTime", "reference": "canonical", "uri": "uri"}.get(param_type, "string")
    if type(v) is not dict:
        return "?"
    if "resourceType" in v:
        return "Resource"
    if "url" in v and any(k.startswith("value") for k in v):
        return "Extension"
    shapes = (("coding", "CodeableConcept"), ("reference", "Reference"), ("currency", "Money"),
              ("low", "Range"), ("high", "Range"), ("start", "Period"), ("end", "Period"), ("event", "Timing"),
              ("repeat", "Timing"), ("family", "HumanName"), ("given", "HumanName"), ("line", "Address"),
              ("city", "Address"), ("postalCode", "Address"), ("country", "Address"), ("latitude", "Location"))
    for key, t in shapes:
        if key in v:
            return t
    if "value" in v and ("unit" in v or "code" in v or type(v["value"]) in (int, float)):
        return "Quantity"
    if "value" in v or "type" in v or "assigner" in v:
        return "ContactPoint" if v.get("system") in _CONTACT_SYSTEMS else "Identifier"
    if param_type == "string" and "text" in v:
        return "HumanName"  # a name given only as text
    if "code" in v or "system" in v or "display" in v:
        return "Coding" if param_type != "reference" else "Reference"
    if "identifier" in v:
        return "Reference"
    if set(v) == {"text"}:
        return "CodeableConcept"
    return "?"


def convert_untyped(param_type: str, code: str, values: list) -> list[Row]:
    """Rows of interpreter results: the same converters, chosen by shape (used by fallback and the tests)."""
    rows: list[Row] = []
    for v in values:
        v = _plain(v)
        t = guess_type(v, param_type)
        name = converter_for(param_type, code, "Location" if t == "Location" else t)
        if name:
            rows.extend((code,) + b for b in NAMESPACE[name](v))
        if param_type == "reference" and t == "Reference":
            rows.extend((code + ":identifier",) + b for b in r_identifier(v))
        if param_type == "token" and t == "Identifier":
            rows.extend((code + ":of-type",) + b for b in t_identifier_of_type(v))
    return rows


_FHIRPATHPY: dict[str, Any] = {}


def fhirpathpy_eval(expression: str) -> Callable[[dict], list]:
    """fhirpathpy with the R4 model and a `resolve()` that yields a stub of the referenced type (enough for
    `resolve() is X`). The interpreter is imported lazily: it is only needed for fallbacks and tests."""
    fn = _FHIRPATHPY.get(expression)
    if fn is None:
        import fhirpathpy
        from fhirpathpy.engine.nodes import ResourceNode
        from fhirpathpy.models import models

        def resolve(inputs: list) -> list:
            out = []
            for ref in inputs:
                t = fc.reference_type(ref, {}) if isinstance(ref, dict) else None
                if t:
                    out.append(ResourceNode.create_node({"resourceType": t}))
            return out

        def has_extension(inputs: list, url: str) -> list:  # not implemented by fhirpathpy 2.x
            return [fc._has_ext(inputs, url)]

        table = {**FHIRPATHPY_FUNCTIONS, "resolve": {"fn": resolve, "arity": {0: []}},
                 "hasExtension": {"fn": has_extension, "arity": {1: ["String"]}}}
        compiled = fhirpathpy.compile(expression, models["r4"], {"userInvocationTable": table})
        fn = _FHIRPATHPY[expression] = lambda res: compiled(res, {"resource": res, "rootResource": res})
    return fn


# ------------------------------------------------------------------------------------------------ building

def _add_param(tree: fc.Tree, p: "SearchParam", resource_type: str, registry: "SearchRegistry",
               n: list[int]) -> None:
    """Compile one parameter into `tree`; raises CompileError if it cannot be compiled natively."""
    types = fc.ElementTypes.default()
    root = fc.Scope([fc.Branch("res", (), resource_type, resource_type)], resource_type, types)
    if p.expression is None:
        return
    branches = fc.compile_branches(p.expression, root)
    if p.type != "composite":
        for b in branches:
            conv = converter_for(p.type, p.code, b.type)
            if conv:
                tree.add(b, conv, code=p.code)
            if p.type == "reference" and types.is_a(b.type, "Reference"):
                tree.add(b, "r_identifier", code=p.code + ":identifier")
            if p.type == "token" and b.type == "Identifier":
                tree.add(b, "t_identifier_of_type", code=p.code + ":of-type")
        return
    comps = []
    for definition, expression in p.components:
        sub = registry.by_url(definition)
        if sub is None:
            raise fc.InvalidExpression(f"composite {p.code}: unknown component {definition}")
        comps.append((sub, fc.parse(expression)))
    for b in branches:
        at_root = b.root == "res" and not b.ops
        target = tree if at_root else fc.Tree()
        focus = fc.Scope([fc.Branch("res" if at_root else "focus", (), b.type, b.ctx)], resource_type, types,
                         top=False)
        slots = []
        for sub, ast in comps:
            n[0] += 1
            slot = f"_c{n[0]}"
            slots.append(slot)
            for cb in fc.compile_branches(ast, focus):
                conv = converter_for(sub.type, sub.code, cb.type)
                if conv:
                    target.add(cb, conv, slot=slot)
        target.products.append((p.code, slots))
        if not at_root:
            tree.node(b).loops.append(fc.CompositeLoop(p.code, slots, target))


def compile_param(p: "SearchParam", resource_type: str, registry: "SearchRegistry") -> None:
    """Validate that `p` compiles natively for `resource_type` (raises CompileError otherwise)."""
    _add_param(fc.Tree(), p, resource_type, registry, [0])


def build_extractor(registry: "SearchRegistry", resource_type: str) -> tuple[Callable[[dict], list[Row]], list[str]]:
    """The compiled extraction function of a type, and the codes of the parameters that fell back."""
    tree, n, fallbacks, calls, namespace = fc.Tree(), [0], [], [], dict(NAMESPACE)
    for code, p in registry.for_type(resource_type).items():
        if p.type == "special" and code != "near" or code in ("_id", "_lastUpdated") or p.expression is None:
            continue
        trial = fc.Tree()
        try:
            _add_param(trial, p, resource_type, registry, n)
        except fc.CompileError as exc:
            if p.type == "composite":
                log.warning("search parameter %s.%s not indexed: %s", resource_type, code, exc)
                continue
            log.info("search parameter %s.%s falls back to fhirpathpy: %s", resource_type, code, exc)
            fallbacks.append(code)
            namespace[f"_fb_{len(calls)}"] = _fallback_fn(p)
            calls.append(f"rows.extend(_fb_{len(calls)}(res))")
            continue
        _add_param(tree, p, resource_type, registry, n)  # the trial succeeded, so this cannot raise
    name = f"extract_{resource_type}"
    source = fc.generate(name, tree, calls)
    # The source is generated by fhirpath_compile from parsed expressions; every literal from a definition is
    # embedded with repr(), so even a hostile run-time SearchParameter cannot inject code (test_definitions).
    exec(compile(source, f"<search extractor {resource_type}>", "exec"), namespace)  # nosec B102
    fn = namespace[name]
    fn.source = source  # type: ignore[attr-defined]  # for debugging and the docs
    return fn, fallbacks


def _fallback_fn(p: "SearchParam") -> Callable[[dict], list[Row]]:
    evaluate = fhirpathpy_eval(p.expression or "")

    def run(res: dict) -> list[Row]:
        try:
            return convert_untyped(p.type, p.code, evaluate(res))
        except Exception:  # noqa: BLE001 — an interpreter failure must not block storing the resource
            log.exception("fhirpathpy failed on %s for %s", p.expression, res.get("resourceType"))
            return []
    return run


def extract(resource: dict, registry: "SearchRegistry | None" = None) -> list[Row]:
    """Every search index row of `resource` (deduplicated, first-seen order)."""
    if registry is None:
        from healthtwin.fhir.search_params import SearchRegistry
        registry = SearchRegistry.default()
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise ValueError("resource has no resourceType")
    fn = registry.extractor(rtype)
    try:
        return fn(resource)
    except (AttributeError, TypeError):
        # Structurally invalid JSON (a string where an object belongs): index what can be indexed, per param.
        return _extract_safely(resource, rtype, registry)


def _extract_safely(resource: dict, rtype: str, registry: "SearchRegistry") -> list[Row]:
    rows: list[Row] = []
    for code, p in registry.for_type(rtype).items():
        if p.expression is None or p.type in ("special", "composite") or code in ("_id", "_lastUpdated"):
            continue
        try:
            rows.extend(convert_untyped(p.type, code, fhirpathpy_eval(p.expression)(resource)))
        except Exception:  # noqa: BLE001
            log.warning("cannot index %s of malformed %s", code, rtype)
    return list(dict.fromkeys(rows))
