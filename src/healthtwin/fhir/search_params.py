"""The search parameter registry: R4 definitions (generated json) plus SearchParameters added at run time.

The registry owns the compiled extractors (one function per resource type, see extract.py), built lazily on
first use and invalidated when parameters are added or removed.
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from healthtwin.fhir import fhirpath_compile as fc

log = logging.getLogger(__name__)

TYPES = ("string", "token", "reference", "date", "number", "quantity", "uri", "composite", "special")

# Resources that are not DomainResources: they have no narrative, so no `_text`.
_NOT_DOMAIN = {"Bundle", "Binary", "Parameters", "Resource"}


@dataclass(frozen=True)
class SearchParam:
    url: str
    code: str
    base: tuple[str, ...]
    type: str  # string|token|reference|date|number|quantity|uri|composite|special
    expression: str | None
    targets: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()  # (definition url, expression relative to the focus)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SearchParam":
        return cls(url=d["url"], code=d["code"], base=tuple(d["base"]), type=d["type"],
                   expression=d.get("expression") or None, targets=tuple(d.get("target") or ()),
                   components=tuple((c["definition"], c["expression"]) for c in d.get("component") or ()))


# `_text` and `_content` have no SearchParameter in the R4 package; they are declared so the search side can
# recognise them. No expression: they are not extracted here (full-text search is the store's business).
_SYNTHETIC = (
    SearchParam("http://hl7.org/fhir/SearchParameter/DomainResource-text", "_text", ("DomainResource",), "special",
                None),
    SearchParam("http://hl7.org/fhir/SearchParameter/Resource-content", "_content", ("Resource",), "special", None),
)


_WHERE_RESOLVE = re.compile(r"(.+)\.where\(resolve\(\) is ([A-Z][A-Za-z]+)\)")


def _own_parts(expression: str, resource_type: str) -> frozenset[str]:
    """The `|`-separated parts of an expression that apply to `resource_type` (multi-base parameters list
    one part per base), with whitespace normalised."""
    parts = [" ".join(x.split()) for x in expression.split("|")]
    own = [x for x in parts if x.startswith((resource_type + ".", "(" + resource_type + ".")) or x == resource_type]
    return frozenset(own or parts)


class SearchRegistry:
    _default: "SearchRegistry | None" = None
    _default_lock = threading.Lock()

    def __init__(self, params: list[SearchParam], compartments: dict[str, dict[str, list[str]]]) -> None:
        self._lock = threading.RLock()
        self._by_url: dict[str, SearchParam] = {}
        self._by_base: dict[str, dict[str, SearchParam]] = {}
        self._compartments = compartments
        self._types = fc.ElementTypes.default()
        self._for_type: dict[str, dict[str, SearchParam]] = {}
        self._extractors: dict[str, Callable[[dict], list[tuple]]] = {}
        self._fallbacks: dict[str, list[str]] = {}
        self._aliases: dict[str, dict[str, tuple[tuple[str, ...], str | None]]] = {}
        # Hand-written extractions of a type (see specialise), each with the parameters it was written for.
        self._special: dict[str, tuple[frozenset, Callable[[Callable], Callable[[dict], list[tuple]]]]] = {}
        for p in params:
            self._register(p)

    @classmethod
    def default(cls) -> "SearchRegistry":
        """The R4 registry, loaded once per process. Mutations (add/remove) are visible to all its users."""
        if cls._default is None:
            with cls._default_lock:
                if cls._default is None:
                    cls._default = cls.load()
        return cls._default

    @classmethod
    def load(cls) -> "SearchRegistry":
        """A fresh registry from the generated definitions (tests use this to get one they may mutate)."""
        folder = resources.files("healthtwin.fhir").joinpath("definitions")
        params = [SearchParam.from_json(d) for d in orjson.loads(folder.joinpath("search_parameters.json").read_bytes())]
        compartments = orjson.loads(folder.joinpath("compartments.json").read_bytes())
        return cls(params + list(_SYNTHETIC), compartments)

    # ------------------------------------------------------------------------------------------ lookup

    def _register(self, p: SearchParam) -> None:
        if p.url in self._by_url:
            if self._by_url[p.url] == p:
                return
            log.debug("duplicate search parameter url %s (%s): first definition kept", p.url, p.code)
            return
        self._by_url[p.url] = p
        for base in p.base:
            # The R4 json has two `_id` definitions (expressions `Resource.id` and `id`); keep the first.
            self._by_base.setdefault(base, {}).setdefault(p.code, p)

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        """code → parameter for `resource_type`, including the common Resource/DomainResource parameters."""
        cached = self._for_type.get(resource_type)
        if cached is None:
            with self._lock:
                cached = dict(self._by_base.get("Resource", {}))
                if resource_type not in _NOT_DOMAIN:
                    cached.update(self._by_base.get("DomainResource", {}))
                cached.update(self._by_base.get(resource_type, {}))
                self._for_type[resource_type] = cached
        return cached

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.for_type(resource_type).get(code)

    def aliases(self, resource_type: str) -> dict[str, tuple[tuple[str, ...], str | None]]:
        """Parameters of a type whose index rows would repeat other parameters' rows, so they are not indexed
        but searched through those: code → (codes searched instead, required reference target type or None).

        Two shapes occur in R4: unions (`combo-code` = `code | component-code`) and typed views of a
        reference (`patient` = `subject.where(resolve() is Patient)`). Skipping them stores about a third
        fewer index rows for Observations, with identical search results.
        """
        cached = self._aliases.get(resource_type)
        if cached is not None:
            return cached
        params = {c: p for c, p in self.for_type(resource_type).items()
                  if p.expression and p.type != "special" and not c.startswith("_")}
        own = {c: _own_parts(p.expression or "", resource_type) for c, p in params.items()}
        out: dict[str, tuple[tuple[str, ...], str | None]] = {}
        for code, p in params.items():
            parts = own[code]
            if len(parts) == 1:
                m = _WHERE_RESOLVE.fullmatch(next(iter(parts)))
                if m and p.type == "reference":
                    base = [c for c, q in params.items() if c != code and q.type == "reference"
                            and own[c] == frozenset({m.group(1)}) and c not in out]
                    if base:
                        out[code] = ((base[0],), m.group(2))
                continue
            if len(parts) < 2:
                continue
            # Composite components name different definitions but must extract the same expressions.
            comps = tuple(e for _, e in p.components)
            cover = [c for c, q in params.items() if c != code and q.type == p.type and own[c] < parts
                     and tuple(e for _, e in q.components) == comps and c not in out]
            if cover and frozenset().union(*(own[c] for c in cover)) == parts:
                out[code] = (tuple(sorted(cover)), None)
        self._aliases[resource_type] = out
        return out

    def by_url(self, url: str) -> SearchParam | None:
        return self._by_url.get(url)

    def compartment_params(self, compartment: str, resource_type: str) -> tuple[str, ...]:
        """Parameters linking `resource_type` to a compartment: ("Patient", "Observation") → ("subject", "performer")."""
        return tuple(self._compartments.get(compartment, {}).get(resource_type, ()))

    # ---------------------------------------------------------------------------------------- mutation

    def add(self, search_parameter_resource: dict) -> SearchParam:
        """Register a SearchParameter resource created at run time (replacing one with the same url).

        Raises ValueError with the reason when it is incomplete, or when its expression cannot be compiled for
        one of its base types (syntax error, unknown element, unsupported FHIRPath).
        """
        p = self.check(search_parameter_resource)
        bases = p.base
        with self._lock:
            if p.url in self._by_url:
                self._remove(p.url)
            self._register(p)
            for base in bases:  # a run-time parameter overrides a built-in one with the same code
                self._by_base[base][p.code] = p
            self._invalidate(bases)
        return p

    def check(self, search_parameter_resource: dict) -> SearchParam:
        """The SearchParameter a resource defines, compiled for each base but not registered (ValueError if not)."""
        from healthtwin.fhir.extract import compile_param

        r = search_parameter_resource
        missing = [k for k in ("url", "code", "base", "type") if not r.get(k)]
        if missing:
            raise ValueError(f"SearchParameter lacks {', '.join(missing)}")
        if r["type"] not in TYPES:
            raise ValueError(f"SearchParameter {r['url']}: unknown type {r['type']!r}")
        if r["type"] == "composite" and not r.get("component"):
            raise ValueError(f"composite SearchParameter {r['url']} has no component")
        if r["type"] != "special" and not r.get("expression"):
            raise ValueError(f"SearchParameter {r['url']} has no expression")
        bases = tuple(r["base"]) if isinstance(r["base"], list) else (r["base"],)
        for base in bases:
            if self._types.kinds.get(base) != "resource":
                raise ValueError(f"SearchParameter {r['url']}: {base!r} is not a resource type")
        try:
            p = SearchParam(url=r["url"], code=r["code"], base=bases, type=r["type"], expression=r.get("expression"),
                            targets=tuple(r.get("target") or ()),
                            components=tuple((c["definition"], c["expression"]) for c in r.get("component") or ()))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"SearchParameter {r.get('url')}: malformed component ({exc})") from None
        for base in bases if bases not in (("Resource",), ("DomainResource",)) else ("Patient",):
            try:
                compile_param(p, base, self)
            except fc.CompileError as exc:
                raise ValueError(f"SearchParameter {p.url}: cannot compile {p.expression!r} for {base}: {exc}") \
                    from None
        return p

    def remove(self, url: str) -> None:
        with self._lock:
            p = self._by_url.get(url)
            if p is not None:
                self._remove(url)
                self._invalidate(p.base)

    def _remove(self, url: str) -> None:
        p = self._by_url.pop(url)
        for base in p.base:
            if self._by_base.get(base, {}).get(p.code) is p:
                del self._by_base[base][p.code]
                # a built-in definition shadowed by the removed one comes back
                for other in self._by_url.values():
                    if other.code == p.code and base in other.base:
                        self._by_base[base][p.code] = other
                        break

    def _invalidate(self, bases: tuple[str, ...]) -> None:
        self._aliases.clear()
        if set(bases) & {"Resource", "DomainResource"}:
            self._for_type.clear()
            self._extractors.clear()
            return
        for base in bases:
            self._for_type.pop(base, None)
            self._extractors.pop(base, None)
            self._extractors.pop("index:" + base, None)

    # ------------------------------------------------------------------------------------- extraction

    def extractor(self, resource_type: str) -> Callable[[dict], list[tuple]]:
        """The compiled extraction function for a type (built on first use, cached until add/remove)."""
        fn = self._extractors.get(resource_type)
        if fn is None:
            from healthtwin.fhir.extract import build_extractor

            if self._types.kinds.get(resource_type) != "resource":
                raise ValueError(f"unknown resource type {resource_type!r}")
            with self._lock:
                fn, fallbacks = build_extractor(self, resource_type)
                if fallbacks:
                    log.warning("%s: search parameters evaluated by fhirpathpy (not compiled): %s",
                                resource_type, ", ".join(fallbacks))
                self._fallbacks[resource_type] = fallbacks
                self._extractors[resource_type] = fn
        return fn

    def index_extractor(self, resource_type: str) -> Callable[[dict], list[tuple]]:
        """The rows the store indexes: every extracted row except those of alias parameters (see aliases()),
        which searches answer from the rows of the parameters they repeat."""
        key = "index:" + resource_type
        fn = self._extractors.get(key)
        if fn is None:
            extract = self.extractor(resource_type)
            skip = frozenset(self.aliases(resource_type))
            if skip:
                def fn(res: dict, _extract=extract, _skip=skip) -> list[tuple]:
                    return [r for r in _extract(res) if r[0].partition(":")[0] not in _skip]
            else:
                fn = extract
            special = self._special.get(resource_type)
            if special is not None and special[0] == self.signature(resource_type):
                fn = special[1](fn)
            self._extractors[key] = fn
        return fn

    def signature(self, resource_type: str) -> frozenset:
        """The type's parameters as (code, type, expression, components): what its index rows depend on."""
        return frozenset((code, p.type, p.expression, p.components) for code, p in self.for_type(resource_type).items())

    def specialise(self, resource_type: str, signature: frozenset,
                   make: Callable[[Callable[[dict], list[tuple]]], Callable[[dict], list[tuple]]]) -> None:
        """Registers a hand-written index extraction for a type whose resources are written in bulk: `make(generic)`
        returns a function giving exactly the rows `generic` (the compiled extractor) gives, falling back to it for
        any shape it was not written for. It is used only while the type's parameters equal `signature` (the set
        it was written for): a SearchParameter added or removed for the type brings the compiled one back."""
        with self._lock:
            self._special[resource_type] = (signature, make)
            self._extractors.pop("index:" + resource_type, None)

    def fallbacks(self, resource_type: str) -> list[str]:
        """Codes of the parameters of a type that are interpreted rather than compiled."""
        self.extractor(resource_type)
        return list(self._fallbacks.get(resource_type, ()))

    def resource_types(self) -> list[str]:
        return sorted(t for t, kind in self._types.kinds.items() if kind == "resource" and t not in
                      ("Resource", "DomainResource"))
