"""Generate `src/healthtwin/fhir/definitions/element_types.json` from the R4 StructureDefinitions.

The search-expression compiler (`healthtwin.fhir.fhirpath_compile`) needs the FHIR type of every element an
expression walks through, so it can pick the index conversion (CodeableConcept → token rows, Period → date
range ...) at compile time instead of guessing from JSON shapes at run time. The table is flat:

    {"kinds": {"Observation": "resource", "CodeableConcept": "complex", "string": "primitive", ...},
     "bases": {"Observation": "DomainResource", "Age": "Quantity", "code": "string", ...},
     "elements": {"Observation.code": ["CodeableConcept"], "Observation.value[x]": ["Quantity", ...],
                  "Observation.component": ["BackboneElement"], "Questionnaire.item.item": "#Questionnaire.item"}}

Only base definitions (derivation = specialization) are read, not profiles. `System.String` (the type of
Element.id / Extension.url) is written as `string`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fhir_package import load  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "src" / "healthtwin" / "fhir" / "definitions" / "element_types.json"
KINDS = {"resource": "resource", "complex-type": "complex", "primitive-type": "primitive"}


def _type_code(code: str) -> str:
    # FHIRPath system types appear for Element.id, Extension.url, and primitive `.value` elements.
    return code.rsplit(".", 1)[-1].lower() if code.startswith("http://hl7.org/fhirpath/System.") else code


def main() -> None:
    kinds: dict[str, str] = {}
    bases: dict[str, str] = {}
    elements: dict[str, object] = {}
    for sd in load("StructureDefinition"):
        if sd.get("kind") not in KINDS or sd.get("derivation", "specialization") != "specialization":
            continue
        if sd.get("abstract") is False and sd["type"] != sd["id"]:
            continue
        kinds[sd["type"]] = KINDS[sd["kind"]]
        if sd.get("baseDefinition", "").startswith("http://hl7.org/fhir/StructureDefinition/"):
            bases[sd["type"]] = sd["baseDefinition"].rsplit("/", 1)[-1]
        if sd["kind"] == "primitive-type":
            continue  # a primitive's children (id, extension, value) are never navigated by search expressions
        for el in sd["snapshot"]["element"][1:]:
            if "contentReference" in el:
                elements[el["path"]] = el["contentReference"]
            else:
                elements[el["path"]] = sorted({_type_code(t["code"]) for t in el.get("type", [])},
                                              key=[_type_code(t["code"]) for t in el.get("type", [])].index)
    OUT.write_bytes(orjson.dumps({"kinds": dict(sorted(kinds.items())), "bases": dict(sorted(bases.items())),
                                  "elements": elements},
                                 option=orjson.OPT_INDENT_2 if "--pretty" in sys.argv else 0))
    print(f"{OUT}: {len(kinds)} types, {len(elements)} elements")


if __name__ == "__main__":
    main()
