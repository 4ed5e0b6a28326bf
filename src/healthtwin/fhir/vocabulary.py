"""The code systems, value sets and concept maps this server knows, and what the terminology operations do
with them: look a code up, expand a value set, decide membership and subsumption, translate.

Two sources, in this order:

* the R4 package's own (definitions/terminology.json.gz: 1,054 complete CodeSystems with 20,007 concepts; 1,316
  ValueSets, expanded at generation time into valuesets.json.gz and required_valuesets.json or else kept as
  their compose; 80 ConceptMaps);
* CodeSystem, ValueSet and ConceptMap resources stored on the server, found by their canonical URL (and
  version when one is asked for). This is how a ministry adds its national code systems (ICD-10, ATC, its
  LOINC subset, local service codes): by loading them as resources.

Expansion follows ValueSet.compose: included concepts, whole code systems, filters (is-a, descendent-of,
is-not-a, generalizes, =, in, not-in, regex, exists) and imported value sets, minus the excludes. What
cannot be expanded from these sources (a system the server does not hold, a filter it does not know) is an
error the caller sees (422), never a silently short answer.
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources as pkg_resources
from typing import Any, Iterable

import orjson

from .outcome import FHIRError
from .regex import RegexError, compile_pattern
from .terminology import _children_of, _packaged, _packaged_hierarchies, memo, stored_canonical

MAX_EXPANSION = 100_000  # codes one expansion may hold, before paging: a guard for memory, not a page size
INACTIVE_STATUS = frozenset({"retired", "inactive", "deprecated"})


@dataclass(frozen=True)
class Concept:
    code: str
    display: str | None = None
    properties: tuple = ()  # (code, value type, value)
    designations: tuple = ()  # (language, use code, value)

    @property
    def inactive(self) -> bool:
        for code, _, value in self.properties:
            if (code == "inactive" and value is True) or (code == "status" and value in INACTIVE_STATUS):
                return True
        return False

    def property(self, code: str) -> list[Any]:
        return [value for c, _, value in self.properties if c == code]


@dataclass
class CodeSystemInfo:
    url: str
    version: str | None
    name: str | None
    title: str | None
    case_sensitive: bool
    content: str  # complete, fragment, example, not-present, supplement
    concepts: dict[str, Concept]
    children: dict[str, list[str]] = field(default_factory=dict)
    _folded: dict[str, str] | None = None
    _parents: dict[str, list[str]] | None = None

    def find(self, code: str) -> Concept | None:
        found = self.concepts.get(code)
        if found is None and not self.case_sensitive:
            if self._folded is None:
                self._folded = {c.lower(): c for c in self.concepts}
            real = self._folded.get(code.lower())
            found = self.concepts.get(real) if real else None
        return found

    def parents(self) -> dict[str, list[str]]:
        if self._parents is None:
            self._parents = {}
            for parent, kids in self.children.items():
                for kid in kids:
                    self._parents.setdefault(kid, []).append(parent)
        return self._parents

    def concept(self, code: str) -> Concept:
        found = self.find(code)
        if found is None:
            raise FHIRError(404, f"'{code}' is not a code of {self.url}", "not-found")
        return found

    def subsumes(self, code_a: str, code_b: str) -> str:
        """$subsumes' outcome for two codes of this system, by its is-a hierarchy."""
        a, b = self.concept(code_a).code, self.concept(code_b).code
        if a == b:
            return "equivalent"
        if b in self.descendants(a):
            return "subsumes"
        return "subsumed-by" if a in self.descendants(b) else "not-subsumed"

    def descendants(self, code: str) -> set[str]:
        return _closure(code, self.children)

    def ancestors(self, code: str) -> set[str]:
        return _closure(code, self.parents())


def _closure(code: str, edges: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    stack = [code]
    while stack:  # the set makes a cycle in a stored CodeSystem harmless
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in found:
                found.add(nxt)
                stack.append(nxt)
    return found


@dataclass(frozen=True)
class Code:
    """One entry of an expansion."""
    system: str
    code: str
    display: str | None = None
    version: str | None = None
    inactive: bool = False


@lru_cache(maxsize=1)
def _package() -> dict[str, Any]:
    folder = pkg_resources.files("healthtwin.fhir").joinpath("definitions")
    return orjson.loads(gzip.decompress(folder.joinpath("terminology.json.gz").read_bytes()))


def _packaged_version(url: str, version: str | None) -> CodeSystemInfo | None:
    """The package's code system; a few (HL7 v2 tables) come in several versions, keyed `url|version`: the
    one asked for, or the latest."""
    held = _package()["codesystems"]
    if version is not None and f"{url}|{version}" in held:
        return _packaged_codesystem(f"{url}|{version}")
    cs = _packaged_codesystem(url)
    if cs is not None:
        return cs if version in (None, cs.version) else None
    versions = sorted(k for k in held if k.startswith(url + "|")) if version is None else []
    return _packaged_codesystem(versions[-1]) if versions else None


@lru_cache(maxsize=256)
def _packaged_codesystem(key: str) -> CodeSystemInfo | None:
    raw = _package()["codesystems"].get(key)
    if raw is None:
        return None
    url, _, pinned = key.partition("|")
    concepts = {}
    for code, entry in raw["concepts"].items():
        props = tuple(tuple(p) for p in entry[1]) if len(entry) > 1 else ()
        designations = tuple(tuple(d) for d in entry[2]) if len(entry) > 2 else ()
        concepts[code] = Concept(code, entry[0], props, designations)
    return CodeSystemInfo(url, pinned or raw.get("version"), raw.get("name"), raw.get("title"),
                          raw.get("caseSensitive", True), "complete", concepts, _packaged_hierarchies().get(key, {}))


def codesystem_from_resource(resource: dict[str, Any]) -> CodeSystemInfo:
    concepts: dict[str, Concept] = {}
    stack = list(reversed(resource.get("concept") or []))  # depth first, in the document's order
    while stack:
        c = stack.pop()
        if not isinstance(c, dict) or not isinstance(c.get("code"), str):
            continue
        props = tuple((p.get("code"), *_typed_value(p)) for p in c.get("property") or []
                      if isinstance(p, dict) and p.get("code") not in ("parent", "child", "subsumedBy"))
        designations = tuple((d.get("language"), (d.get("use") or {}).get("code"), d.get("value"))
                             for d in c.get("designation") or [] if isinstance(d, dict) and d.get("value"))
        concepts[c["code"]] = Concept(c["code"], c.get("display"), props, designations)
        stack.extend(reversed(c.get("concept") or []))
    children = _children_of(resource) if resource.get("hierarchyMeaning") in (None, "is-a") else {}
    return CodeSystemInfo(resource.get("url", ""), resource.get("version"), resource.get("name"),
                          resource.get("title"), bool(resource.get("caseSensitive", True)),
                          resource.get("content", "complete"), concepts, children)


def _typed_value(part: dict[str, Any]) -> tuple[str, Any]:
    for key, value in part.items():
        if key.startswith("value"):
            return key[5:], value
    return "", None


def split_canonical(url: str, version: str | None = None) -> tuple[str, str | None]:
    if "|" in url:
        url, _, pinned = url.partition("|")
        version = version or pinned or None
    return url, version


class Vocabulary:
    """Terminology lookups for one request, over the package and the store (`store` may be None)."""

    def __init__(self, store: Any = None) -> None:
        self.store = store
        self._stored: dict[tuple[str, str, str | None], dict[str, Any] | None] = {}

    # -- finding the definitions ---------------------------------------------------------------------------
    def stored(self, rtype: str, url: str, version: str | None = None) -> dict[str, Any] | None:
        key = (rtype, url, version)
        if key not in self._stored:
            found = None
            if self.store is not None:
                candidates = [r for r in stored_canonical(self.store, rtype, url)
                              if version is None or r.get("version") == version]
                # the newest version when none is named (string order is the best a server can do unaided)
                found = max(candidates, key=lambda r: str(r.get("version") or ""), default=None)
            self._stored[key] = found
        return self._stored[key]

    def codesystem(self, url: str, version: str | None = None) -> CodeSystemInfo | None:
        url, version = split_canonical(url, version)
        packaged = _packaged_version(url, version)
        if packaged is not None:
            return packaged
        resource = self.stored("CodeSystem", url, version)
        if resource is None:
            return None
        # Its concepts walked once per stored version (memo), not on every lookup.
        key = ("codesystem", resource.get("id"), (resource.get("meta") or {}).get("versionId"))
        return memo(self.store, key, lambda: codesystem_from_resource(resource))

    def valueset(self, url: str, version: str | None = None) -> dict[str, Any] | None:
        """A ValueSet resource by canonical URL: a stored one, or the package's (its expansion precomputed)."""
        url, version = split_canonical(url, version)
        meta = _package()["valuesets"].get(url)
        if meta is not None and version in (None, meta.get("version")):
            return {"resourceType": "ValueSet", "url": url, "status": "active",
                    **{k: v for k, v in meta.items() if v is not None}}
        return self.stored("ValueSet", url, version)

    def codesystems(self) -> list[tuple[str, str | None]]:
        """(url, version) of every code system held: the package's, then the stored ones."""
        held = [(url, cs.get("version")) for url, cs in sorted(_package()["codesystems"].items())]
        if self.store is not None:
            held += sorted({(r.get("url"), r.get("version")) for r in self.store_all("CodeSystem") if r.get("url")},
                           key=lambda pair: (pair[0], str(pair[1] or "")))
        return held

    def conceptmaps(self, url: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
        """The ConceptMap with this URL, or every one this server holds when none is named."""
        if url is not None:
            url, version = split_canonical(url, version)
            packaged = _package()["conceptmaps"].get(url)
            if packaged is not None and version in (None, packaged.get("version")):
                return [packaged]
            found = self.stored("ConceptMap", url, version)
            return [found] if found is not None else []
        maps = list(_package()["conceptmaps"].values())
        if self.store is not None:
            maps += self.store_all("ConceptMap")
        return maps

    def store_all(self, rtype: str) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT id, content FROM resources WHERE type = ? AND deleted = 0", [rtype])
        return [orjson.loads(self.store.open_content(rtype, rid, content)) for rid, content in rows]

    # -- the operations' logic -----------------------------------------------------------------------------
    def known_codesystem(self, system: str, version: str | None = None) -> CodeSystemInfo:
        cs = self.codesystem(system, version)
        if cs is None:
            raise FHIRError(404, f"The code system '{system}' is not known to this server", "not-found")
        return cs

    def lookup(self, system: str, code: str, version: str | None = None) -> tuple[CodeSystemInfo, Concept]:
        cs = self.known_codesystem(system, version)
        return cs, cs.concept(code)

    def expand(self, valueset: dict[str, Any], active_only: bool = False) -> list[Code]:
        codes = Expansion(self).of(valueset)
        return [c for c in codes if not c.inactive] if active_only else codes

    def translate(self, maps: Iterable[dict[str, Any]], system: str | None, code: str,
                  target_system: str | None = None, reverse: bool = False) -> list[dict[str, Any]]:
        """Matches: {equivalence, system, code, display, source (the map's URL)}."""
        out = []
        for cm in maps:
            for group in cm.get("group") or []:
                src, dst = (group.get("target"), group.get("source")) if reverse else (group.get("source"),
                                                                                       group.get("target"))
                if (system and src != system) or (target_system and dst != target_system):
                    continue
                for element in group.get("element") or []:
                    for target in element.get("target") or []:
                        here, there = ((target.get("code"), element.get("code")) if reverse
                                       else (element.get("code"), target.get("code")))
                        if here != code:
                            continue
                        out.append({"equivalence": target.get("equivalence", "equivalent"), "system": dst,
                                    "code": there, "display": element.get("display") if reverse
                                    else target.get("display"), "source": cm.get("url")})
        return out


class Expansion:
    """One expansion: ValueSet.compose evaluated against the vocabulary, imports followed to a fixed depth."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.seen: list[str] = []

    def of(self, valueset: dict[str, Any]) -> list[Code]:
        url = valueset.get("url")
        packaged = _packaged().get(url) if url and "compose" not in valueset else None
        if packaged is not None:
            return self._packaged(packaged)
        compose = valueset.get("compose")
        if not isinstance(compose, dict):
            contains = (valueset.get("expansion") or {}).get("contains")
            if contains:
                return list(_flatten(contains))
            raise FHIRError(422, f"The ValueSet {url or ''} has neither a compose nor an expansion", "not-supported")
        if url in self.seen or len(self.seen) > 10:
            raise FHIRError(422, f"The ValueSet {url} imports itself, or imports nest too deep", "processing")
        self.seen.append(url)
        try:
            included: dict[tuple[str, str], Code] = {}
            for inc in compose.get("include") or []:
                for c in self._part(inc):
                    included.setdefault((c.system, c.code), c)
                    if len(included) > MAX_EXPANSION:
                        raise FHIRError(422, f"The expansion holds more than {MAX_EXPANSION:,} codes", "too-costly")
            for exc in compose.get("exclude") or []:
                for c in self._part(exc):
                    included.pop((c.system, c.code), None)
            return list(included.values())
        finally:
            self.seen.pop()

    def _packaged(self, expansion: dict[str, list[str]]) -> list[Code]:
        out = []
        for system, codes in expansion.items():
            cs = _packaged_version(system, None)
            for code in codes:
                concept = cs.find(code) if cs else None
                out.append(Code(system, code, concept.display if concept else None, cs.version if cs else None,
                                concept.inactive if concept else False))
        return out

    def _part(self, part: dict[str, Any]) -> list[Code]:
        """One include or exclude: its system's concepts (listed, filtered or all), within its imports."""
        if not isinstance(part, dict):
            raise FHIRError(422, "A compose include or exclude must be an object", "invalid")
        imported: set[tuple[str, str]] | None = None  # in every imported value set (their intersection)
        first: list[Code] = []  # the first one's codes, in order, which the intersection is taken from
        for url in part.get("valueSet") or []:
            vs = self.vocabulary.valueset(url)
            if vs is None:
                raise FHIRError(422, f"The imported ValueSet '{url}' is not known to this server", "not-found")
            codes = self.of(vs)
            keys = {(c.system, c.code) for c in codes}
            if imported is None:
                imported, first = keys, codes
            else:
                imported &= keys
        system = part.get("system")
        if not system:
            if imported is None:
                raise FHIRError(422, "A compose include needs a system or a valueSet", "invalid")
            return [c for c in first if (c.system, c.code) in imported]
        codes = self._system_part(system, part)
        return codes if imported is None else [c for c in codes if (c.system, c.code) in imported]

    def _system_part(self, system: str, part: dict[str, Any]) -> list[Code]:
        version = part.get("version")
        cs = self.vocabulary.codesystem(system, version)
        concepts = part.get("concept")
        if concepts:
            out = []
            for c in concepts:
                known = cs.find(c.get("code", "")) if cs else None
                out.append(Code(system, c.get("code", ""), c.get("display") or (known.display if known else None),
                                version or (cs.version if cs else None), known.inactive if known else False))
            return out
        if cs is None:
            raise FHIRError(422, f"The code system '{system}' is not known to this server, so a value set that "
                                 f"includes all or part of it cannot be expanded", "not-supported")
        if cs.content not in ("complete", "fragment"):
            raise FHIRError(422, f"The code system '{system}' is held here without its concepts "
                                 f"(content '{cs.content}')", "not-supported")
        selected: set[str] | None = None
        for f in part.get("filter") or []:
            codes = self._filter(cs, f)
            selected = codes if selected is None else selected & codes
        chosen = cs.concepts if selected is None else [c for c in cs.concepts if c in selected]
        return [Code(system, code, cs.concepts[code].display, cs.version, cs.concepts[code].inactive)
                for code in chosen]

    def _filter(self, cs: CodeSystemInfo, f: dict[str, Any]) -> set[str]:
        prop, op, value = f.get("property"), f.get("op"), f.get("value")
        if not isinstance(prop, str) or not isinstance(op, str) or not isinstance(value, str):
            raise FHIRError(422, "A compose filter needs property, op and value", "invalid")
        if prop in ("concept", "code"):
            if op in ("is-a", "descendent-of", "is-not-a", "generalizes"):
                found = cs.find(value)
                root = found.code if found else value
                if op == "is-a":
                    return {root} | cs.descendants(root) if found else set()
                if op == "descendent-of":
                    return cs.descendants(root) if found else set()
                if op == "generalizes":
                    return {root} | cs.ancestors(root) if found else set()
                return set(cs.concepts) - ({root} | cs.descendants(root))
            if op == "=":
                return {value} & set(cs.concepts)
            if op in ("in", "not-in"):
                listed = {v.strip() for v in value.split(",")}
                return (listed & set(cs.concepts)) if op == "in" else (set(cs.concepts) - listed)
            if op == "regex":
                pattern = safe_regex(value)
                return {c for c in cs.concepts if pattern.fullmatch(c)}
        elif prop == "display" and op in ("=", "regex"):
            pattern = safe_regex(value) if op == "regex" else None
            return {c.code for c in cs.concepts.values() if c.display is not None
                    and (pattern.fullmatch(c.display) if pattern else c.display == value)}
        elif prop in ("parent", "child") and op == "=":
            edges = cs.children if prop == "parent" else cs.parents()
            return set(edges.get(value, ()))
        elif op in ("=", "in", "not-in", "regex", "exists"):
            pattern = safe_regex(value) if op == "regex" else None
            listed = {v.strip() for v in value.split(",")}
            out = set()
            for c in cs.concepts.values():
                values = [str(v).lower() if isinstance(v, bool) else str(v) for v in c.property(prop)]
                hit = {"=": value in values, "in": bool(listed & set(values)), "not-in": not listed & set(values),
                       "exists": bool(values) == (value == "true"),
                       "regex": any(pattern.fullmatch(v) for v in values) if pattern else False}[op]
                if hit:
                    out.add(c.code)
            return out
        raise FHIRError(422, f"The filter '{prop} {op} {value}' is not supported by this server", "not-supported")


def _flatten(contains: list[dict[str, Any]]) -> Iterable[Code]:
    stack = list(reversed(contains))
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        if item.get("system") and item.get("code"):
            yield Code(item["system"], item["code"], item.get("display"), item.get("version"),
                       bool(item.get("inactive")))
        stack.extend(reversed(item.get("contains") or []))


def safe_regex(pattern: str) -> Any:
    """A filter's regular expression, compiled by RE2 (linear-time matching, fhir/regex.py): a ValueSet posted
    to $expand is caller input, and Python's `re` could backtrack for hours on it."""
    try:
        return compile_pattern(pattern)
    except RegexError as exc:
        raise FHIRError(422, f"The filter's {exc}", "invalid") from None


def text_matches(text: str, code: Code) -> bool:
    """$expand's `filter`: each word of it starts a word of the display, or starts the code."""
    words = re.split(r"[\W_]+", (code.display or "").lower())
    return all(any(w.startswith(term) for w in words) or code.code.lower().startswith(term)
               for term in text.lower().split())
