"""What a critical result raises: a Flag on the patient's record and a Communication to the orderer.

Both are written in the transaction that stores the result, so the alert exists exactly when the result
does, whether or not anyone is connected at that moment. The Communication is the orderer's unread item:
`status` in-progress until the practitioner acknowledges it by updating it to completed (with `received`);
`Communication?recipient=Practitioner/{id}&status=in-progress&category=alert` is the unread list."""
from __future__ import annotations

from typing import Any

import orjson

from ...store import Transaction
from .interpretation import critical_parts

COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
ALERT = [{"coding": [{"system": COMMUNICATION_CATEGORY, "code": "alert", "display": "Alert"}], "text": "Alert"}]
LAB = [{"coding": [{"system": FLAG_CATEGORY, "code": "lab", "display": "Lab"}], "text": "Laboratory"}]
# The Communication's identifier is the Observation's id in this system: one alert per result, whichever path
# (the write rule or `healthtwin laboratory alerts` after a bulk load) raised it.
ALERT_ID_SYSTEM = "https://health.gov.az/fhir/sid/critical-result-alert"
UNREAD = "in-progress"
ACKNOWLEDGED = "completed"


def order_of(tx: Transaction, observation: dict[str, Any]) -> dict[str, Any] | None:
    """The ServiceRequest the result answers (its first `basedOn` order), read inside the transaction."""
    for ref in observation.get("basedOn") or []:
        target = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(target, str) and target.startswith("ServiceRequest/"):
            found = tx.current("ServiceRequest", target.split("/", 1)[1])
            if found is not None and not found[1].deleted and found[1].content:
                return orjson.loads(found[1].content)
    return None


def raise_alert(tx: Transaction, observation: dict[str, Any], obs_id: str, when: str) -> tuple[str, str]:
    """Writes the Flag and the Communication of a critical result; returns their ids."""
    order = order_of(tx, observation)
    what = "; ".join(critical_parts(observation)) or "critical result"
    subject = observation.get("subject")
    performer = next((p for p in observation.get("performer") or [] if isinstance(p, dict)
                      and str(p.get("reference", "")).startswith("Organization/")), None)
    about = {"reference": f"Observation/{obs_id}"}
    flag: dict[str, Any] = {"resourceType": "Flag", "status": "active", "category": LAB,
                            "code": {"text": f"Critical result: {what}"}, "period": {"start": when}}
    if subject:
        flag["subject"] = subject
    if performer:
        flag["author"] = performer
    if observation.get("encounter"):
        flag["encounter"] = observation["encounter"]
    flag_id = tx.create("Flag", flag).id
    message: dict[str, Any] = {
        "resourceType": "Communication", "identifier": [{"system": ALERT_ID_SYSTEM, "value": obs_id}],
        "status": UNREAD, "category": ALERT, "priority": "stat",
        "sent": when, "about": [about, {"reference": f"Flag/{flag_id}"}],
        "payload": [{"contentString": f"Critical result: {what}"}]}
    if subject:
        message["subject"] = subject
    if order is not None:
        message["basedOn"] = [{"reference": f"ServiceRequest/{order['id']}"}]
        if isinstance(order.get("requester"), dict):
            message["recipient"] = [order["requester"]]
    if performer:
        message["sender"] = performer
    if observation.get("encounter"):
        message["encounter"] = observation["encounter"]
    message_id = tx.create("Communication", message).id
    return flag_id, message_id
