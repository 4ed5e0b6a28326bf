"""Generate src/healthtwin/fhir/definitions/ips.json.gz from the International Patient Summary package.

The package `hl7.fhir.uv.ips@2.0.0` (CC0) is fetched with `npm pack` into a cache folder (or read from
FHIR_IPS_PACKAGE, a folder holding `package/`); only the generated file is committed. It holds, like the R4
spec profiles in structures.json.gz, the differentials of the IPS resource profiles in an order where each
profile comes after those it builds on or names as a slice's profile (so `ProfileStore.load_package("ips")`
adds them in one pass), and the IPS ValueSets that list their codes. Datatype profiles (CodeableConcept-,
Coding-uv-ips) and logical models are left out and listed under `skipped`: the validator compiles resource
profiles only. Run: .venv/bin/python scripts/gen_ips_definitions.py
"""
from __future__ import annotations

import glob
import gzip
import os
from pathlib import Path

import orjson

import fhir_package

PACKAGE = "hl7.fhir.uv.ips@2.0.0"
CACHE = Path(os.environ.get("FHIR_IPS_PACKAGE", Path.home() / ".cache" / "healthtwin" / "ips"))
OUT = Path(__file__).resolve().parent.parent / "src" / "healthtwin" / "fhir" / "definitions" / "ips.json.gz"
KEEP = ("resourceType", "url", "version", "name", "type", "kind", "derivation", "baseDefinition", "differential")
ELEMENT_DROP = ("extension", "short", "definition", "comment", "requirements", "alias", "mapping", "example",
                "isModifierReason", "meaningWhenMissing")


def package_dir() -> Path:
    return fhir_package.package_dir(PACKAGE, CACHE)


def _slim(sd: dict) -> dict:
    out = {k: sd[k] for k in KEEP if k in sd}
    out["differential"] = {"element": [{k: v for k, v in e.items() if k not in ELEMENT_DROP}
                                       for e in sd["differential"]["element"]]}
    return out


def _needs(sd: dict, known: set[str]) -> set[str]:
    """The package's profiles this one builds on or names (as a type profile or a reference's target)."""
    urls = {str(sd.get("baseDefinition", "")).split("|")[0]}
    for e in sd["differential"]["element"]:
        for t in e.get("type", []):
            urls |= {str(u).split("|")[0] for u in t.get("profile", []) + t.get("targetProfile", [])}
    return (urls & known) - {sd["url"]}


def ordered(sds: list[dict]) -> list[dict]:
    known = {sd["url"] for sd in sds}
    done: set[str] = set()
    out: list[dict] = []
    pending = sorted(sds, key=lambda sd: sd["url"])
    while pending:
        ready = [sd for sd in pending if _needs(sd, known) <= done]
        if not ready:  # a cycle (Patient <-> Organization targets): take the first, its targets checked by type
            ready = pending[:1]
        for sd in ready:
            out.append(sd)
            done.add(sd["url"])
        pending = [sd for sd in pending if sd["url"] not in done]
    return out


def main() -> None:
    folder = package_dir()
    manifest = orjson.loads((folder / "package.json").read_bytes())
    sds = [orjson.loads(Path(p).read_bytes()) for p in sorted(glob.glob(str(folder / "StructureDefinition-*.json")))]
    profiles, skipped = [], {}
    for sd in sds:
        if sd.get("kind") == "resource" and sd.get("derivation") == "constraint":
            profiles.append(_slim(sd))
        else:
            skipped[sd["url"]] = f"{sd.get('kind')} {sd.get('derivation') or ''}".strip() + \
                ": only resource profiles are compiled"
    valuesets = []
    for p in sorted(glob.glob(str(folder / "ValueSet-*.json"))):
        vs = orjson.loads(Path(p).read_bytes())
        includes = (vs.get("compose") or {}).get("include", [])
        if includes and all("concept" in inc and "system" in inc and "filter" not in inc for inc in includes):
            valuesets.append({k: vs[k] for k in ("resourceType", "url", "version", "compose")})
    data = {"package": f"{manifest['name']}@{manifest['version']}", "license": manifest.get("license"),
            "valuesets": valuesets, "profiles": ordered(profiles), "skipped": skipped}
    OUT.write_bytes(gzip.compress(orjson.dumps(data, option=orjson.OPT_SORT_KEYS), mtime=0))
    print(f"{OUT}: {len(profiles)} profiles, {len(valuesets)} value sets, {len(skipped)} skipped")


if __name__ == "__main__":
    main()
