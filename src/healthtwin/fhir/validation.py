"""Validation of FHIR R4 JSON resources against the base StructureDefinitions and loaded profiles.

The generated definitions (scripts/gen_validation_definitions.py) are compiled once into one `TypeDef` per
type (and per backbone element): a dict from JSON property name to `Elem` (cardinality, type, checker,
binding, reference targets). Validation is then a single recursive walk over the JSON that does dict look-ups
and calls precompiled checkers; it never interprets a StructureDefinition per call. FHIRPath invariants run
after the native walk (see invariants.py), profiles after that (see profiles.py).
"""
from __future__ import annotations

import gzip
import re
import threading
from dataclasses import dataclass
from importlib import resources as _resources
from typing import Any

import orjson

from healthtwin.fhir import invariants as _inv
from healthtwin.fhir.primitives import JSON_KIND, Checker, build_checkers

PRIM, COMPLEX, RESOURCE = 0, 1, 2
UNBOUNDED = 1 << 30


@dataclass(slots=True)
class Issue:
    severity: str  # fatal|error|warning|information
    code: str  # OperationOutcome issue-type
    message: str
    location: str  # FHIRPath location, e.g. "Patient.name[0].given[1]"


class ValueSetCodes:
    """A ValueSet expansion reduced to what a required-binding check needs."""
    __slots__ = ("url", "by_system", "codes")

    def __init__(self, url: str, by_system: dict[str, list[str]]) -> None:
        self.url = url
        self.by_system = {s: frozenset(c) for s, c in by_system.items()}
        self.codes = frozenset(c for cs in self.by_system.values() for c in cs)

    def has(self, system: object, code: object) -> bool:
        # Malformed values (a list where a code belongs) are reported by the type checks; they are not members.
        if type(code) is not str or (system is not None and type(system) is not str):
            return False
        if system is None:
            return code in self.codes
        codes = self.by_system.get(system)  # type: ignore[arg-type]
        return codes is not None and code in codes


class Elem:
    __slots__ = ("name", "min", "max", "many", "code", "kind", "check", "tdef", "binding", "targets", "choice", "inv")

    def __init__(self, name: str, min_: int, max_: int, code: str, choice: str | None) -> None:
        self.name, self.min, self.code, self.choice = name, min_, code, choice
        self.max = UNBOUNDED if max_ < 0 else max_
        self.many = max_ < 0 or max_ > 1  # JSON arrays follow the base definition's max
        self.kind = COMPLEX
        self.check: Checker | None = None
        self.tdef: TypeDef | None = None
        self.binding: ValueSetCodes | None = None
        self.targets: frozenset[str] | None = None
        self.inv: list[_inv.Invariant] | None = None


class TypeDef:
    __slots__ = ("name", "kind", "elems", "required", "choices", "invariants", "is_resource")

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.elems: dict[str, Elem] = {}
        self.required: list[tuple[str, tuple[str, ...]]] = []  # (label, JSON keys any of which satisfies it)
        self.choices: dict[str, str] | None = None  # choice JSON key -> choice base name
        self.invariants: list[_inv.Invariant] = []
        self.is_resource = kind == "resource"


def _read_definition(name: str) -> Any:
    data = (_resources.files("healthtwin.fhir") / "definitions" / name).read_bytes()
    return orjson.loads(gzip.decompress(data) if name.endswith(".gz") else data)


class Model:
    """The compiled R4 base definitions, shared by every Validator."""

    def __init__(self) -> None:
        data = _read_definition("structures.json.gz")
        self.checkers = build_checkers(data["primitives"])
        self.resource_types = frozenset(data["resources"])
        self.spec_profiles: list[dict] = data["profiles"]
        self.unexpanded_required: list[str] = data["unexpandedRequired"]
        self.valuesets: dict[str, ValueSetCodes] = {
            url: ValueSetCodes(url, v) for url, v in _read_definition("required_valuesets.json").items()}
        self._other_valuesets: dict[str, Any] | None = None
        self.invariants = _inv.InvariantRegistry()
        # the invariant shortcut needs each type's choice keys (valueQuantity -> value)
        self.invariants.choices = lambda name: self.types[name].choices if name in self.types else None
        raw_types: dict[str, dict] = data["types"]
        self.types: dict[str, TypeDef] = {n: TypeDef(n, t["kind"]) for n, t in raw_types.items()}
        # The object of a primitive extension (`_birthDate`) is an Element: id + extension only.
        element = TypeDef("Element", "complex-type")
        self.types["Element"] = element
        for name, raw in raw_types.items():
            self._fill(self.types[name], raw)
        for key in ("id", "extension"):
            element.elems[key] = self.types["string"].elems[key]

    def _fill(self, td: TypeDef, raw: dict) -> None:
        for name, min_, max_, code, binding, targets, choice, inv in raw["e"]:
            el = Elem(name, min_, max_, code, choice)
            if code in self.checkers:
                el.kind, el.check = PRIM, self.checkers[code]
            elif code == "Resource":
                el.kind = RESOURCE
            else:
                el.tdef = self.types[code]
            if binding is not None:
                el.binding = self.valuesets.get(binding)  # None when the ValueSet could not be expanded
            if targets is not None:
                el.targets = frozenset(targets)
            if inv:
                # invariants checked natively or not at all are dropped here, not tested per node
                el.inv = [i for i in (self.invariants.get(c, code) for c in inv) if i.fn is not None] or None
            td.elems[name] = el
            if choice is not None:
                if td.choices is None:
                    td.choices = {}
                td.choices[name] = choice
        if td.kind == "primitive-type":
            return
        groups: dict[str, list[str]] = {}
        for el in td.elems.values():
            if el.choice is not None:
                if el.min > 0:
                    groups.setdefault(el.choice, []).extend((el.name, "_" + el.name))
            elif el.min > 0:
                td.required.append((el.name, (el.name, "_" + el.name) if el.kind == PRIM else (el.name,)))
        td.required.extend((base + "[x]", tuple(keys)) for base, keys in groups.items())
        td.invariants = [i for i in (self.invariants.get(c, td.name) for c in raw["c"]) if i.fn is not None]

    def valueset(self, url: str) -> ValueSetCodes | None:
        """A ValueSet expansion by canonical (version ignored): required ones, then every other expandable one."""
        url = url.split("|")[0]
        vs = self.valuesets.get(url)
        if vs is None:
            if self._other_valuesets is None:
                self._other_valuesets = _read_definition("valuesets.json.gz")
            raw = self._other_valuesets.get(url)
            if raw is not None:
                vs = self.valuesets[url] = ValueSetCodes(url, raw)
        return vs


_LOCAL_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RELATIVE = re.compile(r"([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?")
_ABSOLUTE = re.compile(r"[a-z][a-z0-9+.\-]*://\S+")
_ABSOLUTE_TYPED = re.compile(r".*/([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?")
_CONDITIONAL = re.compile(r"([A-Z][A-Za-z]+)\?\S+")
_UUID = re.compile(r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")


class _Ctx:
    """Per-resource state of one walk: the resource, its container (for contained ones) and the contained ids."""
    __slots__ = ("resource", "root", "contained")

    def __init__(self, resource: dict, root: dict, contained: dict[str, str]) -> None:
        self.resource, self.root, self.contained = resource, root, contained


class Validator:
    _default: "Validator | None" = None
    _model: Model | None = None
    _lock = threading.RLock()

    def __init__(self, profiles: "ProfileStore | None" = None, *, invariants: bool = True) -> None:
        from healthtwin.fhir.profiles import ProfileStore
        self.model = Validator.model_instance()
        self.profiles = profiles if profiles is not None else ProfileStore(self.model)
        self.invariants = invariants  # FHIRPath invariants; off = native checks only

    @classmethod
    def model_instance(cls) -> Model:
        with cls._lock:
            if cls._model is None:
                cls._model = Model()
            return cls._model

    @classmethod
    def default(cls) -> "Validator":
        """The shared validator: base definitions plus the specification's own resource profiles and those of
        the International Patient Summary (definitions/ips.json.gz)."""
        with cls._lock:
            if cls._default is None:
                validator = cls()
                validator.profiles.load_spec_profiles()
                validator.profiles.load_package("ips")
                cls._default = validator
            return cls._default

    def add_profile(self, structure_definition: dict) -> None:
        self.profiles.add(structure_definition)

    def remove_profile(self, url: str) -> None:
        self.profiles.remove(url)

    def check_profile(self, structure_definition: dict) -> None:
        """Compiles a profile without loading it: ValueError (with the reason) if it cannot be enforced."""
        from .profiles import compile_profile
        compile_profile(structure_definition, self.profiles.model, self.profiles)

    # ---- entry point ------------------------------------------------------------------------------------------
    def validate(self, resource: dict, profile: str | None = None) -> list[Issue]:
        out: list[Issue] = []
        if type(resource) is not dict:
            return [Issue("fatal", "structure", f"a resource must be a JSON object, not {JSON_KIND(resource)}", "")]
        rtype = resource.get("resourceType")
        # a document's entries are what its Composition's `resolve()` slicing follows (profiles.py)
        token = _profiles_mod._BUNDLE.set(_profiles_mod._bundle_index(resource)) if rtype == "Bundle" else None
        try:
            self._resource(resource, rtype if type(rtype) is str else "", out, None)
        finally:
            if token is not None:
                _profiles_mod._BUNDLE.reset(token)
        if profile is not None:
            compiled = self.profiles.get(profile)
            if compiled is None:
                out.append(Issue("error", "not-supported", f"profile {profile} is not loaded", str(rtype)))
            elif rtype == compiled.type:
                compiled.check(resource, str(rtype), out, self)
            else:
                out.append(Issue("error", "structure", f"profile {profile} constrains {compiled.type}, "
                                 f"not {rtype}", str(rtype)))
        return out

    def _resource(self, r: dict, loc: str, out: list[Issue], container: _Ctx | None) -> None:
        """Validate one resource: top level, contained (container given) or inline (Bundle.entry.resource...)."""
        rtype = r.get("resourceType")
        if type(rtype) is not str:
            out.append(Issue("fatal" if container is None and not loc else "error", "structure",
                             "resource has no resourceType", loc))
            return
        if rtype not in self.model.resource_types:
            out.append(Issue("error", "not-supported", f"unknown resourceType {rtype!r}", loc))
            return
        td = self.model.types[rtype]
        contained_ids: dict[str, str] = {}
        cont = r.get("contained")
        if container is None and type(cont) is list:
            for c in cont:
                if type(c) is dict and type(c.get("id")) is str:
                    contained_ids[c["id"]] = c.get("resourceType", "")
        ctx = _Ctx(r, r if container is None else container.root,
                   contained_ids if container is None else container.contained)
        if container is not None and "contained" in r:
            out.append(Issue("error", "invariant", "dom-2: a contained resource SHALL NOT contain additional "
                             "contained resources", f"{loc}.contained"))
        self._walk(r, td, loc, out, ctx)
        if container is None and cont:
            _inv.check_contained(r, loc, out, Issue)
        meta = r.get("meta")
        if type(meta) is dict and type(meta.get("profile")) is list:
            for i, url in enumerate(meta["profile"]):
                if type(url) is not str:
                    continue
                compiled = self.profiles.get(url)
                if compiled is None:
                    out.append(Issue("warning", "not-supported", f"profile {url} is not loaded; the resource was "
                                     "validated against the base definition only", f"{loc}.meta.profile[{i}]"))
                elif compiled.type != rtype:
                    out.append(Issue("error", "structure", f"profile {url} constrains {compiled.type}, not {rtype}",
                                     f"{loc}.meta.profile[{i}]"))
                else:
                    compiled.check(r, loc, out, self)

    # ---- the native walk --------------------------------------------------------------------------------------
    def _walk(self, obj: dict, td: TypeDef, loc: str, out: list[Issue], ctx: _Ctx) -> None:
        if not obj:
            out.append(Issue("error", "structure", "empty objects are not allowed", loc))
            return
        elems = td.elems
        choices = td.choices
        groups: dict[str, str] | None = None
        for key, val in obj.items():
            el = elems.get(key)
            if el is None:
                if key == "resourceType" and td.is_resource:
                    continue
                if key[:1] == "_":
                    base = elems.get(key[1:])
                    if base is not None and base.kind == PRIM:
                        self._primitive_extension(obj, base, val, loc, out, ctx)
                        continue
                out.append(Issue("error", "structure", self._unknown_message(key, td), f"{loc}.{key}"))
                continue
            if choices is not None and el.choice is not None:
                if groups is None:
                    groups = {}
                prev = groups.get(el.choice)
                if prev is not None:
                    out.append(Issue("error", "structure", f"only one of {prev} and {key} may be present "
                                     f"({el.choice}[x] is a single choice)", f"{loc}.{key}"))
                groups[el.choice] = key
            if val is None:
                out.append(Issue("error", "structure", "null is not allowed here", f"{loc}.{key}"))
                continue
            if el.many:
                if type(val) is not list:
                    out.append(Issue("error", "structure", f"{key} has cardinality {el.min}..*; it must be a JSON "
                                     f"array, not {JSON_KIND(val)}", f"{loc}.{key}"))
                    continue
                n = len(val)
                if n == 0:
                    out.append(Issue("error", "structure", "empty arrays are not allowed", f"{loc}.{key}"))
                    continue
                if n > el.max or n < el.min:
                    out.append(Issue("error", "structure", f"{key} has {n} item(s); cardinality is "
                                     f"{el.min}..{el.max}", f"{loc}.{key}"))
                kind = el.kind
                if kind == PRIM:
                    ext = obj.get("_" + key)
                    for i, item in enumerate(val):
                        if item is None:
                            if type(ext) is not list or i >= len(ext) or ext[i] is None:
                                out.append(Issue("error", "structure", "null is only allowed in a primitive array "
                                                 f"whose _{key} has an extension at the same index",
                                                 f"{loc}.{key}[{i}]"))
                        else:
                            self._primitive(item, el, f"{loc}.{key}[{i}]", out, ctx)
                elif kind == COMPLEX:
                    for i, item in enumerate(val):
                        self._complex(item, el, f"{loc}.{key}[{i}]", out, ctx)
                else:
                    for i, item in enumerate(val):
                        self._inline_resource(item, el, f"{loc}.{key}[{i}]", out, ctx)
            else:
                if type(val) is list:
                    out.append(Issue("error", "structure", f"{key} has cardinality {el.min}..1; it must be a single "
                                     "value, not an array", f"{loc}.{key}"))
                    continue
                kind = el.kind
                if kind == PRIM:
                    self._primitive(val, el, f"{loc}.{key}", out, ctx)
                elif kind == COMPLEX:
                    self._complex(val, el, f"{loc}.{key}", out, ctx)
                else:
                    self._inline_resource(val, el, f"{loc}.{key}", out, ctx)
        for label, keys in td.required:
            for k in keys:
                if k in obj:
                    break
            else:
                out.append(Issue("error", "required", f"{label} is required (minimum cardinality "
                                 f"{elems[keys[0]].min}) but is missing", f"{loc}.{label}"))
        if td.name == "Extension":
            # a value that only carries extensions (`_valueString`) is still a value
            has_value = groups is not None or any(k[:6] == "_value" for k in obj)
            if ("extension" in obj) == has_value:
                out.append(Issue("error", "invariant", "ext-1: an extension must have either extensions or a "
                                 "value[x], not both", loc))
        elif "id" in obj and len(obj) == 1 and not td.is_resource:
            out.append(Issue("error", "invariant", "ele-1: an element must have a value or children other than id",
                             loc))
        if td.invariants and self.invariants:
            self.model.invariants.run(td.invariants, obj, td.name, loc, ctx, out, Issue)

    def _primitive(self, val: Any, el: Elem, loc: str, out: list[Issue], ctx: _Ctx) -> None:
        msg = el.check(val)  # type: ignore[misc]
        if msg is not None:
            out.append(Issue("error", "value", msg, loc))
            return
        if el.binding is not None and val not in el.binding.codes:
            out.append(Issue("error", "code-invalid", f"{val!r} is not in the required value set "
                             f"{el.binding.url}", loc))
        if el.code == "xhtml":
            _inv.check_narrative(val, loc, out, Issue)
        if el.inv is not None and self.invariants:
            self.model.invariants.run(el.inv, val, el.code, loc, ctx, out, Issue)

    def _complex(self, val: Any, el: Elem, loc: str, out: list[Issue], ctx: _Ctx) -> None:
        if type(val) is not dict:
            out.append(Issue("error", "structure", f"{el.code} must be a JSON object, not {JSON_KIND(val)}", loc))
            return
        self._walk(val, el.tdef, loc, out, ctx)  # type: ignore[arg-type]
        code = el.code
        if code == "Reference":
            self._reference(val, el.targets, loc, out, ctx)
        elif code == "Period" and self.invariants:
            _inv.check_period(val, loc, out, Issue)
        if el.binding is not None:
            self._binding(val, el.binding, code, loc, out)
        if el.inv is not None and self.invariants:
            self.model.invariants.run(el.inv, val, el.code, loc, ctx, out, Issue)

    def _inline_resource(self, val: Any, el: Elem, loc: str, out: list[Issue], ctx: _Ctx) -> None:
        if type(val) is not dict:
            out.append(Issue("error", "structure", f"a resource must be a JSON object, not {JSON_KIND(val)}", loc))
            return
        # contained resources share their container's ids and root; inline resources are roots themselves
        self._resource(val, loc, out, ctx if el.name == "contained" else None)

    def _primitive_extension(self, obj: dict, el: Elem, val: Any, loc: str, out: list[Issue], ctx: _Ctx) -> None:
        key = el.name
        element = self.model.types["Element"]
        if el.many:
            if type(val) is not list:
                out.append(Issue("error", "structure", f"_{key} must be an array aligned with {key}", f"{loc}._{key}"))
                return
            values = obj.get(key)
            if values is not None and (type(values) is not list or len(values) != len(val)):
                out.append(Issue("error", "structure", f"_{key} must have the same length as {key}",
                                 f"{loc}._{key}"))
                return
            for i, item in enumerate(val):
                if item is None:
                    if values is None or values[i] is None:
                        out.append(Issue("error", "structure", f"{key}[{i}] has neither a value nor an extension",
                                         f"{loc}.{key}[{i}]"))
                elif type(item) is dict:
                    self._walk(item, element, f"{loc}.{key}[{i}]", out, ctx)
                else:
                    out.append(Issue("error", "structure", f"_{key} items must be objects or null",
                                     f"{loc}._{key}[{i}]"))
        elif type(val) is dict:
            self._walk(val, element, f"{loc}.{key}", out, ctx)
        else:
            out.append(Issue("error", "structure", f"_{key} must be an object (id, extension), not {JSON_KIND(val)}",
                             f"{loc}._{key}"))

    def _unknown_message(self, key: str, td: TypeDef) -> str:
        if td.choices:
            for choice_key, base in td.choices.items():
                if key.startswith(base) and key[len(base):][:1].isupper():
                    allowed = sorted(k[len(base):] for k, b in td.choices.items() if b == base)
                    return (f"unknown element '{key}': {base}[x] allows only the types " + ", ".join(allowed))
        return f"unknown element '{key}' in {td.name}"

    # ---- references and bindings ------------------------------------------------------------------------------
    def reference_type(self, val: dict) -> str | None:
        """The resource type a Reference points to, when its reference or type says so."""
        ref = val.get("reference")
        if type(ref) is str:
            m = _RELATIVE.fullmatch(ref) or _CONDITIONAL.fullmatch(ref) or _ABSOLUTE_TYPED.fullmatch(ref)
            if m is not None and m.group(1) in self.model.resource_types:
                return m.group(1)
        declared = val.get("type")
        return declared if type(declared) is str and declared in self.model.resource_types else None

    def _reference(self, val: dict, targets: frozenset[str] | None, loc: str, out: list[Issue], ctx: _Ctx) -> None:
        ref = val.get("reference")
        rtype: str | None = None
        if type(ref) is str:
            if ref.startswith("#"):
                if ref != "#":
                    found = ctx.contained.get(ref[1:])
                    rtype = found if type(found) is str else None  # a malformed contained resource has no type
                    if found is None:
                        out.append(Issue("error", "invariant", f"ref-1: {ref} does not match the id of a contained "
                                         "resource", loc))
            elif ref.startswith("urn:"):
                if _UUID.fullmatch(ref) is None and _OID.fullmatch(ref) is None:
                    out.append(Issue("error", "value", f"reference {ref!r} is not a valid urn:uuid: or urn:oid:", loc))
            else:
                m = _RELATIVE.fullmatch(ref) or _CONDITIONAL.fullmatch(ref)
                if m is not None:
                    rtype = m.group(1)
                    if rtype not in self.model.resource_types:
                        out.append(Issue("error", "value", f"reference {ref!r}: {rtype} is not a resource type", loc))
                        return
                elif _ABSOLUTE.fullmatch(ref) is not None:
                    m = _ABSOLUTE_TYPED.fullmatch(ref)
                    if m is not None and m.group(1) in self.model.resource_types:
                        rtype = m.group(1)
                else:
                    out.append(Issue("error", "value", f"reference {ref!r} is neither Type/id, an absolute URL, "
                                     "#contained-id, urn:uuid: nor urn:oid:", loc))
                    return
        declared = val.get("type")
        if type(declared) is str:
            if rtype is not None and declared != rtype and declared in self.model.resource_types:
                out.append(Issue("error", "value", f"Reference.type {declared} contradicts the reference {ref!r}", loc))
            elif rtype is None and declared in self.model.resource_types:
                rtype = declared
        if rtype and targets is not None and rtype not in targets:
            out.append(Issue("error", "structure", f"a reference to {rtype} is not allowed here (allowed: "
                             f"{', '.join(sorted(targets))})", loc))

    def _binding(self, val: dict, vs: ValueSetCodes, code: str, loc: str, out: list[Issue]) -> None:
        if code == "Coding":
            if "code" in val and not vs.has(val.get("system"), val["code"]):
                out.append(Issue("error", "code-invalid", f"{val.get('system')}#{val['code']} is not in the required "
                                 f"value set {vs.url}", loc))
        elif code == "CodeableConcept":
            codings = val.get("coding")
            if type(codings) is not list or not codings:
                return  # text-only concepts carry no code to check
            candidates = [c for c in codings if type(c) is dict and "code" in c]
            if candidates and not any(vs.has(c.get("system"), c["code"]) for c in candidates):
                shown = ", ".join(f"{c.get('system')}#{c['code']}" for c in candidates[:3])
                out.append(Issue("error", "code-invalid", f"none of the codings ({shown}) is in the required value "
                                 f"set {vs.url}", loc))
        elif code in ("Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity"):
            if "code" in val and not vs.has(val.get("system"), val["code"]):
                out.append(Issue("error", "code-invalid", f"unit {val['code']!r} is not in the required value set "
                                 f"{vs.url}", loc))


from healthtwin.fhir import profiles as _profiles_mod  # noqa: E402  (circular: profiles uses Issue/Model)
from healthtwin.fhir.profiles import ProfileStore  # noqa: E402
