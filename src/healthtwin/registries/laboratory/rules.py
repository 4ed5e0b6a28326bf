"""The laboratory's write rules (api/write_rules.py), run inside the store transaction of every write.

* Observation, check: the interpretation is set from the reference ranges (interpretation.py);
  react: a result that has become critical (it was not, or did not exist) raises its Flag and
  Communication (alerts.py) in the same transaction.
* Task fulfilling a ServiceRequest (`basedOn` one), check: only the moves of task_states.py; a new Task
  without an owner is given the order's performer (the laboratory); accepting needs an owner and
  completing needs the DiagnosticReport in `output`; the execution period opens and closes with the work.
  React: a completed Task completes its order.
* ServiceRequest, react: a new active laboratory order (category laboratory) addressed to an organisation
  opens its Task, `requested` and owned by that organisation: the laboratory's worklist fills itself."""
from __future__ import annotations

from typing import Any

import orjson

from ...api.write_rules import WriteEvent, WriteRule
from ...fhir.outcome import FHIRError
from ...store.records import instant
from . import task_states
from .alerts import order_of, raise_alert
from .interpretation import interpret, is_critical

REPORTED = frozenset({"preliminary", "final", "amended", "corrected"})


def _now(tx: Any) -> str:
    """The write's own time (the store's clock, as meta.lastUpdated gets it): a Task's lastModified and its
    stored version agree, and a test that pins the clock pins them."""
    return instant(tx.now)


def _previous(event: WriteEvent) -> dict[str, Any] | None:
    if event.previous is None or not event.previous.content:
        return None
    return orjson.loads(event.previous.content)


def check_observation(event: WriteEvent) -> None:
    if event.resource is not None:
        interpret(event.resource)


def react_observation(event: WriteEvent) -> None:
    obs = event.resource
    if obs is None or event.stored is None or obs.get("status") not in REPORTED or not is_critical(obs):
        return
    before = _previous(event)
    if before is not None and before.get("status") in REPORTED and is_critical(before):
        return  # already alerted when it first became critical
    raise_alert(event.tx, obs, event.stored.id, obs.get("issued") or _now(event.tx))


def _order_ref(task: dict[str, Any]) -> str | None:
    for ref in task.get("basedOn") or []:
        target = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(target, str) and target.startswith("ServiceRequest/"):
            return target
    return None


def _has_report(task: dict[str, Any]) -> bool:
    return any(isinstance(o, dict) and str((o.get("valueReference") or {}).get("reference", "")).startswith(
        "DiagnosticReport/") for o in task.get("output") or [])


def check_task(event: WriteEvent) -> None:
    task = event.resource
    if task is None or _order_ref(task) is None:
        return
    before = _previous(event)
    old, new = (before or {}).get("status"), task.get("status")
    if not task_states.allowed(old, new):
        moves = ", ".join(task_states.next_states(old)) if old else ", ".join(sorted(task_states.INITIAL))
        raise FHIRError(409, f"A laboratory Task cannot go from '{old or '(new)'}' to '{new}'; allowed: {moves}",
                        "business-rule", "Task.status")
    if "owner" not in task:
        order = order_of(event.tx, task)
        performer = next((p for p in (order or {}).get("performer") or [] if isinstance(p, dict)), None)
        if performer is not None:
            task["owner"] = performer
    if new not in ("draft", "requested", "received", "rejected", "cancelled", "entered-in-error") \
            and "owner" not in task:
        raise FHIRError(422, "A laboratory Task past 'requested' needs its owner (the laboratory)", "required",
                        "Task.owner")
    if new == "completed" and not _has_report(task):
        raise FHIRError(422, "A laboratory Task is completed with its DiagnosticReport in output "
                             "(output.valueReference)", "required", "Task.output")
    if new != old:
        task["lastModified"] = _now(event.tx)
        period = task.setdefault("executionPeriod", {})
        if new == "in-progress":
            period.setdefault("start", task["lastModified"])
        elif new in task_states.FINAL and "start" in period:
            period.setdefault("end", task["lastModified"])
        if not period:
            del task["executionPeriod"]


def react_task(event: WriteEvent) -> None:
    task = event.resource
    if task is None or task.get("status") != "completed":
        return
    ref = _order_ref(task)
    found = event.tx.current("ServiceRequest", ref.split("/", 1)[1]) if ref else None
    if found is None or found[1].deleted or not found[1].content:
        return
    order = orjson.loads(found[1].content)
    if order.get("status") == "active":
        order["status"] = "completed"
        event.tx.update("ServiceRequest", order["id"], order, None, found)


LAB_CATEGORIES = frozenset({("http://snomed.info/sct", "108252007"), ("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB"),
                            ("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")})


def is_laboratory_order(order: dict[str, Any]) -> bool:
    return any((c.get("system"), c.get("code")) in LAB_CATEGORIES for cc in order.get("category") or []
               if isinstance(cc, dict) for c in cc.get("coding") or [] if isinstance(c, dict))


def react_order(event: WriteEvent) -> None:
    order = event.resource
    if event.interaction != "create" or order is None or event.stored is None:
        return
    if order.get("status") != "active" or order.get("intent") not in ("order", "original-order") \
            or not is_laboratory_order(order):
        return
    lab = next((p for p in order.get("performer") or [] if isinstance(p, dict)
                and str(p.get("reference", "")).startswith("Organization/")), None)
    if lab is None:
        return
    task: dict[str, Any] = {"resourceType": "Task", "status": "requested", "intent": "order",
                            "basedOn": [{"reference": f"ServiceRequest/{event.stored.id}"}],
                            "focus": {"reference": f"ServiceRequest/{event.stored.id}"},
                            "owner": lab, "authoredOn": order.get("authoredOn") or _now(event.tx),
                            "lastModified": _now(event.tx)}
    for src, dst in (("subject", "for"), ("encounter", "encounter"), ("requester", "requester"),
                     ("priority", "priority"), ("code", "description")):
        if order.get(src) is not None:
            task[dst] = order[src] if dst != "description" else (order[src].get("text") or None)
    if task.get("description") is None:
        task.pop("description", None)
    event.tx.create("Task", task)


RULES = [
    WriteRule("laboratory-results", ("Observation",), check=check_observation, react=react_observation),
    WriteRule("laboratory-tasks", ("Task",), check=check_task, react=react_task),
    WriteRule("laboratory-orders", ("ServiceRequest",), react=react_order),
]
