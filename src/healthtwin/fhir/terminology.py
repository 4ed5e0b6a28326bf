"""What token search needs to know about terminology, without a terminology server:

* ValueSet expansion for :in / :not-in: the R4 ValueSets expanded at generation time from the CodeSystems the
  specification carries (definitions/valuesets.json.gz and required_valuesets.json), and ValueSet resources
  stored on the server (expanded by vocabulary.py, the terminology operations' expander);
* is-a hierarchies for :below / :above: the R4 CodeSystems whose concepts nest (definitions/hierarchies.json.gz),
  and CodeSystem resources stored on the server (nested concepts, or `parent`/`subsumedBy` properties).
  SNOMED CT, LOINC and ICD hierarchies are not in the package: load a CodeSystem to search them this way."""
from __future__ import annotations

import gzip
import threading
import weakref
from collections import OrderedDict
from functools import lru_cache
from importlib import resources as pkg_resources

from typing import Any, Callable

import orjson


@lru_cache(maxsize=1)
def _packaged_hierarchies() -> dict[str, dict[str, list[str]]]:
    folder = pkg_resources.files("healthtwin.fhir").joinpath("definitions")
    return orjson.loads(gzip.decompress(folder.joinpath("hierarchies.json.gz").read_bytes()))


def _children_of(codesystem: dict) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    stack = [(c, None) for c in reversed(codesystem.get("concept") or []) if isinstance(c, dict)]  # in order
    while stack:
        concept, parent = stack.pop()
        code = concept.get("code")
        if not isinstance(code, str):
            continue
        if parent is not None:
            children.setdefault(parent, []).append(code)
        for prop in concept.get("property") or []:
            if isinstance(prop, dict) and prop.get("code") in ("parent", "subsumedBy") and prop.get("valueCode"):
                children.setdefault(prop["valueCode"], []).append(code)
        stack.extend((c, code) for c in reversed(concept.get("concept") or []) if isinstance(c, dict))
    return children


def _hierarchy(system: str, store) -> dict[str, list[str]] | None:
    packaged = _packaged_hierarchies().get(system)
    if packaged is not None:
        return packaged
    if store is None:
        return None
    for codesystem in stored_canonical(store, "CodeSystem", system):
        if codesystem.get("hierarchyMeaning") in (None, "is-a"):
            return _children_of(codesystem)
    return None


def stored_canonical(store, rtype: str, url: str) -> list[dict]:
    """The live stored resources of `rtype` whose canonical `url` is this one (every business version of it).
    Parsed once per resource version and kept (memo): a national ICD-10 is a megabyte of JSON, which a
    $lookup re-read and re-parsed on every call (88 ms). The dicts are shared: callers must not change them."""
    rows = store.query("SELECT r.id, r.version FROM idx_uri x JOIN resources r ON r.rid = x.rid JOIN search_params p "
                       "ON p.pid = x.pid WHERE p.type = ? AND p.code = 'url' AND x.value = ? AND r.deleted = 0",
                       [rtype, url])
    return [memo(store, ("resource", rtype, rid, version), lambda rid=rid, version=version: _read(store, rtype, rid,
                                                                                                  version))
            for rid, version in rows]


def _read(store, rtype: str, rid: str, version: int) -> dict:
    stored = store.vread(rtype, rid, version)
    return orjson.loads(stored.content)


MEMO_ENTRIES = 64  # parsed definitions kept per store: a few code systems, value sets and maps in use
_memos: "weakref.WeakKeyDictionary[Any, OrderedDict[tuple, Any]]" = weakref.WeakKeyDictionary()
_memo_lock = threading.Lock()


def memo(store, key: tuple, build: Callable[[], Any]) -> Any:
    """`build()` kept per store under `key`, least recently used first out. Keys name a resource version, so
    an update is a new key and nothing needs invalidating; two threads may build the same entry at once."""
    with _memo_lock:
        entries = _memos.setdefault(store, OrderedDict())
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
    value = build()
    with _memo_lock:
        entries[key] = value
        while len(entries) > MEMO_ENTRIES:
            entries.popitem(last=False)
    return value


def related_codes(system: str, code: str, direction: str, store=None) -> list[str] | None:
    """`code` and every code it subsumes (direction 'below') or that subsume it ('above'); None when this
    server holds no is-a hierarchy for `system`."""
    children = _hierarchy(system, store)
    if children is None:
        return None
    if direction == "above":
        parents: dict[str, list[str]] = {}
        for parent, kids in children.items():
            for kid in kids:
                parents.setdefault(kid, []).append(parent)
        children = parents
    found, stack = {code}, [code]
    while stack:  # the set makes a cycle in a stored CodeSystem harmless
        for nxt in children.get(stack.pop(), ()):
            if nxt not in found:
                found.add(nxt)
                stack.append(nxt)
    return sorted(found)


@lru_cache(maxsize=1)
def _packaged() -> dict[str, dict[str, list[str]]]:
    folder = pkg_resources.files("healthtwin.fhir").joinpath("definitions")
    expansions = orjson.loads(gzip.decompress(folder.joinpath("valuesets.json.gz").read_bytes()))
    expansions.update(orjson.loads(folder.joinpath("required_valuesets.json").read_bytes()))
    return expansions


def expand(url: str, store=None) -> list[tuple[str, str]] | None:
    """(system, code) pairs of a ValueSet by canonical URL, or None when this server cannot expand it."""
    url = url.split("|")[0]
    packaged = _packaged().get(url)
    if packaged is not None:
        return [(system, code) for system, codes in packaged.items() for code in codes]
    if store is None:
        return None
    from .outcome import FHIRError
    from .vocabulary import Vocabulary
    vocabulary = Vocabulary(store)
    valueset = vocabulary.valueset(url)
    if valueset is None:
        return None
    try:
        return [(c.system, c.code) for c in vocabulary.expand(valueset)]
    except FHIRError:
        return None  # the search says the value set cannot be expanded here
