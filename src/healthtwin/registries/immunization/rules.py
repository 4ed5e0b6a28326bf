"""The committed rule files (schedules/*.json.gz, made by scripts/gen_cdsi_rules.py), loaded and indexed.

A Schedule is one set of CDSi supporting data: the antigens' series and the schedule-wide tables (CVX to
antigen, vaccine groups, live-virus conflicts, coded observations). The engine reads nothing else.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

SCHEDULES = {"aze": "aze.json.gz", "cdc": "cdc.json.gz", "who": "who.json.gz"}
DEFAULT_SCHEDULE = "aze"

# Code systems of the coded observations, as FHIR URIs.
SYSTEMS = {"SNOMED": "http://snomed.info/sct", "ICD10": "http://hl7.org/fhir/sid/icd-10-cm",
           "CVX": "http://hl7.org/fhir/sid/cvx", "CDCPHINVS": "urn:oid:2.16.840.1.114222.4.5.274",
           "LOINC": "http://loinc.org"}
CDSI_OBSERVATION_SYSTEM = "https://www.cdc.gov/vaccines/programs/iis/cdsi.html"


@dataclass(frozen=True)
class Association:
    antigen: str
    begin_age: str | None
    end_age: str | None


@dataclass(frozen=True)
class Conflict:
    previous_cvx: str
    begin: str
    min_end: str | None
    end: str


@dataclass
class VaccineGroup:
    name: str
    antigens: list[str]
    administer_full: bool


@dataclass
class Schedule:
    key: str
    name: str
    antigens: dict[str, dict[str, Any]]
    cvx_antigens: dict[str, list[Association]]
    cvx_names: dict[str, str]
    groups: dict[str, VaccineGroup]
    conflicts: dict[str, list[Conflict]]  # by the current dose's CVX
    observations: dict[str, str]  # CDSi observation code -> title
    coded: dict[tuple[str, str], str] = field(default_factory=dict)  # (system URI, code) -> CDSi code

    def group_of(self, antigen: str) -> list[str]:
        return [g.name for g in self.groups.values() if antigen in g.antigens]


def norm_cvx(code: str) -> str:
    """CVX codes appear as '3' and '03': compare them as numbers."""
    code = code.strip()
    return code.lstrip("0") or "0"


def _normalise_cvx(value: Any) -> None:
    """Every CVX code of the antigens' data in one spelling ('03' -> '3'), once at load, so the engine
    compares strings."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "cvx" and isinstance(child, str):
                value[key] = norm_cvx(child)
            else:
                _normalise_cvx(child)
    elif isinstance(value, list):
        for child in value:
            _normalise_cvx(child)


@lru_cache(maxsize=4096)
def cvx_set(text: str) -> frozenset[str]:
    """A ';'-separated list of CVX codes (vaccineTypes, fromMostRecent) as a set."""
    return frozenset(norm_cvx(c) for c in text.split(";") if c.strip())


def _build(key: str, data: dict[str, Any]) -> Schedule:
    sched = data["schedule"]
    _normalise_cvx(data["antigens"])
    cvx_antigens: dict[str, list[Association]] = {}
    names: dict[str, str] = {}
    for row in sched["cvxToAntigenMap"]["cvxMap"]:
        cvx = norm_cvx(row["cvx"])
        names[cvx] = row.get("shortDescription", cvx)
        cvx_antigens[cvx] = [Association(a["antigen"], a.get("associationBeginAge"), a.get("associationEndAge"))
                             for a in row.get("association", [])]
    full = {g["name"]: g.get("administerFullVaccineGroup") == "Yes"
            for g in sched["vaccineGroups"]["vaccineGroup"]}
    groups = {m["name"]: VaccineGroup(m["name"], list(m.get("antigen", [])), full.get(m["name"], False))
              for m in sched["vaccineGroupToAntigenMap"]["vaccineGroupMap"]}
    conflicts: dict[str, list[Conflict]] = {}
    for row in sched.get("liveVirusConflicts", {}).get("liveVirusConflict", []):
        conflicts.setdefault(norm_cvx(row["current"]["cvx"]), []).append(
            Conflict(norm_cvx(row["previous"]["cvx"]), row["conflictBeginInterval"],
                     row.get("minConflictEndInterval"), row["conflictEndInterval"]))
    observations: dict[str, str] = {}
    coded: dict[tuple[str, str], str] = {}
    for obs in sched.get("observations", {}).get("observation", []):
        code = obs["observationCode"]
        observations[code] = obs.get("observationTitle", code)
        coded[(CDSI_OBSERVATION_SYSTEM, code)] = code
        for value in (obs.get("codedValues") or {}).get("codedValue", []):
            system = SYSTEMS.get(value.get("codeSystem", ""), value.get("codeSystem", ""))
            coded[(system, value["code"])] = code
    return Schedule(key, data.get("name", key), data["antigens"], cvx_antigens, names, groups, conflicts,
                    observations, coded)


@lru_cache(maxsize=None)
def load(key: str = DEFAULT_SCHEDULE) -> Schedule:
    if key not in SCHEDULES:
        raise KeyError(f"unknown schedule {key!r}: choose one of {', '.join(sorted(SCHEDULES))}")
    raw = resources.files(__package__).joinpath("schedules").joinpath(SCHEDULES[key]).read_bytes()
    return _build(key, json.loads(gzip.decompress(raw)))
