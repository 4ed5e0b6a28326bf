"""Research extracts: pseudonymised Bulk Data NDJSON for one project, with no direct identifier in it.

`healthtwin extract --project diabetes-2026 --out DIR [--types Patient,Observation]` reads the store (opening
what is encrypted at rest), passes every resource through `Pseudonymizer.pseudonymize_resource` under the
project's key, and writes `<Type>.ndjson` plus a manifest. Pseudonyms are stable within a project (a second
extract joins the first) and unlinkable across projects. The extract is recorded in the audit trail as an
export (BALP `E` action, purpose HRESCH) naming the project and the counts, so the citizen-facing access
log and the auditors see that it happened.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import orjson

from .pseudonym import Pseudonymizer

PAGE = 1000


def research_extract(store: Any, root_key: bytes, project: str, out: Path,
                     types: Iterable[str] | None = None) -> dict[str, int]:
    """Writes the extract and returns {type: count}. Deleted resources are left out."""
    if not project or not project.replace("-", "").replace("_", "").isalnum():
        raise ValueError("a project name is letters, digits, '-' and '_' (it keys the pseudonyms)")
    wanted = sorted(set(types)) if types else [r[0] for r in store.query(
        "SELECT DISTINCT type FROM resources WHERE deleted = 0 ORDER BY type", [])]
    pseudonymizer = Pseudonymizer(root_key)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for rtype in wanted:
        n, last = 0, ""
        with open(out / f".{rtype}.ndjson.part", "wb") as fh:
            while True:
                rows = store.query("SELECT id, content FROM resources WHERE type = ? AND id > ? AND deleted = 0 "
                                   "ORDER BY id LIMIT ?", [rtype, last, PAGE])
                for rid, content in rows:
                    resource = orjson.loads(store.open_content(rtype, rid, content))
                    fh.write(orjson.dumps(pseudonymizer.pseudonymize_resource(resource, project),
                                          option=orjson.OPT_APPEND_NEWLINE))
                n += len(rows)
                if len(rows) < PAGE:
                    break
                last = rows[-1][0]
        (out / f".{rtype}.ndjson.part").replace(out / f"{rtype}.ndjson")  # whole files only
        counts[rtype] = n
    manifest = {"transactionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "project": project,
                "pseudonymised": True, "output": [{"type": t, "url": f"{t}.ndjson", "count": c}
                                                  for t, c in counts.items()]}
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return counts


def audit_extract(store: Any, operator: str, project: str, counts: dict[str, int]) -> None:
    from .audit import AuditLog
    event = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106", "display": "Export"},
        "action": "E", "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "outcome": "0",
        "purposeOfEvent": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                        "code": "HRESCH"}]}],
        "agent": [{"who": {"identifier": {"value": operator}}, "requestor": True}],
        "source": {"observer": {"display": "healthtwin extract"}},
        "entity": [{"description": f"research extract for project {project}",
                    "detail": [{"type": t, "valueString": str(c)} for t, c in counts.items()]}],
    }
    log = AuditLog(store)
    log.ensure_schema()
    log.append([event])
