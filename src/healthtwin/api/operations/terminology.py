"""The terminology service: CodeSystem $lookup, $validate-code and $subsumes; ValueSet $expand and
$validate-code; ConceptMap $translate (FHIR R4 terminology-service.html), at type level and on a stored
instance, by GET with query parameters or POST with a Parameters body.

What each knows comes from fhir/vocabulary.py: the R4 package's code systems, value sets and concept maps, and
the ones stored on this server. A lab's or a pharmacy's system checks its codes against the national value
sets here before it sends them, and a form fills its pick-lists from `$expand?filter=`."""
from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from ...fhir.outcome import FHIRError
from ...fhir.vocabulary import Code, Concept, CodeSystemInfo, Vocabulary, codesystem_from_resource, text_matches
from ...store.records import instant
from .. import guard
from ..responses import fhir
from .parameters import inputs
from .registry import operation

_OD = "http://hl7.org/fhir/OperationDefinition/"
EXPANSION_PARAMETERS = ("url", "valueSet", "valueSetVersion", "filter", "offset", "count", "activeOnly")
MAX_UNPAGED = 1000  # codes an $expand returns without `count`; larger expansions are paged
_IGNORED = {"_format", "_pretty", "date", "displayLanguage", "includeDesignations", "designation",
            "includeDefinition", "excludeNested", "excludeNotForUI", "excludePostCoordinated", "context",
            "contextDirection", "abstract", "system-version", "check-system-version", "force-system-version",
            "exclude-system", "dependency", "profile"}


class Inputs:
    """An operation's inputs by name, checked against the names it defines."""

    def __init__(self, params: list[tuple[str, str]], body: Any, op: str, names: set[str]) -> None:
        self.op = op
        self.values: dict[str, list[Any]] = {}
        for name, value, _part in inputs(params, body, op):
            if name not in names and name not in _IGNORED:
                raise FHIRError(400, f"${op} has no parameter '{name}'", location=name)
            self.values.setdefault(name, []).append(value)

    def one(self, name: str) -> Any:
        values = self.values.get(name) or []
        if len(values) > 1:
            raise FHIRError(400, f"${self.op}: '{name}' may be given once", location=name)
        return values[0] if values else None

    def text(self, name: str) -> str | None:
        value = self.one(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise FHIRError(400, f"${self.op}: '{name}' must be a non-empty string", location=name)
        return value

    def all_text(self, name: str) -> list[str]:
        return [v for v in self.values.get(name, []) if isinstance(v, str)]

    def number(self, name: str) -> int | None:
        value = self.one(name)
        if value is None:
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = -1
        if number < 0 or isinstance(value, bool):
            raise FHIRError(400, f"${self.op}: '{name}' must be a whole number of zero or more", location=name)
        return number

    def flag(self, name: str) -> bool:
        value = self.one(name)
        if value in (None, False, "false"):
            return False
        if value in (True, "true"):
            return True
        raise FHIRError(400, f"${self.op}: '{name}' must be true or false", location=name)

    def coding(self, name: str) -> dict[str, Any] | None:
        """A Coding (POST), or `system|code` in a query string."""
        value = self.one(name)
        if value is None:
            return None
        if isinstance(value, str) and "|" in value:
            system, _, code = value.partition("|")
            value = {"system": system, "code": code}
        if not isinstance(value, dict) or not isinstance(value.get("code"), str):
            raise FHIRError(400, f"${self.op}: '{name}' must be a Coding with a code", location=name)
        return value

    def codings(self, *system_names: str) -> list[dict[str, Any]]:
        """What to check or translate: code (its system the first of `system_names` given, with display),
        coding, or each coding of codeableConcept."""
        found = []
        code = self.text("code")
        if code is not None:
            system = next((self.text(n) for n in system_names if self.text(n)), None)
            found.append({"system": system, "code": code, "display": self.text("display"),
                          "version": self.text("version")})
        coding = self.coding("coding")
        if coding is not None:
            found.append(coding)
        concept = self.one("codeableConcept")
        if concept is not None:
            if not isinstance(concept, dict):
                raise FHIRError(400, f"${self.op}: 'codeableConcept' must be a CodeableConcept",
                                location="codeableConcept")
            found += [c for c in concept.get("coding") or [] if isinstance(c, dict) and c.get("code")]
        if not found:
            raise FHIRError(400, f"${self.op} needs a code (with its system), a coding or a codeableConcept")
        return found

    def resource(self, name: str, rtype: str) -> dict[str, Any] | None:
        value = self.one(name)
        if value is not None and (not isinstance(value, dict) or value.get("resourceType") != rtype):
            raise FHIRError(400, f"${self.op}: '{name}' must hold a {rtype} resource", location=name)
        return value


def _stored(services, ctx, rtype: str, rid: str) -> dict[str, Any]:
    services.policy.authorize(ctx, "read", rtype)  # the stored definition is read: the read rules apply
    stored = guard.release_one(services, ctx, services.store.read(rtype, rid))
    if stored is None or stored.deleted:
        raise FHIRError(404, f"{rtype}/{rid} is not known")
    return orjson.loads(stored.content)


def _parameters(*parts: dict[str, Any] | None) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [p for p in parts if p is not None]}


def _property_part(code: str, kind: str, value: Any) -> dict[str, Any]:
    return {"name": "property", "part": [{"name": "code", "valueCode": code}, {"name": "value", f"value{kind}": value}]}


def _verdict(ok: bool, message: str | None, display: str | None) -> dict[str, Any]:
    return _parameters({"name": "result", "valueBoolean": ok},
                       {"name": "message", "valueString": message} if message else None,
                       {"name": "display", "valueString": display} if display else None)


def _listed(codings: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c.get('system') or ''}#{c['code']}" for c in codings)


def _display_ok(given: str | None, concept: Concept | Code, designations: tuple = ()) -> bool:
    if not given or concept.display is None:
        return True
    return given.strip().lower() in {concept.display.lower(), *(d[2].lower() for d in designations)}


# -- CodeSystem ---------------------------------------------------------------------------------------------------

def _codesystem(services, ctx, vocabulary: Vocabulary, rid: str | None, system: str | None,
                version: str | None) -> CodeSystemInfo:
    if rid is not None:
        return codesystem_from_resource(_stored(services, ctx, "CodeSystem", rid))
    if not system:
        raise FHIRError(400, "Name the code system (system, url or the coding's system)")
    return vocabulary.known_codesystem(system, version)


def _lookup(services, ctx, rid, params, body) -> dict[str, Any]:
    ins = Inputs(params, body, "lookup", {"code", "system", "version", "coding", "property"})
    coding = ins.coding("coding") or {}
    code = ins.text("code") or coding.get("code")
    if not code:
        raise FHIRError(400, "$lookup needs a code (with its system) or a coding")
    vocabulary = Vocabulary(services.store)
    cs = _codesystem(services, ctx, vocabulary, rid, ins.text("system") or coding.get("system"),
                     ins.text("version") or coding.get("version"))
    concept = cs.concept(code)
    wanted = set(ins.all_text("property"))
    parts = [{"name": "name", "valueString": cs.name or cs.title or cs.url},
             {"name": "version", "valueString": cs.version} if cs.version else None,
             {"name": "display", "valueString": concept.display or concept.code}]
    for language, use, value in concept.designations:
        parts.append({"name": "designation", "part": [p for p in (
            {"name": "language", "valueCode": language} if language else None,
            {"name": "use", "valueCoding": {"code": use}} if use else None,
            {"name": "value", "valueString": value}) if p]})
    for code_, kind, value in concept.properties:
        if not wanted or code_ in wanted:
            parts.append(_property_part(code_, kind, value))
    for name, related in (("parent", cs.parents().get(concept.code, [])), ("child", cs.children.get(concept.code, []))):
        if not wanted or name in wanted:
            parts += [_property_part(name, "Code", c) for c in related]
    return _parameters(*parts)


def _codesystem_validate(services, ctx, rid, params, body) -> dict[str, Any]:
    ins = Inputs(params, body, "validate-code", {"url", "codeSystem", "code", "version", "display", "coding",
                                                 "codeableConcept"})
    vocabulary = Vocabulary(services.store)
    inline = ins.resource("codeSystem", "CodeSystem")
    codings = ins.codings("system", "url")
    for coding in codings:
        system = coding.get("system") or ins.text("url")
        cs = (codesystem_from_resource(inline) if inline is not None
              else _codesystem(services, ctx, vocabulary, rid, system, coding.get("version")))
        if system and system != cs.url and (rid is not None or inline is not None):
            continue  # a coding of another system, in a CodeableConcept
        concept = cs.find(coding["code"])
        if concept is None:
            continue
        if not _display_ok(coding.get("display"), concept, concept.designations):
            return _verdict(False, f"'{coding['display']}' is not the display of {cs.url}#{concept.code} "
                                   f"(it is '{concept.display}')", concept.display)
        return _verdict(True, None, concept.display)
    return _verdict(False, f"{_listed(codings)}: not a code of the code system", None)


def _subsumes(services, ctx, rid, params, body) -> dict[str, Any]:
    ins = Inputs(params, body, "subsumes", {"codeA", "codeB", "system", "version", "codingA", "codingB"})
    a, b = ins.coding("codingA") or {}, ins.coding("codingB") or {}
    code_a, code_b = ins.text("codeA") or a.get("code"), ins.text("codeB") or b.get("code")
    if not code_a or not code_b:
        raise FHIRError(400, "$subsumes needs codeA and codeB (or codingA and codingB)")
    systems = {s for s in (ins.text("system"), a.get("system"), b.get("system")) if s}
    if len(systems) > 1:
        raise FHIRError(400, "$subsumes compares two codes of one code system")
    vocabulary = Vocabulary(services.store)
    cs = _codesystem(services, ctx, vocabulary, rid, next(iter(systems), None), ins.text("version"))
    return _parameters({"name": "outcome", "valueCode": cs.subsumes(code_a, code_b)})


@operation("lookup", types=["CodeSystem"], type_level=True, instance=True, definition=_OD + "CodeSystem-lookup")
async def lookup(router, request, ctx, rtype, rid, params, body):
    return fhir(200, await router.run(_lookup, router.services, ctx, rid, params, body), ctx)


@operation("subsumes", types=["CodeSystem"], type_level=True, instance=True, definition=_OD + "CodeSystem-subsumes")
async def subsumes(router, request, ctx, rtype, rid, params, body):
    return fhir(200, await router.run(_subsumes, router.services, ctx, rid, params, body), ctx)


# -- ValueSet -----------------------------------------------------------------------------------------------------

def _valueset(services, ctx, vocabulary: Vocabulary, rid: str | None, ins: Inputs) -> dict[str, Any]:
    if rid is not None:
        return _stored(services, ctx, "ValueSet", rid)
    inline = ins.resource("valueSet", "ValueSet")
    if inline is not None:
        return inline
    url = ins.text("url")
    if not url:
        raise FHIRError(400, f"${ins.op} needs the value set: url, a valueSet resource, or ValueSet/[id]")
    found = vocabulary.valueset(url, ins.text("valueSetVersion"))
    if found is None:
        raise FHIRError(404, f"The value set '{url}' is not known to this server", "not-found")
    return found


def _expand(services, ctx, rid, params, body) -> dict[str, Any]:
    ins = Inputs(params, body, "expand", set(EXPANSION_PARAMETERS))
    vocabulary = Vocabulary(services.store)
    valueset = _valueset(services, ctx, vocabulary, rid, ins)
    text, offset, count = ins.text("filter"), ins.number("offset") or 0, ins.number("count")
    codes = vocabulary.expand(valueset, active_only=ins.flag("activeOnly"))
    if text:
        codes = [c for c in codes if text_matches(text, c)]
    if count is None and len(codes) - offset > MAX_UNPAGED:
        raise FHIRError(422, f"The expansion holds {len(codes):,} codes: page through it with count and offset "
                             f"(at most {MAX_UNPAGED:,} without count), or narrow it with filter", "too-costly")
    page = codes[offset:offset + count if count is not None else None]
    echo = [{"name": n, f"value{kind}": v} for n, kind, v in (("filter", "String", text), ("offset", "Integer", offset),
                                                               ("count", "Integer", count)) if v is not None]
    expansion = {"identifier": f"urn:uuid:{uuid.uuid4()}", "timestamp": instant(time.time()), "total": len(codes),
                 "offset": offset, **({"parameter": echo} if echo else {}),
                 "contains": [{k: v for k, v in (("system", c.system), ("version", c.version), ("code", c.code),
                                                 ("display", c.display), ("inactive", c.inactive or None))
                               if v is not None} for c in page]}
    if not expansion["contains"]:
        del expansion["contains"]
    head = {k: valueset[k] for k in ("id", "url", "version", "name", "title", "status") if valueset.get(k)}
    return {"resourceType": "ValueSet", **head, "status": head.get("status", "active"), "expansion": expansion}


def _valueset_validate(services, ctx, rid, params, body) -> dict[str, Any]:
    ins = Inputs(params, body, "validate-code", {"url", "valueSet", "valueSetVersion", "code", "system",
                                                 "systemVersion", "display", "coding", "codeableConcept"})
    vocabulary = Vocabulary(services.store)
    codings = ins.codings("system")
    if ins.text("code") is not None and not ins.text("system"):
        raise FHIRError(400, "$validate-code on a ValueSet needs the code's system")
    valueset = _valueset(services, ctx, vocabulary, rid, ins)
    members = {(c.system, c.code): c for c in vocabulary.expand(valueset)}
    for coding in codings:
        member = members.get((coding.get("system"), coding["code"]))
        if member is None:
            continue
        cs = vocabulary.codesystem(member.system) if coding.get("display") else None
        known = cs.find(member.code) if cs else None
        if not _display_ok(coding.get("display"), member, known.designations if known else ()):
            return _verdict(False, f"'{coding['display']}' is not the display of {member.system}#{member.code} "
                                   f"(it is '{member.display}')", member.display)
        return _verdict(True, None, member.display)
    return _verdict(False, f"{_listed(codings)}: not in the value set {valueset.get('url') or ''}".rstrip(), None)


@operation("expand", types=["ValueSet"], type_level=True, instance=True, definition=_OD + "ValueSet-expand")
async def expand(router, request, ctx, rtype, rid, params, body):
    return fhir(200, await router.run(_expand, router.services, ctx, rid, params, body), ctx)


@operation("validate-code", types=["CodeSystem", "ValueSet"], type_level=True, instance=True,
           definition=_OD + "ValueSet-validate-code")
async def validate_code(router, request, ctx, rtype, rid, params, body):
    handler = _codesystem_validate if rtype == "CodeSystem" else _valueset_validate
    return fhir(200, await router.run(handler, router.services, ctx, rid, params, body), ctx)


# -- ConceptMap ---------------------------------------------------------------------------------------------------

def _translate(services, ctx, rid, params, body) -> dict[str, Any]:
    ins = Inputs(params, body, "translate", {"url", "conceptMap", "conceptMapVersion", "code", "system", "version",
                                             "source", "coding", "codeableConcept", "target", "targetsystem",
                                             "reverse"})
    vocabulary = Vocabulary(services.store)
    inline = ins.resource("conceptMap", "ConceptMap")
    if rid is not None:
        maps = [_stored(services, ctx, "ConceptMap", rid)]
    elif inline is not None:
        maps = [inline]
    elif ins.text("url"):
        maps = vocabulary.conceptmaps(ins.text("url"), ins.text("conceptMapVersion"))
        if not maps:
            raise FHIRError(404, f"The concept map '{ins.text('url')}' is not known to this server", "not-found")
    else:
        maps = vocabulary.conceptmaps()
    reverse = ins.flag("reverse")
    source, target = ins.text("source"), ins.text("target")
    if source or target:  # the value sets the maps are between
        if reverse:
            source, target = target, source
        maps = [m for m in maps if (not source or source in (m.get("sourceUri"), m.get("sourceCanonical")))
                and (not target or target in (m.get("targetUri"), m.get("targetCanonical")))]
    codings = ins.codings("system")  # `url` names the map here, not the code's system
    matches = []
    for coding in codings:
        matches += vocabulary.translate(maps, coding.get("system"), coding["code"], ins.text("targetsystem"), reverse)
    found = [m for m in matches if m["equivalence"] not in ("unmatched", "disjoint")]
    parts: list[dict[str, Any] | None] = [
        {"name": "result", "valueBoolean": bool(found)},
        None if found else {"name": "message", "valueString": f"No mapping found for {_listed(codings)}"}]
    for m in matches:
        concept = {k: m[k] for k in ("system", "code", "display") if m.get(k)}
        parts.append({"name": "match", "part": [p for p in (
            {"name": "equivalence", "valueCode": m["equivalence"]},
            {"name": "concept", "valueCoding": concept} if concept.get("code") else None,
            {"name": "source", "valueUri": m["source"]} if m.get("source") else None) if p]})
    return _parameters(*parts)


@operation("translate", types=["ConceptMap"], type_level=True, instance=True, definition=_OD + "ConceptMap-translate")
async def translate(router, request, ctx, rtype, rid, params, body):
    return fhir(200, await router.run(_translate, router.services, ctx, rid, params, body), ctx)
