"""AuditEvents for authentication and security administration, in the same hash-chained log as data access.

The FHIR requests' events come from api/auditing.py. These cover what happens before a request has a caller,
and around it, so that a security operations centre sees brute force, token abuse and account changes in the
one trail it already watches:

* sign-in at the login page, and tokens issued or refused at the token endpoint: DICOM 110114 "User
  Authentication", subtype 110122 "Login"; a failure has outcome 4 and says why;
* a token revoked: 110114, subtype 110123 "Logout";
* an account disabled or enabled: 110113 "Security Alert", subtype 110137 "User Security Attributes Changed";
* a signing key rotated or retired: 110113, subtype 110129 "Security Configuration".

Requests the rate limiter turns away are not recorded one by one: a flood of them would otherwise be a way to
fill the audit log (the limiter's 429 answers are logged instead).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from ..store.records import instant

log = logging.getLogger("healthtwin.security")
DCM = "http://dicom.nema.org/resources/ontology/DCM"
_KINDS = {  # event -> (type code, type display, subtype code, subtype display)
    "login": ("110114", "User Authentication", "110122", "Login"),
    "logout": ("110114", "User Authentication", "110123", "Logout"),
    "account": ("110113", "Security Alert", "110137", "User Security Attributes Changed"),
    "keys": ("110113", "Security Alert", "110129", "Security Configuration"),
    "launch": ("110100", "Application Activity", "110120", "Application Start"),
}


def auth_event(kind: str, success: bool, who: str | None, *, client_id: str | None = None,
               address: str | None = None, description: str, source: str = "healthtwin auth") -> dict[str, Any]:
    """An AuditEvent of `kind` (see _KINDS): `who` is the person or client acting (or claiming to be),
    `description` what happened, in words, with the reason for a failure."""
    type_code, type_display, sub_code, sub_display = _KINDS[kind]
    agent: dict[str, Any] = {"who": {"identifier": {"value": (who or "unknown")[:128]}}, "requestor": True}
    if address:
        agent["network"] = {"address": address, "type": "2"}
    agents = [agent]
    if client_id and client_id != who:
        agents.append({"who": {"identifier": {"value": client_id[:128]}}, "requestor": False,
                       "type": {"text": "client application"}})
    return {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": type_code, "display": type_display},
        "subtype": [{"system": DCM, "code": sub_code, "display": sub_display}],
        "action": "E",
        "recorded": instant(time.time()),
        "outcome": "0" if success else "4",
        "outcomeDesc": description[:500],
        "agent": agents,
        "source": {"observer": {"display": source}},
    }


def record(audit: Any, event: dict[str, Any]) -> None:
    """Appends durably (AuditError if it cannot be written: the caller then refuses what it was doing)."""
    if audit is not None:
        audit.append([event])


def record_or_log(audit: Any, event: dict[str, Any]) -> None:
    """For what stands whether or not it is recorded (a revocation, a refusal, a session ended: undoing it for
    want of a record would be worse): appends, and logs the event's description if the trail cannot be
    written."""
    from .audit import AuditError
    try:
        record(audit, event)
    except AuditError:
        log.error("could not be audited: %s", event["outcomeDesc"])


def record_in_store(store: Any, event: dict[str, Any]) -> None:
    """For commands run beside the server: the same chain, through the store."""
    from .audit import AuditLog
    log = AuditLog(store)
    log.ensure_schema()
    log.append([event])
