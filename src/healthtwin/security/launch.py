"""SMART EHR launch: a hospital's EHR opens an app in the context of the patient (and encounter) on screen.

SMART App Launch leaves to the EHR how it gets the `launch` value it hands the app; here the EHR is a system
of its own, integrated with the national authorization server, so it asks for one:

1. The EHR, a confidential client registered with the `launch` scope and an organization, posts
   `POST /auth/launch` with its `private_key_jwt` assertion (as at the token endpoint), `patient`, optionally
   `encounter` (an Encounter of that patient) and `client_id` (the app it opens). It gets an opaque `launch`
   value, good for LAUNCH_LIFETIME seconds and for one sign-in.
2. It opens the app with `iss=<FHIR base>&launch=<value>`; the app sends the value back in its authorization
   request with the `launch` scope.
3. A clinician of the EHR's own organization signs in (a launch made by one hospital's EHR is no key for
   another hospital's staff). The code, and the token it is redeemed for, carry the context: the token
   response names `patient` and `encounter`, and the access token's `patient` claim narrows `patient/`
   scopes to that patient. The clinician's own rights still apply on top (access.py: a clinician sees only
   patients in a treating relationship with their organization); the launch adds context, never rights.

The value is stored as its SHA-256 only, bound to the app if the EHR named one, and consumed in the statement
that reads it (`UPDATE … RETURNING`), so it opens one sign-in even under a race. Each launch is an AuditEvent
naming the patient, so the citizen's access log shows which hospital's system opened their record in an app.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.model import ID_RE
from .auth_audit import auth_event, record
from .clients import get_client
from .smart import OAuthError, SmartConfig, _address, form_endpoint, requesting_client

LAUNCH_LIFETIME = 300


@dataclass(frozen=True)
class LaunchContext:
    patient: str  # "Patient/123"
    encounter: str | None  # "Encounter/9"
    organization: str  # the launching EHR's organization: only its staff may sign in with this launch

    def dumps(self) -> str:
        return orjson.dumps({"patient": self.patient, "encounter": self.encounter,
                             "organization": self.organization}).decode()

    @staticmethod
    def loads(text: str | None) -> "LaunchContext | None":
        if not text:
            return None
        doc = orjson.loads(text)
        return LaunchContext(doc["patient"], doc.get("encounter"), doc["organization"])

    def response_fields(self) -> dict[str, Any]:
        """What the token response adds for the app (SMART App Launch §2.0.6 launch context)."""
        out: dict[str, Any] = {"patient": self.patient.split("/", 1)[1], "need_patient_banner": True}
        if self.encounter:
            out["encounter"] = self.encounter.split("/", 1)[1]
        return out


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _reference(value: str | None, rtype: str) -> str | None:
    """"123" or "Patient/123" → "Patient/123"; None for anything else."""
    if not value:
        return None
    rid = value[len(rtype) + 1:] if value.startswith(rtype + "/") else value
    return f"{rtype}/{rid}" if ID_RE.match(rid) else None


def _live(store: Any, reference: str) -> dict[str, Any] | None:
    rtype, rid = reference.split("/", 1)
    stored = store.read(rtype, rid)
    if stored is None or stored.deleted or stored.content is None:
        return None
    return orjson.loads(stored.content)


def create_launch(config: SmartConfig, form: dict[str, str], address: str | None = None) -> dict[str, Any]:
    """`POST /auth/launch`: a launch value for the EHR that asks, or an OAuthError."""
    ehr = requesting_client(config, form)
    if not ehr.confidential:
        raise OAuthError("invalid_client", "an EHR must authenticate with a client assertion to launch apps")
    if "launch" not in ehr.scopes:
        raise OAuthError("unauthorized_client", "this client is not registered to launch apps (scope 'launch')")
    if not ehr.organization:
        raise OAuthError("unauthorized_client", "this client has no organization: whose staff would sign in?")
    patient = _reference(form.get("patient"), "Patient")
    if patient is None or _live(config.store, patient) is None:
        raise OAuthError("invalid_request", "patient must name an existing Patient")
    encounter = None
    if form.get("encounter"):
        encounter = _reference(form.get("encounter"), "Encounter")
        found = _live(config.store, encounter) if encounter else None
        if found is None or (found.get("subject") or {}).get("reference") != patient:
            raise OAuthError("invalid_request", "encounter must name an existing Encounter of that patient")
    app = form.get("app_client_id") or None
    if app is not None and get_client(config.store, app) is None:
        raise OAuthError("invalid_request", "app_client_id names no registered client")
    value = secrets.token_urlsafe(32)
    context = LaunchContext(patient, encounter, ehr.organization)
    event = auth_event("launch", True, ehr.client_id, client_id=app, address=address,
                       description=f"EHR launch of {app or 'an app'} for {patient}"
                                   + (f" in {encounter}" if encounter else ""))
    event["entity"] = [{"what": {"reference": patient}, "role": {
        "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}}]
    record(config.audit, event)  # recorded before the value is released (AuditError: the EHR gets a 503)
    store, now = config.store, time.time()
    with store.write_cursor() as cur:
        cur.execute(store.sql("INSERT INTO security_launch (launch_hash, ehr_client, app_client, context, expires) "
                              "VALUES (?, ?, ?, ?, ?)"),
                    (_digest(value), ehr.client_id, app, context.dumps(), now + LAUNCH_LIFETIME))
        cur.execute(store.sql("DELETE FROM security_launch WHERE expires < ?"), (now - 3600,))
    return {"launch": value, "expires_in": LAUNCH_LIFETIME}


def peek_launch(config: SmartConfig, value: str, client_id: str) -> LaunchContext | None:
    """The context of a launch value that is still good for this app, without using it up (the sign-in page)."""
    rows = config.store.query("SELECT app_client, context, expires, used FROM security_launch WHERE launch_hash = ?",
                              [_digest(value)])
    if not rows:
        return None
    app, context, expires, used = rows[0]
    if used is not None or time.time() > expires or (app is not None and app != client_id):
        return None
    return LaunchContext.loads(context)


def take_launch(config: SmartConfig, value: str, client_id: str) -> LaunchContext | None:
    """Uses the launch value up for this app's sign-in; None if it is unknown, expired, used or another app's."""
    store, now = config.store, time.time()
    with store.write_cursor() as cur:
        cur.execute(store.sql("UPDATE security_launch SET used = ? WHERE launch_hash = ? AND used IS NULL "
                              "AND expires >= ? AND (app_client IS NULL OR app_client = ?) RETURNING context"),
                    (now, _digest(value), now, client_id))
        row = cur.fetchone()
    return LaunchContext.loads(row[0]) if row else None


def launch_routes(config: SmartConfig) -> list[Route]:
    """`POST /auth/launch`, rate-limited per address like the token endpoint."""

    async def launch(request: Request) -> Response:
        return await form_endpoint(config, request, lambda form: create_launch(config, form, _address(request)))

    return [Route("/auth/launch", launch, methods=["POST"])]
