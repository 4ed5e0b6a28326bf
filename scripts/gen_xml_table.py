#!/usr/bin/env python3
"""Generate src/healthtwin/fhir/definitions/xml_shapes.json from the FHIR R4 StructureDefinitions.

The table answers the two questions FHIR XML cannot answer by itself, and that FHIRPath Patch
needs when it creates elements: is element X of type T an array in JSON, and what is its type
(primitive or complex, and which structure holds its children)?

Usage: python scripts/gen_xml_table.py [PACKAGE_DIR]   (default: the package fhir_package.py locates)
(the folder is an unpacked npm package holding StructureDefinition-*.json, e.g.
hl7.fhir.r4.examples@4.0.1 or hl7.fhir.r4.core@4.0.1).

Output format (compact, one object per structure):
  {"<TypeOrBackbonePath>": {"<element>": "<spec>", ...}, ...}
  spec = "<types>[*]"  where "*" marks max cardinality > 1 (a JSON array) and types is
     - "T1|T2|..." FHIR type codes (lower-case first letter = primitive), choice elements are
       keyed by their bare name ("value" for value[x]);
     - "@" a BackboneElement/Element defined inline: its children live under "<path>.<element>";
     - "#Some.path" a contentReference (children live under that path).
     - "~" the open type list of Extension.value[x], stored once under "_open"/"types".
  Elements inherited unchanged from Element/BackboneElement/Resource/DomainResource are stored
  only once, under those base types; readers fall back through "_base" (and, for inline
  backbone paths, to BackboneElement).
"""
from __future__ import annotations

import glob
import json
import os
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "healthtwin", "fhir", "definitions", "xml_shapes.json")
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"


def type_code(t: dict[str, Any]) -> str:
    code: str = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        # R4 marks the primitive 'value' and 'id' elements with a FHIRPath system type; the
        # extension carries the FHIR type we want.
        for ext in t.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext.get("valueUrl") or ext.get("valueUri") or "string")
        return "string"
    return code


def element_spec(el: dict[str, Any], path: str) -> str:
    star = "*" if el.get("max") not in ("0", "1") or el.get("base", {}).get("max") not in (None, "0", "1") else ""
    if "contentReference" in el:
        return str(el["contentReference"]) + star
    codes = [type_code(t) for t in el.get("type", [])]
    if codes in (["BackboneElement"], ["Element"]):
        return "@" + star
    return "|".join(codes) + star


def main(package_dir: str) -> None:
    table: dict[str, dict[str, str]] = {}
    bases: dict[str, str] = {}
    for fname in sorted(glob.glob(os.path.join(package_dir, "StructureDefinition-*.json"))):
        with open(fname, encoding="utf-8") as fh:
            sd = json.load(fh)
        if sd.get("resourceType") != "StructureDefinition" or sd.get("derivation") == "constraint":
            continue
        if sd.get("kind") not in ("resource", "complex-type", "primitive-type"):
            continue
        name: str = sd["type"]
        base = (sd.get("baseDefinition") or "").rsplit("/", 1)[-1]
        if base:
            bases[name] = base
        for el in sd.get("snapshot", {}).get("element", []):
            path: str = el["path"]
            if "." not in path:
                continue
            parent, child = path.rsplit(".", 1)
            if child.endswith("[x]"):
                child = child[:-3]
            table.setdefault(parent, {})[child] = element_spec(el, path)
    # Drop elements that merely repeat what the base type declares, to keep the file small.
    for name, base in bases.items():
        own = table.get(name, {})
        b = base
        while b:
            for k, v in table.get(b, {}).items():
                if own.get(k) == v:
                    del own[k]
            b = bases.get(b, "")
        own["_base"] = base
        table[name] = own
    # Inline backbone structures: their id/extension/modifierExtension are always the standard
    # ones (readers fall back to BackboneElement for paths with a dot).
    std = {"id": "string", "extension": "Extension*", "modifierExtension": "Extension*"}
    for path, own in table.items():
        if "." in path:
            for k, v in std.items():
                if own.get(k) == v:
                    del own[k]
    # The open type list of Extension.value[x] repeats in a few places: store it once.
    open_types = table["Extension"]["value"]
    for own in table.values():
        for k, v in own.items():
            if v.rstrip("*") == open_types:
                own[k] = "~" + v[len(open_types):]
    table["_open"] = {"types": open_types}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as fh:
        json.dump(table, fh, separators=(",", ":"), sort_keys=True)
        fh.write("\n")
    print(f"wrote {OUT}: {len(table)} structures, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:  # the package unpacked by fhir_package (npm pack into a cache folder when it is missing)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from fhir_package import package_dir
        main(str(package_dir()))
