"""Generate definitions/terminology.json.gz, what the terminology operations serve from the R4 package.

    .venv/bin/python scripts/gen_terminology.py

For every CodeSystem the package carries complete (about 1,050, 20,000 concepts): its name, title, version
and each concept's display, the concepts' own properties (status, notSelectable, deprecated...) and its
designations; the name, title and version of every ValueSet, and the compose of those not expanded at
generation time (valuesets.json.gz and required_valuesets.json, from gen_validation_definitions.py, which runs
first), for the server to expand on request; every ConceptMap, cut to its groups' codes and targets.
Definitions (the concepts' prose) are left out: they would triple the file and no operation needs them.
Hierarchies are hierarchies.json.gz's.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from fhir_package import load

OUT = Path(__file__).resolve().parents[1] / "src" / "healthtwin" / "fhir" / "definitions" / "terminology.json.gz"
HIERARCHY_PROPERTIES = {"parent", "child", "subsumedBy"}


def _property_value(prop: dict) -> Any:
    for key, value in prop.items():
        if key.startswith("value"):
            return [key[5:], value]  # [type, value]: valueCode → ["Code", "x"]
    return None


def _concepts(concepts: list[dict], out: dict[str, list]) -> None:
    for c in concepts:
        props = [[p["code"], *_property_value(p)] for p in c.get("property", [])
                 if p.get("code") not in HIERARCHY_PROPERTIES and _property_value(p) is not None]
        designations = [[d.get("language"), (d.get("use") or {}).get("code"), d["value"]]
                        for d in c.get("designation", []) if d.get("value")]
        entry: list = [c.get("display")]
        if props or designations:
            entry += [props, designations]
        out[c["code"]] = entry
        _concepts(c.get("concept", []), out)


def main() -> None:
    codesystems: dict[str, Any] = {}
    for cs in load("CodeSystem"):
        if cs.get("content") != "complete" or not cs.get("url"):
            continue
        concepts: dict[str, list] = {}
        _concepts(cs.get("concept", []), concepts)
        codesystems[cs["url"]] = {"name": cs.get("name"), "title": cs.get("title"), "version": cs.get("version"),
                                  "caseSensitive": cs.get("caseSensitive", True), "concepts": concepts}
    folder = OUT.parent
    expanded = set(orjson.loads(gzip.decompress((folder / "valuesets.json.gz").read_bytes())))
    expanded |= set(orjson.loads((folder / "required_valuesets.json").read_bytes()))
    # A ValueSet expanded at generation time needs only its names; the others keep their compose, which the
    # server expands on request where the code systems it names are known (filters included).
    valuesets = {vs["url"]: {"name": vs.get("name"), "title": vs.get("title"), "version": vs.get("version"),
                             **({} if vs["url"] in expanded or "compose" not in vs else {"compose": vs["compose"]})}
                 for vs in load("ValueSet") if vs.get("url")}
    conceptmaps: dict[str, Any] = {}
    for cm in load("ConceptMap"):
        if not cm.get("url"):
            continue
        # The FHIR shape, cut to what $translate reads, so that stored and packaged maps take one code path.
        groups = [{"source": g.get("source"), "target": g.get("target"),
                   "element": [{"code": e["code"], "target": [{k: t[k] for k in ("code", "display", "equivalence")
                                                              if k in t} for t in e.get("target", [])]}
                               for e in g.get("element", []) if e.get("code")]}
                  for g in cm.get("group", [])]
        conceptmaps[cm["url"]] = {"resourceType": "ConceptMap", "url": cm["url"], "name": cm.get("name"),
                                  "version": cm.get("version"), "status": cm.get("status"), "group": groups}
    data = {"codesystems": codesystems, "valuesets": valuesets, "conceptmaps": conceptmaps}
    OUT.write_bytes(gzip.compress(orjson.dumps(data, option=orjson.OPT_SORT_KEYS), 9, mtime=0))
    print(f"{len(codesystems)} code systems ({sum(len(c['concepts']) for c in codesystems.values())} concepts), "
          f"{len(valuesets)} value sets, {len(conceptmaps)} concept maps; {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
