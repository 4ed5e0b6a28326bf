"""The cards of the prescribing checks (CDS Hooks 2.0 `Card`), and the record of each card issued.

Every finding (checks.py) becomes a `warning` card that the clinician may override: its `overrideReasons` are
the HL7 v3 detected-issue management codes (v3-ActCode `_ActDetectedIssueManagementCode`), so the reason given
in feedback is recorded unchanged as the DetectedIssue's `mitigation.action` (overrides.py). The issued card is
kept in `rx_cds_cards` (its uuid, who was shown it, the patient, the finding) for KEEP_DAYS, so feedback names a
card by uuid and the record says what was overridden, without trusting the client to repeat it.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from .checks import Finding

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ISSUE_CODES = {"duplicate-therapy": ("DUPTHPY", "Duplicate Therapy Alert"),
               "allergy": ("ALGY", "Allergy Alert"),
               "dose-limit": ("DOSEH", "High Dose Alert")}
_REASONS = {"1": "Therapy Appropriate", "2": "Assessed Patient", "4": "Consulted Other Source",
            "5": "Consulted Prescriber", "9": "Instituted Ongoing Monitoring Program",
            "13": "Stopped Concurrent Therapy"}
OVERRIDE_REASONS = {"duplicate-therapy": ("1", "13", "9"), "allergy": ("2", "1", "9"), "dose-limit": ("1", "4", "9")}
KEEP_DAYS = 30  # a card takes feedback this long; the DetectedIssue of an override is the lasting record
SOURCE = {"label": "Health Twin prescribing checks", "topic": {"system": ACT}}


def override_reasons(kind: str) -> list[dict[str, str]]:
    return [{"system": ACT, "code": c, "display": _REASONS[c]} for c in OVERRIDE_REASONS[kind]]


def card(finding: Finding) -> dict[str, Any]:
    code, display = ISSUE_CODES[finding.kind]
    return {"uuid": str(uuid.uuid4()), "summary": finding.summary, "detail": finding.detail,
            "indicator": "critical" if finding.extra.get("critical") else "warning",
            "source": {"label": f"{SOURCE['label']}: {finding.source}"[:200],
                       "topic": {"system": ACT, "code": code, "display": display}},
            "overrideReasons": override_reasons(finding.kind)}


def remember(store: Any, subject: str, patient: str, hook: str, issued: list[tuple[dict[str, Any], Finding]]) -> None:
    if not issued:
        return
    now = time.time()
    with store.write_cursor() as cur:
        cur.execute(store.sql("DELETE FROM rx_cds_cards WHERE issued < ?"), (now - KEEP_DAYS * 86400,))
        for c, f in issued:
            body = orjson.dumps({"order": f.order, "summary": f.summary, "detail": f.detail,
                                 "implicated": list(f.implicated), "critical": bool(f.extra.get("critical")),
                                 "reasons": [r["code"] for r in c["overrideReasons"]]})
            cur.execute(store.sql("INSERT INTO rx_cds_cards (uuid, issued, subject, patient, hook, kind, finding) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?)"),
                        (c["uuid"], now, subject, patient, hook, f.kind, body))


def recall(store: Any, card_uuid: str) -> dict[str, Any] | None:
    rows = store.query("SELECT issued, subject, patient, hook, kind, finding, outcome FROM rx_cds_cards WHERE uuid = ?",
                       [card_uuid])
    if not rows:
        return None
    issued, subject, patient, hook, kind, finding, outcome = rows[0]
    return {"issued": issued, "subject": subject, "patient": patient, "hook": hook, "kind": kind,
            "finding": orjson.loads(bytes(finding)), "outcome": outcome}


def settle(tx: Any, card_uuid: str, outcome: str) -> bool:
    """Marks the card's outcome once; False if it already had one (feedback is recorded once per card)."""
    rows = tx.execute("SELECT outcome FROM rx_cds_cards WHERE uuid = ?" + tx.store.for_update(), (card_uuid,))
    if not rows or rows[0][0] is not None:
        return False
    tx.execute("UPDATE rx_cds_cards SET outcome = ? WHERE uuid = ?", (outcome, card_uuid))
    return True
