"""Generate the immunization engine's committed rule files from CDSi-shaped supporting data.

    python scripts/gen_cdsi_rules.py [CORPORA_DIR]

CORPORA_DIR defaults to $HEALTHTWIN_CORPORA, then /work/shared/corpora. Writes, inside the package
(src/healthtwin/registries/immunization/schedules/):

- cdc.json.gz: the CDC CDSi supporting data 4.64 (cdsi/supporting-data/cdsi-4.64-508/XML), every antigen
  file and ScheduleSupportingData.xml, element for element;
- who.json.gz: the WHO EPI schedule in CDSi shape (cdsi/supporting-data/who-cicada/json);
- aze.json.gz: Azerbaijan's national calendar (scripts/aze_calendar.py, a table written by hand from the
  Ministry of Health's calendar) expressed as supporting data, with the WHO file's vaccine definitions
  (CVX map, live-virus conflicts, observations) under it.

One normalised JSON shape for all three: an element that may repeat is always a list, an empty element is
left out, text is stripped. The engine (rules.py) reads only these files; it never needs the corpus.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
OUT = ROOT / "src" / "healthtwin" / "registries" / "immunization" / "schedules"

# (parent, child) element pairs that may repeat: always lists, so the engine never checks for one-or-many.
REPEATED = {
    ("vaccine", "contraindication"), ("contraindication", "contraindicatedVaccine"),
    ("vaccineGroup", "contraindication"), ("immunity", "clinicalHistory"), ("dateOfBirth", "exclusion"),
    ("antigenSupportingData", "series"), ("series", "indication"), ("series", "requiredGender"),
    ("series", "seriesAdminGuidance"), ("series", "seriesDose"), ("seriesDose", "age"),
    ("seriesDose", "allowableVaccine"), ("seriesDose", "conditionalSkip"), ("conditionalSkip", "set"),
    ("set", "condition"), ("seriesDose", "inadvertentVaccine"), ("seriesDose", "interval"),
    ("seriesDose", "allowableInterval"), ("seriesDose", "preferableVaccine"),
    ("cvxToAntigenMap", "cvxMap"), ("cvxMap", "association"), ("liveVirusConflicts", "liveVirusConflict"),
    ("observations", "observation"), ("codedValues", "codedValue"),
    ("vaccineGroupToAntigenMap", "vaccineGroupMap"), ("vaccineGroupMap", "antigen"),
    ("vaccineGroups", "vaccineGroup"),
}


def from_xml(element: ET.Element) -> Any:
    children = list(element)
    if not children:
        text = (element.text or "").strip()
        return text or None
    out: dict[str, Any] = {}
    for child in children:
        value = from_xml(child)
        if value is None:
            continue
        if (element.tag, child.tag) in REPEATED:
            out.setdefault(child.tag, []).append(value)
        else:
            out[child.tag] = value
    return out or None


def normalise(value: Any, parent: str = "") -> Any:
    """The WHO JSON in the XML's normalised shape: repeatable children as lists, empty values dropped."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, child in value.items():
            if isinstance(child, list):
                items = [normalise(item, key) for item in child]
                items = [item for item in items if item not in (None, "", {}, [])]
                if items:
                    out[key] = items
                continue
            norm = normalise(child, key)
            if norm in (None, "", {}, []):
                continue
            out[key] = [norm] if (parent, key) in REPEATED else norm
        return out
    if isinstance(value, str):
        return _in_days(value.strip()) or None
    return value


def _in_days(text: str) -> str:
    """A duration the WHO file gives in hours ("24 hours": HepB's birth dose), in the days the CDSi Logic
    Specification counts in (its durations are days, weeks, months and years; the engine refuses anything else)."""
    match = re.fullmatch(r"(\d+) hours?", text)
    if match and int(match.group(1)) % 24 == 0:
        days = int(match.group(1)) // 24
        return f"{days} day" + ("s" if days != 1 else "")
    return text


def fix_repeats(value: Any, tag: str) -> Any:
    """Wrap single values in lists where the pair may repeat (the WHO JSON writes some as plain objects)."""
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            child = fix_repeats(child, key) if not isinstance(child, list) else [fix_repeats(c, key) for c in child]
            if (tag, key) in REPEATED and not isinstance(child, list):
                child = [child]
            out[key] = child
        return out
    return value


def cdc(corpora: Path) -> dict[str, Any]:
    xml_dir = corpora / "cdsi" / "supporting-data" / "cdsi-4.64-508" / "XML"
    schedule = from_xml(ET.parse(xml_dir / "ScheduleSupportingData.xml").getroot())
    antigens: dict[str, Any] = {}
    for path in sorted(xml_dir.glob("AntigenSupportingData- *.xml")):
        data = from_xml(ET.parse(path).getroot())
        name = data["series"][0]["targetDisease"]
        antigens[name] = data
    return {"name": "CDC CDSi 4.64", "schedule": schedule, "antigens": antigens}


def who(corpora: Path) -> dict[str, Any]:
    json_dir = corpora / "cdsi" / "supporting-data" / "who-cicada" / "json"
    schedule = fix_repeats(normalise(json.loads((json_dir / "schedule_supporting_data.json").read_text())),
                           "scheduleSupportingData")
    antigens: dict[str, Any] = {}
    for path in sorted(json_dir.glob("*.json")):
        if path.name == "schedule_supporting_data.json":
            continue
        data = fix_repeats(normalise(json.loads(path.read_text()), "antigenSupportingData"),
                           "antigenSupportingData")
        antigens[data["series"][0]["targetDisease"]] = data
    return {"name": "WHO EPI (cicada)", "schedule": schedule, "antigens": antigens}


def write(name: str, data: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    # mtime=0: the same input gives the same bytes, so regenerating leaves git clean.
    (OUT / f"{name}.json.gz").write_bytes(gzip.compress(raw, mtime=0))
    print(f"{name}: {len(data['antigens'])} antigens, {len(raw):,} bytes of JSON")


def main() -> None:
    corpora = Path(sys.argv[1] if len(sys.argv) > 1 else
                   os.environ.get("HEALTHTWIN_CORPORA", "/work/shared/corpora"))
    from aze_calendar import azerbaijan

    cdc_data = cdc(corpora)
    write("cdc", cdc_data)
    who_data = who(corpora)
    write("who", who_data)
    write("aze", azerbaijan(who_data, cdc_data))


if __name__ == "__main__":
    main()
