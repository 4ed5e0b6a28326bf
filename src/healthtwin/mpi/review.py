"""The review queue and the "not the same person" decisions that later matching respects.

A probable match (model.REVIEW <= evidence < model.AUTO_LINK) becomes a Task for a data steward: `focus` the
new record, an input naming the candidate, one giving the evidence in bits (`match-weight`, the prior left out), and one per comparison with the
level found and its weight (the evidence a steward decides on). The steward answers by completing the Task
(`status` completed) with `businessStatus.text` "not-the-same-person" or "same-person": the first is kept in
`mpi_decisions`, and neither record is offered as the other's candidate again (match.py); the second is
answered by `Patient/$merge` (links.py), which the steward runs next.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..api.write_rules import WriteEvent
from ..store import Store, Transaction

TABLE = "mpi_decisions"
TASK_SYSTEM = "https://health.gov.az/fhir/CodeSystem/mpi-task"
REVIEW_CODE = "review-match"
NOT_SAME = "not-the-same-person"
SAME = "same-person"
_DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (a TEXT NOT NULL, b TEXT NOT NULL, decision TEXT NOT NULL, "
        "decided_by TEXT, task TEXT, PRIMARY KEY (a, b))",)


def ensure_schema(store: Store) -> None:
    with store.transaction() as tx:
        tx.lock("mpi:schema")
        for statement in _DDL:
            tx.execute(statement)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def record_not_same(tx: Transaction, a: str, b: str, decided_by: str | None, task: str | None) -> None:
    x, y = _pair(a, b)
    tx.execute(f"DELETE FROM {TABLE} WHERE a = ? AND b = ?", (x, y))
    tx.execute(f"INSERT INTO {TABLE} (a, b, decision, decided_by, task) VALUES (?, ?, ?, ?, ?)",
               (x, y, NOT_SAME, decided_by, task))


def refused_pairs(store: Store, patient: str | None, others: Iterable[str], tx: Transaction | None = None) -> set[str]:
    """Those of `others` a steward decided are not the same person as `patient`."""
    others = list(others)
    if patient is None or not others:
        return set()
    query = tx.execute if tx is not None else store.query
    marks = ",".join("?" * len(others))
    rows = query(f"SELECT a, b FROM {TABLE} WHERE decision = ? AND ((a = ? AND b IN ({marks})) OR "
                 f"(b = ? AND a IN ({marks})))", (NOT_SAME, patient, *others, patient, *others))
    return {b if a == patient else a for a, b in rows}


def review_task(new_id: str, candidate_id: str, weight: float, evidence: list[dict[str, Any]]) -> dict[str, Any]:
    inputs = [{"type": {"text": "candidate"}, "valueReference": {"reference": f"Patient/{candidate_id}"}},
              {"type": {"text": "match-weight"}, "valueDecimal": round(weight, 2)}]
    inputs += [{"type": {"text": e["comparison"]}, "valueString": f"{e['level']} ({e['weight']:+.2f})"}
               for e in evidence]
    return {"resourceType": "Task", "status": "requested", "intent": "proposal", "priority": "routine",
            "code": {"coding": [{"system": TASK_SYSTEM, "code": REVIEW_CODE, "display": "Review a probable match"}]},
            "description": "Are these two records one citizen? Complete with businessStatus "
                           f"'{NOT_SAME}' or '{SAME}' (then Patient/$merge).",
            "focus": {"reference": f"Patient/{new_id}"}, "for": {"reference": f"Patient/{new_id}"},
            "input": inputs}


def _is_review(task: dict[str, Any] | None) -> bool:
    coding = ((task or {}).get("code") or {}).get("coding") or []
    return any(isinstance(c, dict) and c.get("system") == TASK_SYSTEM and c.get("code") == REVIEW_CODE for c in coding)


def pair_of(task: dict[str, Any]) -> tuple[str, str] | None:
    focus = ((task.get("focus") or {}).get("reference") or "")
    other = next((i.get("valueReference", {}).get("reference") for i in task.get("input") or ()
                  if (i.get("type") or {}).get("text") == "candidate"), None)
    if not focus.startswith("Patient/") or not (other or "").startswith("Patient/"):
        return None
    return focus.split("/", 1)[1], other.split("/", 1)[1]


def on_task_written(event: WriteEvent) -> None:
    """The write rule: a review Task completed as "not the same person" records the decision."""
    task = event.resource
    if event.interaction == "delete" or not _is_review(task) or task.get("status") != "completed":
        return
    if ((task.get("businessStatus") or {}).get("text")) != NOT_SAME:
        return
    pair = pair_of(task)
    if pair is not None:
        record_not_same(event.tx, *pair, decided_by=event.ctx.caller.subject, task=event.stored.id if event.stored else None)
