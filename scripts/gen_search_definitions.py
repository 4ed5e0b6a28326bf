"""Generate src/healthtwin/fhir/definitions/{search_parameters,compartments,resource_types}.json from the R4 package.

Run: .venv/bin/python scripts/gen_search_definitions.py   (output is committed)
"""
from __future__ import annotations

from pathlib import Path

import orjson

from fhir_package import load

OUT = Path(__file__).resolve().parent.parent / "src" / "healthtwin" / "fhir" / "definitions"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    by_url = {}
    params = []
    for sp in load("SearchParameter"):
        # A few extension-defined parameters in the package carry neither base nor expression: not indexable.
        if "base" not in sp or not sp.get("expression") and sp["type"] != "special" or sp["url"] in by_url:
            continue
        entry = {
            "url": sp["url"], "code": sp["code"], "base": sp["base"], "type": sp["type"],
            "expression": sp.get("expression"), "description": sp.get("description", "").split("\n")[0][:300],
        }
        for key in ("target", "modifier", "comparator", "multipleOr", "multipleAnd"):
            if key in sp:
                entry[key] = sp[key]
        if "component" in sp:
            entry["component"] = [{"definition": c["definition"], "expression": c["expression"]} for c in sp["component"]]
        by_url[sp["url"]] = entry
        params.append(entry)
    params.sort(key=lambda p: (p["base"][0], p["code"]))
    (OUT / "search_parameters.json").write_bytes(orjson.dumps(params, option=orjson.OPT_INDENT_2))

    compartments = {}
    for cd in load("CompartmentDefinition"):
        if cd.get("id") == "example":
            continue
        compartments[cd["code"]] = {r["code"]: r["param"] for r in cd.get("resource", []) if r.get("param")}
    (OUT / "compartments.json").write_bytes(orjson.dumps(compartments, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))

    # Top-level elements flagged isSummary, per resource type, for _summary=true; mandatory ones for _elements.
    summary, mandatory = {}, {}
    for sd in load("StructureDefinition"):
        if sd.get("kind") != "resource" or sd.get("derivation") != "specialization" or sd.get("abstract"):
            continue
        top = [e for e in sd["snapshot"]["element"] if e["path"].count(".") == 1]
        names = lambda pred: sorted({e["path"].split(".")[1].replace("[x]", "") for e in top if pred(e)})
        summary[sd["type"]] = names(lambda e: e.get("isSummary"))
        mandatory[sd["type"]] = names(lambda e: e.get("min", 0) > 0)
    (OUT / "summary_elements.json").write_bytes(orjson.dumps({"summary": summary, "mandatory": mandatory}, option=orjson.OPT_SORT_KEYS))

    types = sorted(sd["type"] for sd in load("StructureDefinition")
                   if sd.get("kind") == "resource" and sd.get("derivation") == "specialization" and not sd.get("abstract"))
    (OUT / "resource_types.json").write_bytes(orjson.dumps(types, option=orjson.OPT_INDENT_2))
    print(f"{len(params)} search parameters, {len(compartments)} compartments, {len(types)} resource types")


if __name__ == "__main__":
    main()
