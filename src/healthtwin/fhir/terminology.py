"""ValueSet expansion for :in / :not-in: the R4 ValueSets expanded at generation time from the CodeSystems the
specification carries (definitions/valuesets.json.gz and required_valuesets.json), and ValueSet resources stored on the server."""
from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources as pkg_resources

import orjson


@lru_cache(maxsize=1)
def _packaged() -> dict[str, dict[str, list[str]]]:
    folder = pkg_resources.files("healthtwin.fhir").joinpath("definitions")
    expansions = orjson.loads(gzip.decompress(folder.joinpath("valuesets.json.gz").read_bytes()))
    expansions.update(orjson.loads(folder.joinpath("required_valuesets.json").read_bytes()))
    return expansions


def _from_resource(valueset: dict) -> list[tuple[str, str]] | None:
    """Codes of a stored ValueSet: its expansion, or its enumerated compose.include concepts."""
    if valueset.get("expansion", {}).get("contains"):
        out, stack = [], list(valueset["expansion"]["contains"])
        while stack:
            item = stack.pop()
            if item.get("system") and item.get("code"):
                out.append((item["system"], item["code"]))
            stack.extend(item.get("contains", []))
        return out
    out = []
    for inc in valueset.get("compose", {}).get("include", []):
        if inc.get("filter") or inc.get("valueSet") or not inc.get("concept"):
            return None  # not enumerable without a terminology server
        out += [(inc["system"], c["code"]) for c in inc["concept"]]
    return out or None


def expand(url: str, store=None) -> list[tuple[str, str]] | None:
    """(system, code) pairs of a ValueSet by canonical URL, or None when this server cannot expand it."""
    url = url.split("|")[0]
    packaged = _packaged().get(url)
    if packaged is not None:
        return [(system, code) for system, codes in packaged.items() for code in codes]
    if store is not None:
        rows = store.query("SELECT r.content FROM idx_uri x JOIN resources r ON r.rid = x.rid JOIN search_params p "
                           "ON p.pid = x.pid WHERE p.type = 'ValueSet' AND p.code = 'url' AND x.value = ? "
                           "AND r.deleted = 0", [url])
        for (content,) in rows:
            codes = _from_resource(orjson.loads(bytes(content)))
            if codes is not None:
                return codes
    return None
