"""Run records: every scenario run kept with what reproduces it exactly.

`<analytics folder>/scenarios/<id>.json` holds the run's checked inputs, the record's data it started from
(`record_data.gather`: aggregates only), the random seed, the code version (the package version and a
SHA-256 of the scenario modules' source), the analytics watermarks the data was read at, who asked and when,
its status and progress, the results, and a FHIR R4 `Provenance` resource describing the run (target: the
run, `urn:healthtwin:scenario:<id>`; agent: the caller; entity: the analytics database at its watermarks;
the inputs digest as the signature-free `policy` of the computation). `reproduce(record)` recomputes the
results from the record alone; `tests/twin/test_scenarios.py` checks they are identical.

Files are written whole under a temporary name and renamed, so a reader sees a run before or after an
update, never half-written; every server process reads them, and the queued ones are the queue (queue.py).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import threading
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

_ID = re.compile(r"^[0-9a-f]{32}$")


@lru_cache(maxsize=1)
def code_version() -> dict[str, str]:
    from ... import __version__
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {"package": f"healthtwin {__version__}", "scenarios_sha256": digest.hexdigest()}


def digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


class RunStore:
    """The run records of one analytics folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder) / "scenarios"
        self._lock = threading.Lock()

    def new(self, inputs: dict[str, Any], caller: str | None, watermarks: dict[str, Any]) -> dict[str, Any]:
        run_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        record = {"id": run_id, "status": "queued", "progress": 0.0, "created": now, "caller": caller,
                  "inputs": inputs, "inputs_sha256": digest(inputs), "seed": inputs.get("seed"),
                  "code": code_version(), "analytics_watermarks": watermarks, "data": None, "results": None,
                  "error": None}
        self.save(record)
        return record

    def path(self, run_id: str) -> Path:
        if not _ID.match(run_id):
            raise KeyError(run_id)
        return self.folder / f"{run_id}.json"

    def save(self, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(record["id"])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with self._lock:
            tmp.write_bytes(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY))
            os.replace(tmp, path)

    def claim_path(self, run_id: str) -> Path:
        return self.path(run_id).with_suffix(".claim")

    def claims(self) -> list[Path]:
        return sorted(self.folder.glob("*.claim")) if self.folder.exists() else []

    def queued(self) -> list[str]:
        """The ids of the queued runs, oldest first (the queue of queue.py)."""
        if not self.folder.exists():
            return []
        found = []
        for path in self.folder.glob("*.json"):
            try:
                r = orjson.loads(path.read_bytes())
            except (orjson.JSONDecodeError, OSError):  # OSError: finished and tidied meanwhile
                continue
            if r.get("status") == "queued":
                found.append((r.get("created") or "", path.stat().st_mtime, r["id"]))
        return [run_id for _, _, run_id in sorted(found)]

    def load(self, run_id: str) -> dict[str, Any]:
        try:
            return orjson.loads(self.path(run_id).read_bytes())
        except (KeyError, FileNotFoundError):
            raise KeyError(run_id) from None

    def list(self) -> list[dict[str, Any]]:
        if not self.folder.exists():
            return []
        out = []
        for path in sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
            try:
                r = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                continue
            out.append({k: r.get(k) for k in ("id", "status", "progress", "created", "inputs_sha256")})
        return out


def provenance(record: dict[str, Any]) -> dict[str, Any]:
    """A FHIR R4 Provenance of the run (not stored in the FHIR store: it travels with the record)."""
    who = record.get("caller") or "anonymous"
    return {
        "resourceType": "Provenance",
        "target": [{"identifier": {"system": "urn:healthtwin:scenario", "value": record["id"]}}],
        "recorded": record.get("finished") or record["created"],
        "occurredPeriod": {"start": record["created"], "end": record.get("finished") or record["created"]},
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                 "code": "CREATE", "display": "create"}], "text": "scenario run"},
        "reason": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "PUBHLTH"}]}],
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                        "code": "author"}]}, "who": {"display": who}},
                  {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                        "code": "assembler"}]},
                   "who": {"display": f"{record['code']['package']} scenarios "
                                      f"{record['code']['scenarios_sha256'][:12]}"}}],
        "entity": [{"role": "source", "what": {"display": "analytics database at watermarks "
                                                          + orjson.dumps(record.get("analytics_watermarks")).decode()}},
                   {"role": "source", "what": {"identifier": {"system": "urn:healthtwin:scenario-inputs-sha256",
                                                              "value": record["inputs_sha256"]}}}],
    }


__all__ = ["RunStore", "code_version", "digest", "provenance"]
