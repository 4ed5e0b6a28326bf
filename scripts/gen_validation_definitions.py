"""Generate the compact validation data in src/healthtwin/fhir/definitions/ from the R4 package.

Outputs (committed):
  structures.json.gz       every R4 resource / complex / primitive type compiled to per-type element tables,
                           the primitive regexes, and the spec's own resource profiles (differentials only)
  required_valuesets.json  expansions ({system: [codes]}) of the ValueSets bound `required` in the base spec
  valuesets.json.gz        expansions of every other ValueSet expandable from the package (used by profiles)
  hierarchies.json.gz      {system: {code: [child codes]}} of the CodeSystems whose concepts nest (or carry
                           subsumedBy/parent), except those whose hierarchy means grouped-by, part-of or
                           classified-with: token :below/:above use these is-a trees

The validator never reads a StructureDefinition at run time: this script flattens each snapshot once.
Run: .venv/bin/python scripts/gen_validation_definitions.py
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from fhir_package import load

OUT = Path(__file__).resolve().parent.parent / "src" / "healthtwin" / "fhir" / "definitions"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
# ele-1 (every element has a value or children) is checked natively on every node: evaluating it through
# FHIRPath would cost one interpreter call per element. ext-1 is likewise native (Extension.value vs .extension).
NATIVE_EVERYWHERE = {"ele-1", "ext-1"}


def _type_code(t: dict) -> str:
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        # R4 snapshots type Element.id / Extension.url / primitive .value as System.* with the FHIR type in an extension.
        for ext in t.get("extension", []):
            if ext["url"] == FHIR_TYPE_EXT:
                return ext["valueUrl"]
        return "string"
    return code


def _constraints(e: dict) -> list[list[str]]:
    out = []
    for c in e.get("constraint", []):
        if c["key"] in NATIVE_EVERYWHERE or not c.get("expression"):
            continue
        out.append([c["key"], c["severity"], c["expression"], c.get("human", "")])
    return out


def compile_structure(sd: dict, types: dict[str, dict]) -> None:
    """Flatten one snapshot into `types`: the SD's type plus one pseudo-type per backbone element (named by path)."""
    elements = sd["snapshot"]["element"]
    paths = [e["path"] for e in elements]
    root = sd["type"]
    parents = {p.rsplit(".", 1)[0] for p in paths if "." in p}
    types[root] = {"kind": sd["kind"], "e": [], "c": _constraints(elements[0])}
    for e in elements[1:]:
        path = e["path"]
        parent, name = path.rsplit(".", 1)
        if parent not in types:
            continue  # children of a primitive's value etc.
        max_ = -1 if e["max"] == "*" else int(e["max"])
        binding = None
        b = e.get("binding")
        if b and b.get("strength") == "required" and b.get("valueSet"):
            binding = b["valueSet"].split("|")[0]
        if path in parents:
            # backbone element: its own pseudo-type named after the path (fhirpath model paths use the same names)
            types[path] = {"kind": "backbone", "e": [], "c": _constraints(e)}
            codes = [path]
        elif "contentReference" in e:
            codes = [e["contentReference"].lstrip("#")]
        else:
            codes = [_type_code(t) for t in e.get("type", [])]
        if path == f"{root}.id" and sd["kind"] == "resource":
            codes = ["id"]  # R4 snapshots say System.String/"string"; the JSON rules say the logical id is an `id`
        targets = None
        for t in e.get("type", []):
            if t["code"] == "Reference" and t.get("targetProfile"):
                names = sorted({tp.rsplit("/", 1)[-1] for tp in t["targetProfile"]})
                targets = None if "Resource" in names else names
        inv = _constraints(e) if path not in parents else []
        if name.endswith("[x]"):
            base = name[:-3]
            for code in codes:
                key = base + code[0].upper() + code[1:]
                types[parent]["e"].append([key, e["min"], max_, code, binding, targets if code == "Reference" else None,
                                           base, inv or None])
        else:
            if len(codes) != 1:
                raise SystemExit(f"{path}: unexpected types {codes}")
            types[parent]["e"].append([name, e["min"], max_, codes[0], binding, targets, None, inv or None])


def primitive_regexes(sds: list[dict]) -> dict[str, str]:
    out = {}
    for sd in sds:
        if sd.get("kind") != "primitive-type" or sd.get("derivation") != "specialization":
            continue
        for e in sd["snapshot"]["element"]:
            if e["path"] == f"{sd['type']}.value":
                for t in e.get("type", []):
                    for ext in t.get("extension", []):
                        if ext["url"] == REGEX_EXT:
                            out[sd["type"]] = ext["valueString"]
    return out


# ---- ValueSet expansion -------------------------------------------------------------------------------------------

def _concept_tree(cs: dict) -> tuple[list[str], dict[str, list[str]]]:
    codes: list[str] = []
    children: dict[str, list[str]] = {}

    def walk(concepts: list[dict], parent: str | None) -> None:
        for c in concepts:
            codes.append(c["code"])
            if parent is not None:
                children.setdefault(parent, []).append(c["code"])
            walk(c.get("concept", []), c["code"])
    walk(cs.get("concept", []), None)
    # `subsumedBy` properties express hierarchy in some flat code systems (e.g. v3 ones)
    for c in _flat(cs.get("concept", [])):
        for p in c.get("property", []):
            if p.get("code") in ("subsumedBy", "parent") and "valueCode" in p:
                children.setdefault(p["valueCode"], []).append(c["code"])
    return codes, children


def _flat(concepts: list[dict]) -> list[dict]:
    out = []
    for c in concepts:
        out.append(c)
        out.extend(_flat(c.get("concept", [])))
    return out


def _descendants(code: str, children: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    stack = [code]
    while stack:
        for c in children.get(stack.pop(), []):
            if c not in out:
                out.add(c)
                stack.append(c)
    return out


class Expander:
    def __init__(self, valuesets: list[dict], codesystems: list[dict]) -> None:
        self.vs = {v["url"]: v for v in valuesets}
        self.cs = {c["url"]: c for c in codesystems if c.get("content") == "complete"}
        self.cache: dict[str, dict[str, set[str]] | None] = {}

    def expand(self, url: str, depth: int = 0) -> dict[str, set[str]] | None:
        """{system: codes} or None when the ValueSet cannot be expanded from the package alone."""
        url = url.split("|")[0]
        if url in self.cache:
            return self.cache[url]
        self.cache[url] = None  # guards cycles
        vs = self.vs.get(url)
        result = self._expand(vs, depth) if vs and depth < 10 else None
        self.cache[url] = result
        return result

    def _include(self, inc: dict, depth: int) -> dict[str, set[str]] | None:
        acc: dict[str, set[str]] | None = None
        if "system" in inc:
            system = inc["system"]
            if "concept" in inc:
                codes = {c["code"] for c in inc["concept"]}
            else:
                cs = self.cs.get(system)
                if cs is None:
                    return None
                all_codes, children = _concept_tree(cs)
                codes = set(all_codes)
                for f in inc.get("filter", []):
                    if f["property"] != "concept" or f["op"] not in ("is-a", "descendent-of"):
                        return None
                    sub = _descendants(f["value"], children)
                    codes &= (sub | {f["value"]}) if f["op"] == "is-a" else sub
            acc = {system: codes}
        for ref in inc.get("valueSet", []):
            other = self.expand(ref, depth + 1)
            if other is None:
                return None
            if acc is None:
                acc = {s: set(c) for s, c in other.items()}
            else:  # several entries in one include are intersected
                acc = {s: acc[s] & other[s] for s in acc.keys() & other.keys()}
        return acc

    def _expand(self, vs: dict, depth: int) -> dict[str, set[str]] | None:
        compose = vs.get("compose")
        if not compose:
            return None
        out: dict[str, set[str]] = {}
        for inc in compose.get("include", []):
            part = self._include(inc, depth)
            if part is None:
                return None
            for s, codes in part.items():
                out.setdefault(s, set()).update(codes)
        for exc in compose.get("exclude", []):
            part = self._include(exc, depth)
            if part is None:
                return None
            for s, codes in part.items():
                if s in out:
                    out[s] -= codes
        return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sds = load("StructureDefinition")
    types: dict[str, dict] = {}
    resources = []
    for sd in sds:
        if sd.get("derivation") != "specialization" or sd.get("kind") == "logical":
            continue
        compile_structure(sd, types)
        if sd["kind"] == "resource" and not sd.get("abstract"):
            resources.append(sd["type"])
    # Spec profiles on resources are shipped as differentials; the ProfileStore merges them at load time.
    profiles = []
    for sd in sds:
        if sd.get("derivation") == "constraint" and sd.get("kind") == "resource":
            profiles.append({k: sd[k] for k in ("resourceType", "url", "version", "name", "type", "kind", "derivation",
                                                "baseDefinition", "differential") if k in sd})
    bindings = sorted({e[4] for t in types.values() for e in t["e"] if e[4]})
    expander = Expander(load("ValueSet"), load("CodeSystem"))
    required: dict[str, Any] = {}
    skipped = []
    for url in bindings:
        exp = expander.expand(url)
        if exp is None:
            skipped.append(url)
        else:
            required[url] = {s: sorted(c) for s, c in sorted(exp.items())}
    others: dict[str, Any] = {}
    for url in sorted(expander.vs):
        if url in required:
            continue
        exp = expander.expand(url)
        if exp is not None and sum(map(len, exp.values())) <= 5000:
            others[url] = {s: sorted(c) for s, c in sorted(exp.items())}
    hierarchies: dict[str, Any] = {}
    for cs in load("CodeSystem"):
        if cs.get("hierarchyMeaning") not in (None, "is-a") or not cs.get("url"):
            continue
        _, children = _concept_tree(cs)
        if children:
            hierarchies[cs["url"]] = {k: sorted(set(v)) for k, v in sorted(children.items())}
    (OUT / "hierarchies.json.gz").write_bytes(gzip.compress(orjson.dumps(hierarchies, option=orjson.OPT_SORT_KEYS),
                                                            9, mtime=0))
    data = {"fhirVersion": "4.0.1", "primitives": primitive_regexes(sds), "types": types,
            "resources": sorted(resources), "profiles": profiles, "unexpandedRequired": skipped}
    (OUT / "structures.json.gz").write_bytes(gzip.compress(orjson.dumps(data), 9, mtime=0))
    (OUT / "required_valuesets.json").write_bytes(orjson.dumps(required, option=orjson.OPT_SORT_KEYS))
    (OUT / "valuesets.json.gz").write_bytes(gzip.compress(orjson.dumps(others, option=orjson.OPT_SORT_KEYS), 9, mtime=0))
    sizes = {p.name: p.stat().st_size for p in OUT.glob("*") if p.name.startswith(("structures", "required_", "valuesets", "hierarchies"))}
    print(f"{len(types)} types ({len(resources)} resources), {len(profiles)} profiles, {len(required)} required "
          f"ValueSets expanded, {len(skipped)} not expandable, {len(others)} other ValueSets; sizes {sizes}")
    for url in skipped:
        print("  not expandable:", url)


if __name__ == "__main__":
    main()
