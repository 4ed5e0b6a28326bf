"""Locate (or fetch from the npm registry) the HL7 FHIR R4 package the definitions are generated from.

The package `hl7.fhir.r4.examples@4.0.1` (CC0) carries every R4 StructureDefinition, SearchParameter,
CompartmentDefinition, ValueSet and CodeSystem plus the specification's example resources. Generation
scripts read it from FHIR_R4_PACKAGE (a folder holding `package/`) or run `npm pack` into a cache folder.
Only the generated files are committed, never the package.
"""
from __future__ import annotations

import glob
import os
import subprocess
import tarfile
from pathlib import Path

import orjson

PACKAGE = "hl7.fhir.r4.examples@4.0.1"
CACHE = Path(os.environ.get("FHIR_R4_PACKAGE", Path.home() / ".cache" / "healthtwin" / "r4"))


def package_dir(package: str = PACKAGE, cache: Path = CACHE) -> Path:
    """The unpacked `package/` folder of an npm FHIR package (the R4 one unless told), packed once into `cache`."""
    folder = cache / "package"
    if folder.is_dir():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "pack", package, "--pack-destination", str(cache)], check=True, capture_output=True)
    (tgz,) = glob.glob(str(cache / "*.tgz"))
    with tarfile.open(tgz) as tar:
        tar.extractall(cache, filter="data")
    return folder


def load(prefix: str) -> list[dict]:
    """Every resource in the package whose file name starts with `prefix-`, in file-name order."""
    return [orjson.loads(p.read_bytes()) for p in sorted(package_dir().glob(f"{prefix}-*.json"))]


def examples() -> list[Path]:
    """The specification's example resources (not the definitional ones)."""
    definitional = {"StructureDefinition", "SearchParameter", "CompartmentDefinition", "ValueSet", "CodeSystem",
                    "ConceptMap", "OperationDefinition", "NamingSystem", "CapabilityStatement", "ImplementationGuide"}
    return [p for p in sorted(package_dir().glob("*.json"))
            if p.name.split("-", 1)[0] not in definitional and p.name != "package.json" and not p.name.startswith(".")]
