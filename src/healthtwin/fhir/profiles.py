"""Profiles: StructureDefinitions that constrain a base resource (derivation = constraint).

A profile is compiled once into a tree of `Node`s keyed by element name (slices hang under their sliced
element). Only what the profile adds to its base is kept: the base definition is always validated first by the
native walk, so a node carries just the tightened cardinality, fixed[x]/pattern[x], required binding, type and
target restrictions, slicing and new invariants. A differential is merged onto the base by resolving each
element path through the base types (so `Patient.identifier:fin.system` reaches Identifier.system); a
snapshot-only profile is reduced to the same rules by comparing each element with its base element.
A profile whose baseDefinition is another loaded profile checks its parent's rules first.
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from healthtwin.fhir.invariants import Invariant

if TYPE_CHECKING:
    from healthtwin.fhir.validation import Elem, Issue, Model, TypeDef, Validator, ValueSetCodes

BASE = "http://hl7.org/fhir/StructureDefinition/"
_NONE = object()
SUPPORTED_DISCRIMINATORS = ("value", "pattern", "exists", "type", "profile")
RESOLVE = "resolve()"
# The entries of the document or collection Bundle being checked, by fullUrl and by Type/id: what a
# `resolve()` discriminator (a Composition section's entries) follows. A context variable, since one
# Validator is shared by the server's threads.
_BUNDLE: ContextVar[dict[str, dict] | None] = ContextVar("bundle_entries", default=None)


def _bundle_index(bundle: dict) -> dict[str, dict]:
    index: dict[str, dict] = {}
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") if type(entry) is dict else None
        if type(res) is not dict:
            continue
        if type(entry.get("fullUrl")) is str:
            index[entry["fullUrl"]] = res
        if type(res.get("resourceType")) is str and type(res.get("id")) is str:
            index[f"{res['resourceType']}/{res['id']}"] = res
    return index


def _resolve(value: Any) -> dict | None:
    index = _BUNDLE.get()
    ref = value.get("reference") if type(value) is dict else None
    if index is None or type(ref) is not str:
        return None
    return index.get(ref) or index.get("/".join(ref.split("/")[-2:]))


def conforms(resource: dict, url: str, v: Validator) -> bool | None:
    """Whether `resource` meets the profile `url` (its own rules; the base is checked by the walk);
    None when the profile is not loaded."""
    compiled = v.profiles.get(url)
    if compiled is None:
        return None
    if compiled.type != resource.get("resourceType"):
        return False
    out: list[Issue] = []
    compiled.check(resource, "", out, v)
    return not any(i.severity in ("error", "fatal") for i in out)


def pattern_match(value: Any, pattern: Any) -> bool:
    """pattern[x] semantics: every property of the pattern is present with a matching value (lists: each pattern
    item matches some item of the value)."""
    if type(pattern) is dict:
        return type(value) is dict and all(k in value and pattern_match(value[k], p) for k, p in pattern.items())
    if type(pattern) is list:
        return type(value) is list and all(any(pattern_match(v, p) for v in value) for p in pattern)
    return value == pattern


def _values_at(value: Any, segments: list[str]) -> list[Any]:
    items = [value]
    for seg in segments:
        nxt = []
        for it in items:
            if type(it) is dict and seg in it:
                v = it[seg]
                nxt.extend(v if type(v) is list else [v])
        items = nxt
    return items


class Node:
    """The profile's rules for one element (or one slice of it), and the rules of its children."""

    def __init__(self, name: str, fp_type: str, code: str | None, choice_base: str | None) -> None:
        self.name = name  # JSON key, or "value[x]" for a whole choice
        self.fp_type = fp_type  # FHIRPath type used for invariants
        self.code = code  # the base element type when unambiguous
        self.choice_base = choice_base
        self.choice_codes: dict[str, str] = {}  # for a whole choice: JSON key -> type code
        self.min: int | None = None
        self.max: int | None = None
        self.fixed: Any = _NONE
        self.pattern: Any = _NONE
        self.types: frozenset[str] | None = None
        self.targets: frozenset[str] | None = None
        self.binding: ValueSetCodes | None = None
        self.ext_url: str | None = None
        self.profiles: tuple[str, ...] = ()  # an inline resource's profiles (Bundle.entry.resource)
        self.target_profiles: tuple[str, ...] = ()  # a Reference's target profiles (for profile discriminators)
        self.invariants: list[Invariant] = []
        self.children: dict[str, Node] = {}
        self.slicing: list[tuple[str, list[str]]] | None = None
        self.rules = "open"
        self.slices: dict[str, Node] = {}
        self.expect: dict[str, list[tuple[str, Any]]] = {}  # slice name -> per discriminator (kind, value)

    def has_rules(self) -> bool:
        return (self.min is not None or self.max is not None or self.fixed is not _NONE or self.pattern is not _NONE
                or self.types is not None or self.targets is not None or self.binding is not None
                or bool(self.invariants) or bool(self.slices) or bool(self.children) or bool(self.profiles)
                or bool(self.target_profiles))

    def prune(self) -> None:
        for name, child in list(self.children.items()):
            child.prune()
            if not child.has_rules():
                del self.children[name]
        for child in self.slices.values():
            child.prune()

    # ---- evaluation -------------------------------------------------------------------------------------------
    def select(self, parent: dict, ploc: str) -> list[tuple[str, Any, str]]:
        if self.choice_base is not None and self.name.endswith("[x]"):
            base = self.choice_base
            return [(k, v, f"{ploc}.{k}") for k, v in parent.items()
                    if k.startswith(base) and k[len(base):][:1].isupper()]
        v = parent.get(self.name)
        if v is None:
            return []
        if type(v) is list:
            return [(self.name, x, f"{ploc}.{self.name}[{i}]") for i, x in enumerate(v) if x is not None]
        return [(self.name, v, f"{ploc}.{self.name}")]

    def _extension_only(self, parent: dict) -> int:
        """Primitive values present only as their extension (`_timingDateTime` with a data-absent-reason)."""
        if self.choice_base is not None and self.name.endswith("[x]"):
            base = "_" + self.choice_base
            return sum(1 for k in parent if k.startswith(base) and k[len(base):][:1].isupper()
                       and k[1:] not in parent)
        return 1 if "_" + self.name in parent and self.name not in parent else 0

    def apply(self, parent: dict, ploc: str, out: list[Issue], v: Validator, ctx: Any) -> None:
        from healthtwin.fhir.validation import Issue
        items = self.select(parent, ploc)
        n = len(items)
        if self.min is not None and n < self.min:
            n += self._extension_only(parent)
        if self.min is not None and n < self.min:
            out.append(Issue("error", "required", f"the profile requires at least {self.min} {self.name}, found {n}",
                             f"{ploc}.{self.name}"))
        if self.max is not None and n > self.max:
            out.append(Issue("error", "structure", f"the profile allows at most {self.max} {self.name}, found {n}",
                             f"{ploc}.{self.name}"))
        for key, value, loc in items:
            self.check_item(key, value, loc, out, v, ctx)
        if self.slicing is not None:
            self.apply_slicing(items, ploc, out, v, ctx)

    def check_item(self, key: str, value: Any, loc: str, out: list[Issue], v: Validator, ctx: Any) -> None:
        from healthtwin.fhir.validation import Issue
        code = self.code
        actual = None
        if self.choice_base is not None:
            code = actual = self.choice_codes.get(key)
        elif code == "Resource" and type(value) is dict:
            actual = value.get("resourceType")
        if self.types is not None and actual is not None and actual not in self.types:
            out.append(Issue("error", "structure", f"the profile allows only {', '.join(sorted(self.types))} "
                             f"here, not {actual}", loc))
            return
        if self.fixed is not _NONE and value != self.fixed:
            out.append(Issue("error", "value", f"value must be exactly {_show(self.fixed)} (fixed by the profile), "
                             f"not {_show(value)}", loc))
        if self.pattern is not _NONE and not pattern_match(value, self.pattern):
            out.append(Issue("error", "value", f"value must match the pattern {_show(self.pattern)} required by the "
                             "profile", loc))
        if self.binding is not None:
            if type(value) is dict:
                v._binding(value, self.binding, code or "", loc, out)
            elif value not in self.binding.codes:
                out.append(Issue("error", "code-invalid", f"{value!r} is not in the value set {self.binding.url} "
                                 "required by the profile", loc))
        if self.targets is not None and type(value) is dict:
            rtype = v.reference_type(value)
            if rtype is not None and rtype not in self.targets:
                out.append(Issue("error", "structure", f"the profile allows references to "
                                 f"{', '.join(sorted(self.targets))} here, not {rtype}", loc))
        if self.invariants and v.invariants:
            v.model.invariants.run(self.invariants, value, self.fp_type, loc, ctx, out, Issue)
        if self.profiles and type(value) is dict and "resourceType" in value:
            for url in self.profiles:
                compiled = v.profiles.get(url)
                if compiled is not None and compiled.type == value["resourceType"]:
                    compiled.check(value, loc, out, v)
                    break
        if self.children and type(value) is dict:
            for child in self.children.values():
                child.apply(value, loc, out, v, ctx)

    def _matches(self, slice_name: str, key: str, value: Any, v: Validator | None = None,
                 strict: bool = True) -> bool:
        """Whether the item belongs to the slice; `strict` False: a profile discriminator is judged by the
        resource type alone (to report why an item of the right type fails the profile)."""
        for (kind, segments), (_, expected) in zip(self.slicing or [], self.expect[slice_name]):
            if kind in ("type", "profile") and segments:
                if segments == [RESOLVE]:
                    target = _resolve(value)
                    rtype = target.get("resourceType") if target is not None else (
                        v.reference_type(value) if v is not None and type(value) is dict else None)
                else:
                    found = _values_at(value, segments)
                    target = found[0] if found and type(found[0]) is dict else None
                    rtype = target.get("resourceType") if target is not None else None
                if kind == "type":
                    if rtype != expected:
                        return False
                    continue
                types, urls = expected
                if types and rtype not in types:
                    return False
                if strict and target is not None and urls and v is not None:
                    verdicts = [conforms(target, url, v) for url in urls]
                    if not any(x is None or x for x in verdicts):
                        return False
                continue
            if kind == "profile":  # $this: the item itself is the resource
                types, urls = expected
                rtype = value.get("resourceType") if type(value) is dict else None
                if (types and rtype not in types) or (strict and v is not None and urls and type(value) is dict
                                                       and not any(conforms(value, u, v) in (None, True)
                                                                   for u in urls)):
                    return False
                continue
            if kind == "type":
                actual = value.get("resourceType") if type(value) is dict and "resourceType" in value else \
                    key[len(self.choice_base):] if self.choice_base else None
                if actual != expected:
                    return False
                continue
            found = _values_at(value, segments)
            if kind == "exists":
                if bool(found) != expected:
                    return False
            elif not any(pattern_match(f, expected) for f in found):
                return False
        return True

    def apply_slicing(self, items: list[tuple[str, Any, str]], ploc: str, out: list[Issue], v: Validator,
                      ctx: Any) -> None:
        from healthtwin.fhir.validation import Issue
        counts = dict.fromkeys(self.slices, 0)
        loose = any(kind == "profile" for kind, _ in self.slicing or [])
        for key, value, loc in items:
            for name, node in self.slices.items():
                if self._matches(name, key, value, v):
                    counts[name] += 1
                    node.check_item(key, value, loc, out, v, ctx)
                    break
            else:
                # of a slice's type but not conforming to its profile: checked against the first such slice,
                # so the answer says what in it is wrong rather than only that a slice is missing
                name = next((n for n in self.slices if self._matches(n, key, value, v, strict=False)), None) \
                    if loose else None
                if name is not None:
                    counts[name] += 1
                    self.slices[name].check_item(key, value, loc, out, v, ctx)
                    continue
                if self.rules == "closed":
                    out.append(Issue("error", "structure", f"this {self.name} matches none of the slices "
                                     f"({', '.join(self.slices)}) and the slicing is closed", loc))
        for name, node in self.slices.items():
            n = counts[name]
            if node.min is not None and n < node.min:
                out.append(Issue("error", "required", f"slice '{name}' of {self.name} requires at least {node.min} "
                                 f"item(s), found {n}", f"{ploc}.{self.name}"))
            if node.max is not None and n > node.max:
                out.append(Issue("error", "structure", f"slice '{name}' of {self.name} allows at most {node.max} "
                                 f"item(s), found {n}", f"{ploc}.{self.name}"))


def _show(value: Any) -> str:
    import orjson
    text = orjson.dumps(value).decode()
    return text if len(text) <= 120 else text[:117] + "..."


class CompiledProfile:
    def __init__(self, url: str, version: str | None, type_: str, name: str, root: Node,
                 parent: CompiledProfile | None, notes: list[str]) -> None:
        self.url, self.version, self.type, self.name = url, version, type_, name
        self.root, self.parent, self.notes = root, parent, notes

    def check(self, resource: dict, loc: str, out: list[Issue], v: Validator) -> None:
        from healthtwin.fhir.validation import _Ctx
        token = _BUNDLE.set(_bundle_index(resource)) if self.type == "Bundle" else None
        try:
            self._check(resource, loc, out, v)
        finally:
            if token is not None:
                _BUNDLE.reset(token)

    def _check(self, resource: dict, loc: str, out: list[Issue], v: Validator) -> None:
        from healthtwin.fhir.validation import _Ctx
        if self.parent is not None:
            self.parent.check(resource, loc, out, v)
        ctx = _Ctx(resource, resource, {})
        if self.root.invariants and v.invariants:
            from healthtwin.fhir.validation import Issue
            v.model.invariants.run(self.root.invariants, resource, self.type, loc, ctx, out, Issue)
        for child in self.root.children.values():
            child.apply(resource, loc, out, v, ctx)


class ProfileStore:
    """Loaded profiles by canonical url (and version); the latest added wins for a bare url."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._profiles: dict[str, dict[str | None, CompiledProfile]] = {}
        self._latest: dict[str, CompiledProfile] = {}
        self.spec_failures: dict[str, str] = {}
        self._valuesets: dict[str, ValueSetCodes] = {}

    def add_valueset(self, valueset: dict) -> None:
        """Make a ValueSet available to profile bindings: from its expansion, or from a compose that lists
        concepts or includes ValueSets already known."""
        from healthtwin.fhir.validation import ValueSetCodes
        url = valueset.get("url")
        if valueset.get("resourceType") != "ValueSet" or type(url) is not str:
            raise ValueError("add_valueset needs a ValueSet resource with a url")
        codes: dict[str, set[str]] = {}

        def walk(contains: list[dict]) -> None:
            for c in contains:
                if "code" in c:
                    codes.setdefault(c.get("system", ""), set()).add(c["code"])
                walk(c.get("contains", []))
        if "expansion" in valueset:
            walk(valueset["expansion"].get("contains", []))
        else:
            for inc in (valueset.get("compose") or {}).get("include", []):
                if "concept" in inc and "system" in inc:
                    codes.setdefault(inc["system"], set()).update(c["code"] for c in inc["concept"])
                elif "valueSet" in inc and "system" not in inc:
                    for ref in inc["valueSet"]:
                        other = self.valueset(ref)
                        if other is None:
                            raise ValueError(f"{url}: included ValueSet {ref} is not known")
                        for system, cs in other.by_system.items():
                            codes.setdefault(system, set()).update(cs)
                else:
                    raise ValueError(f"{url}: only concept lists and included ValueSets can be expanded here")
        self._valuesets[url] = ValueSetCodes(url, {s: sorted(c) for s, c in codes.items()})

    def valueset(self, url: str) -> ValueSetCodes | None:
        return self._valuesets.get(url.split("|")[0]) or self.model.valueset(url)

    def __contains__(self, url: str) -> bool:
        return self.get(url) is not None

    def urls(self) -> list[str]:
        return sorted(self._latest)

    def get(self, canonical: str) -> CompiledProfile | None:
        url, _, version = canonical.partition("|")
        if version:
            return self._profiles.get(url, {}).get(version)
        return self._latest.get(url)

    def remove(self, url: str) -> None:
        url, _, version = url.partition("|")
        if version:
            self._profiles.get(url, {}).pop(version, None)
            if url in self._latest and self._latest[url].version == version:
                del self._latest[url]
                if self._profiles.get(url):
                    self._latest[url] = next(reversed(self._profiles[url].values()))
        else:
            self._profiles.pop(url, None)
            self._latest.pop(url, None)

    def load_spec_profiles(self) -> None:
        """The R4 specification's own resource profiles (vital signs, ...); those this engine cannot compile are
        recorded in spec_failures rather than raising."""
        pending = list(self.model.spec_profiles)
        for _ in range(4):  # profiles on profiles: load parents first
            retry = []
            for sd in pending:
                try:
                    self.add(sd)
                except ValueError as exc:
                    retry.append(sd)
                    self.spec_failures[sd["url"]] = str(exc)
            pending = retry
        for sd in self.model.spec_profiles:
            if sd["url"] in self._latest:
                self.spec_failures.pop(sd["url"], None)

    def load_package(self, name: str) -> None:
        """An implementation guide's profiles and value sets from the generated definitions/<name>.json.gz
        (scripts/gen_ips_definitions.py for "ips"), in the order written there; those this engine cannot
        compile are recorded in spec_failures, like the R4 spec's own."""
        from healthtwin.fhir.validation import _read_definition
        data = _read_definition(f"{name}.json.gz")
        for vs in data["valuesets"]:
            self.add_valueset(vs)
        for sd in data["profiles"]:
            try:
                self.add(sd)
            except ValueError as exc:
                self.spec_failures[sd["url"]] = str(exc)
        self.packages = getattr(self, "packages", ()) + (data["package"],)

    def add(self, sd: dict) -> CompiledProfile:
        compiled = compile_profile(sd, self.model, self)
        self._profiles.setdefault(compiled.url, {})[compiled.version] = compiled
        self._latest[compiled.url] = compiled
        return compiled


def compile_profile(sd: dict, model: Model, store: ProfileStore) -> CompiledProfile:
    if type(sd) is not dict or sd.get("resourceType") != "StructureDefinition":
        raise ValueError("a profile must be a StructureDefinition resource")
    url = sd.get("url")
    if type(url) is not str or not url:
        raise ValueError("the StructureDefinition has no url")
    rtype = sd.get("type")
    if rtype not in model.resource_types:
        raise ValueError(f"{url}: type {rtype!r} is not an R4 resource type (only resource profiles are supported)")
    if sd.get("derivation", "constraint") != "constraint" or sd.get("kind", "resource") != "resource":
        raise ValueError(f"{url}: only constraint profiles on resources are supported (derivation=constraint)")
    base_url = str(sd.get("baseDefinition") or BASE + rtype).split("|")[0]
    parent = None
    if base_url != BASE + rtype:
        parent = store.get(base_url)
        if parent is None:
            raise ValueError(f"{url}: baseDefinition {base_url} is neither {BASE + rtype} nor a loaded profile")
        if parent.type != rtype:
            raise ValueError(f"{url}: baseDefinition {base_url} constrains {parent.type}, not {rtype}")
    differential = (sd.get("differential") or {}).get("element")
    snapshot = (sd.get("snapshot") or {}).get("element")
    if not differential and not snapshot:
        raise ValueError(f"{url}: the StructureDefinition has neither a differential nor a snapshot")
    notes: list[str] = []
    root = build_tree(rtype, differential or snapshot, not differential, model, store, notes)
    return CompiledProfile(url, sd.get("version"), rtype, sd.get("name", url), root, parent, notes)


# ---- compiling a differential (or snapshot) onto the base definitions ---------------------------------------------

def _element_ids(elements: list[dict]) -> list[str]:
    """Element ids carry the slice names (Patient.identifier:fin.system); synthesise them when absent."""
    ids = []
    current: dict[str, str] = {}  # sliced path -> slice being described
    for e in elements:
        if "id" in e:
            ids.append(e["id"])
            continue
        path = e.get("path", "")
        if "sliceName" in e:
            current = {p: s for p, s in current.items() if not p.startswith(path + ".")}
            current[path] = e["sliceName"]
        parts = path.split(".")
        out = []
        for i, part in enumerate(parts):
            prefix = ".".join(parts[: i + 1])
            out.append(f"{part}:{current[prefix]}" if prefix in current else part)
        ids.append(".".join(out))
    return ids


class _Builder:
    def __init__(self, rtype: str, model: Model, store: ProfileStore, snapshot: bool, notes: list[str]) -> None:
        self.rtype, self.model, self.store, self.snapshot, self.notes = rtype, model, store, snapshot, notes
        self.root = Node(rtype, rtype, rtype, None)

    def resolve(self, eid: str, types: list[str]) -> tuple[Node, Elem | None, list[Elem]]:
        """The node for an element id, its base element (None for a whole choice) and the choice's elements."""
        node, td = self.root, self.model.types[self.rtype]
        el: Elem | None = None
        choice: list[Elem] = []
        segments = eid.split(".")[1:]
        for i, seg in enumerate(segments):
            name, _, slice_name = seg.partition(":")
            if td is None:
                raise ValueError(f"element {eid}: cannot go below a primitive or resource element to {name}")
            if name.endswith("[x]"):
                base = name[:-3]
                choice = [e for e in td.elems.values() if e.choice == base]
                if not choice:
                    raise ValueError(f"element {eid}: {td.name} has no choice element {name}")
                if slice_name:  # a type slice (value[x]:valueQuantity) is the renamed element valueQuantity
                    if slice_name not in td.elems and len(types) == 1 and i == len(segments) - 1:
                        slice_name = base + types[0][:1].upper() + types[0][1:]  # older style: born[x]:BornAge
                    el = td.elems.get(slice_name)
                    if el is None or el.choice != base:
                        raise ValueError(f"element {eid}: {slice_name} is not a type of {name}")
                    node = node.children.setdefault(slice_name, Node(slice_name, el.code, el.code, None))
                    choice = []
                else:
                    el = None
                    child = node.children.get(name)
                    if child is None:
                        child = node.children[name] = Node(name, choice[0].code, None, base)
                        child.choice_codes = {e.name: e.code for e in choice}
                    node = child
            else:
                el = td.elems.get(name)
                if el is None:
                    raise ValueError(f"element {eid}: {td.name} has no element {name!r}")
                choice = []
                node = node.children.setdefault(name, Node(name, el.code, el.code, None))
                if slice_name:
                    node = node.slices.setdefault(slice_name, Node(name, el.code, el.code, None))
            if el is not None:
                td = el.tdef
            else:
                codes = {e.code for e in choice if node.types is None or e.code in node.types}
                td = self.model.types.get(codes.pop()) if len(codes) == 1 else None
        return node, el, choice

    def apply(self, node: Node, e: dict, el: Elem | None, choice: list[Elem], is_slice: bool) -> None:
        eid = e.get("id", e.get("path"))
        if node is self.root:
            e = {k: v for k, v in e.items() if k in ("constraint", "id", "path")}
        base_min = el.min if el is not None else (choice[0].min if choice else 0)
        base_max = el.max if el is not None else (choice[0].max if choice else 1 << 30)
        if "min" in e:
            if is_slice:
                node.min = e["min"]
            elif e["min"] > base_min:
                node.min = e["min"]
            elif e["min"] < base_min and not self.snapshot and not (el is not None and el.choice is not None):
                # (a type slice of a required choice, occurrence[x]:occurrenceDateTime, may be absent)
                raise ValueError(f"element {eid}: min {e['min']} is below the base minimum {base_min}")
        if "max" in e:
            m = (1 << 30) if e["max"] == "*" else int(e["max"])
            if is_slice:
                node.max = None if m == 1 << 30 else m
            elif m < base_max:
                node.max = m
            elif m > base_max:
                raise ValueError(f"element {eid}: max {e['max']} is above the base maximum {base_max}")
        base_codes = {c.code for c in choice} if el is None else {el.code}
        # snapshots type id/url/value elements as System.String etc. (the base compilation already knows them)
        codes = {t["code"] for t in e.get("type", []) if t.get("code") not in ("BackboneElement", "Element")
                 and not str(t.get("code")).startswith("http://hl7.org/fhirpath/System.")}
        if codes and el is not None:
            if el.code == "Resource":  # Bundle.entry.resource, contained: a profile may name resource types
                if not codes <= self.model.resource_types | {"Resource"}:
                    raise ValueError(f"element {eid}: {', '.join(sorted(codes))} are not resource types")
                if "Resource" not in codes:
                    node.types = frozenset(codes)
            elif codes != {el.code}:
                raise ValueError(f"element {eid}: type {', '.join(sorted(codes))} is not allowed by the base "
                                 f"({el.code})")
        if codes and el is None:
            if not codes <= base_codes:
                raise ValueError(f"element {eid}: types {', '.join(sorted(codes - base_codes))} are not allowed "
                                 "by the base")
            if codes != base_codes:
                node.types = frozenset(codes)
        for t in e.get("type", []):
            if t.get("code") == "Extension" and t.get("profile"):
                node.ext_url = t["profile"][0]
            elif t.get("profile") and t.get("code") in self.model.resource_types:
                node.profiles += tuple(str(u).split("|")[0] for u in t["profile"])
            if t.get("code") == "Reference" and t.get("targetProfile"):
                node.target_profiles += tuple(str(u).split("|")[0] for u in t["targetProfile"])
                self._targets(node, t["targetProfile"], el)
        for key, value in e.items():
            if key.startswith("fixed"):
                node.fixed = value
            elif key.startswith("pattern"):
                node.pattern = value
        b = e.get("binding")
        if b and b.get("strength") == "required" and b.get("valueSet"):
            vs = self.store.valueset(b["valueSet"])
            if vs is None:
                self.notes.append(f"{eid}: required ValueSet {b['valueSet']} cannot be expanded; binding not checked")
            elif not (el is not None and el.binding is not None and el.binding.url == vs.url):
                node.binding = vs
        # invariants the base already evaluates are not repeated (snapshots restate them)
        base_keys: set[str] = set()
        if node is self.root:
            base_keys = {i.key for i in self.model.types[self.rtype].invariants}
        elif el is not None:
            if el.code in self.model.types:
                base_keys = {i.key for i in self.model.types[el.code].invariants}
            base_keys |= {i.key for i in el.inv or []}
        for c in e.get("constraint", []):
            if c.get("expression") and c["key"] not in base_keys and c["key"] not in ("ele-1", "ext-1") \
                    and not str(c["key"]).startswith("dom-"):
                inv = self.model.invariants.get([c["key"], c.get("severity", "error"), c["expression"],
                                                 c.get("human", "")], node.fp_type)
                if inv.fn is None:
                    self.notes.append(f"{eid}: invariant {c['key']} not evaluated ({inv.skip})")
                node.invariants.append(inv)
        if "slicing" in e:
            disc = []
            for d in e["slicing"].get("discriminator", []):
                if d.get("type") not in SUPPORTED_DISCRIMINATORS:
                    raise ValueError(f"element {eid}: discriminator type {d.get('type')!r} is not supported "
                                     f"(supported: {', '.join(SUPPORTED_DISCRIMINATORS)})")
                path = d.get("path", "$this")
                if path == RESOLVE and d.get("type") in ("type", "profile"):
                    disc.append((d["type"], [RESOLVE]))
                    continue
                if "(" in path or path.startswith("$this."):
                    raise ValueError(f"element {eid}: discriminator path {path!r} is not supported (plain element "
                                     "paths and $this only)")
                disc.append((d["type"], [] if path == "$this" else path.split(".")))
            node.slicing = disc
            node.rules = e["slicing"].get("rules", "open")

    def _targets(self, node: Node, profiles: list[str], el: Elem | None) -> None:
        names = set()
        for url in profiles:
            url = url.split("|")[0]
            if url.startswith(BASE) and url[len(BASE):] in self.model.resource_types:
                names.add(url[len(BASE):])
            elif url == BASE + "Resource":
                return
            elif (p := self.store.get(url)) is not None:
                names.add(p.type)
            else:
                return  # a target profile we do not know: its type cannot be checked
        if el is not None and el.targets is not None and not names <= el.targets:
            raise ValueError(f"target types {', '.join(sorted(names - el.targets))} are not allowed by the base")
        if el is None or el.targets is None or names != el.targets:
            node.targets = frozenset(names)

    def finish(self, node: Node) -> None:
        if node.slices and node.slicing is None:
            if node.name in ("extension", "modifierExtension"):
                node.slicing = [("value", ["url"])]  # the implicit slicing of extensions
            else:
                raise ValueError(f"{node.name} has slices ({', '.join(node.slices)}) but no slicing discriminator")
        if not node.slices:
            node.slicing = None
        for name, s in node.slices.items():
            node.expect[name] = [self._expected(node, name, s, kind, segs) for kind, segs in node.slicing or []]
        for child in list(node.children.values()) + list(node.slices.values()):
            self.finish(child)

    def _expected(self, sliced: Node, name: str, s: Node, kind: str, segs: list[str]) -> tuple[str, Any]:
        where = f"slice {sliced.name}:{name}"
        if kind in ("type", "profile") and segs:
            target = s if segs == [RESOLVE] else _find(s, segs)
            if target is None:
                raise ValueError(f"{where}: nothing at discriminator path {'.'.join(segs)}")
            types = target.targets if segs == [RESOLVE] else target.types
            if kind == "type":
                if types is not None and len(types) == 1:
                    return kind, next(iter(types))
                raise ValueError(f"{where}: a type discriminator needs exactly one type at {'.'.join(segs)}")
            urls = target.target_profiles if segs == [RESOLVE] else target.profiles
            if not urls and not types:
                raise ValueError(f"{where}: a profile discriminator needs a profile or a type at {'.'.join(segs)}")
            return kind, (frozenset(types or ()), urls)
        if kind == "profile":
            if not s.profiles and not s.types:
                raise ValueError(f"{where}: a profile discriminator needs a profile on the slice")
            return kind, (frozenset(s.types or ()), s.profiles)
        if kind == "type":
            if s.types is not None and len(s.types) == 1:
                return kind, next(iter(s.types))
            raise ValueError(f"{where}: a type discriminator needs exactly one type on the slice")
        target = _find(s, segs)
        if kind == "exists":
            if target is not None and target.min:
                return kind, True
            if target is not None and target.max == 0:
                return kind, False
            raise ValueError(f"{where}: an exists discriminator needs min >= 1 or max = 0 at {'.'.join(segs)}")
        if target is not None and target.fixed is not _NONE:
            return kind, target.fixed
        if target is not None and target.pattern is not _NONE:
            return kind, target.pattern
        if segs == ["url"] and s.ext_url:
            return kind, s.ext_url
        raise ValueError(f"{where}: no fixed or pattern value at discriminator path {'.'.join(segs) or '$this'}")


def _find(node: Node, segs: list[str]) -> Node | None:
    """The node at a discriminator path below a slice, looking inside nested slices (bp: component:SystolicBP
    .code.coding:SBPCode.code carries the fixed code that discriminates the component)."""
    if not segs:
        return node
    child = node.children.get(segs[0])
    if child is not None:
        found = _find(child, segs[1:])
        if found is not None and (found.fixed is not _NONE or found.pattern is not _NONE or found.min or
                                  found.max == 0 or found is child and not segs[1:]):
            return found
    for sub in node.slices.values():
        found = _find(sub, segs)
        if found is not None:
            return found
    if child is not None:
        for sub in child.slices.values():
            found = _find(sub, segs[1:])
            if found is not None:
                return found
    return None


def build_tree(rtype: str, elements: list[dict], snapshot: bool, model: Model, store: ProfileStore,
               notes: list[str]) -> Node:
    builder = _Builder(rtype, model, store, snapshot, notes)
    for eid, e in zip(_element_ids(elements), elements):
        path = e.get("path", "")
        if path != rtype and not path.startswith(rtype + "."):
            raise ValueError(f"element {path!r} is not on {rtype}")
        if path == rtype:
            builder.apply(builder.root, e, None, [], False)
            continue
        node, el, choice = builder.resolve(eid, [t.get("code", "") for t in e.get("type", [])])
        last = eid.rsplit(".", 1)[-1]
        builder.apply(node, e, el, choice, is_slice=":" in last and "[x]:" not in last)
    builder.finish(builder.root)
    builder.root.prune()
    return builder.root
