"""Who may see which rows: the caller's role, visible patients, withheld labels and break-the-glass grants.

`Access` is computed once per request (memoised on the RequestContext) and turned by policy.py into
search criteria. Everything here reads the store through the same SQL compiler as searches, so "may see"
and "search matches" can never disagree.

Relations used (all must be *current* — finished encounters do not count):
* clinician → patient: an Encounter (planned/arrived/triaged/in-progress/onleave) whose serviceProvider is the
  clinician's organization, an active EpisodeOfCare managed by it, or an active CareTeam with the
  organization or the practitioner as participant; plus unexpired break-the-glass grants.
* citizen → ward: a RelatedPerson whose `patient` is the ward and which is the caller (fhirUser) or carries
  the caller's national id, and which is either linked from the ward (Patient.link) or states a
  parent/guardian relationship.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..request import RequestContext
from ..fhir.search_query import Criterion, Value
from ..store.search_sql import SearchCompiler, alias_pids, _in
from .consent import ConsentDecision, evaluate_consents

log = logging.getLogger("healthtwin.security")

ROLES = ("administrator", "clinician", "laboratory", "pharmacy", "insurer", "epidemiologist", "analyst", "auditor",
         "citizen")
# The purposes of use (HL7 v3 ActReason) a role may declare with `X-Purpose-Of-Use`; ETREAT comes only with
# break-the-glass. The audit trail records the declared purpose (BALP purposeOfEvent).
PURPOSES = {
    "administrator": ("HSYSADMIN", "HOPERAT"),
    "clinician": ("TREAT", "CAREMGT", "HCOMPL"),
    "laboratory": ("TREAT",),
    "pharmacy": ("TREAT",),
    "insurer": ("HPAYMT", "CLMATTCH", "COVAUTH", "ELIGDTRM"),
    "epidemiologist": ("PUBHLTH",),
    "analyst": ("HRESCH", "PUBHLTH", "HOPERAT", "HQUALIMP"),
    "auditor": ("HCOMPL", "HACCRED", "HSYSADMIN"),
    "citizen": ("PATRQT", "FAMRQT", "PWATRNY"),
}
CONFIDENTIALITY = ("R", "V")
SENSITIVE = ("HIV", "PSY", "MH", "SUD", "ETH", "SEX", "STD", "SDV")
FIN_SYSTEM = "https://health.gov.az/fhir/sid/fin"
GUARDIAN_CODES = {"MTH", "FTH", "PRN", "NPRN", "GUARD", "GRD", "STPMTH", "STPFTH", "ADOPTMTH", "ADOPTFTH",
                  "NMTH", "NFTH", "FMRCAT"}
BTG_HOURS = 4
MAX_TREATING = 20_000  # beyond this the IN lists get unwieldy; logged, never silently widened
# The identifier system of the detection run's alerts (twin/surveillance/alerts.py): Communications carrying
# it hold aggregate, small-cell suppressed counts, never a patient's data, so the public-health roles read them.
SURVEILLANCE_ALERT_SYSTEM = "https://health.gov.az/fhir/sid/surveillance-alert"
NOWHERE = "!"  # an id no resource can have (ids are [A-Za-z0-9.-]): matches nothing


@dataclass
class Access:
    role: str | None
    everything: bool = False  # no row restriction at all (administrator)
    patients: frozenset[str] | None = None  # patient ids when restricted to patients' records
    exclude: frozenset[str] = frozenset()  # security label codes withheld
    btg: frozenset[str] = frozenset()  # patients visible only through break-the-glass
    organization: str | None = None
    context: str = "user"  # patient | user | system: the SMART context the grant came from
    notes: dict[str, Any] = field(default_factory=dict)


def integration(ctx: RequestContext, access: Access) -> bool:
    """A backend service with system/ scopes and no role: its scopes alone decide. A client acting for an
    organization but carrying no role gets nothing: its role (laboratory, pharmacy...) must be explicit,
    or it would see every organization's rows."""
    caller = ctx.caller
    return access.role is None and caller.kind == "system" and not caller.organization


def primary_role(roles: frozenset[str]) -> str | None:
    """One role governs a request (the most specific first): mixing roles would mix their row rules."""
    for role in ROLES:
        if role in roles:
            return role
    return None


def label_grants(roles: frozenset[str]) -> set[str]:
    """Roles `label:PSY`, `label:V`... lift the withholding of that label."""
    return {r.split(":", 1)[1] for r in roles if r.startswith("label:")}


def compute(policy: Any, ctx: RequestContext, context: str) -> Access:
    memo = ctx.security.get(("access", context))
    if memo is not None:
        return memo
    caller = ctx.caller
    role = primary_role(caller.roles)
    granted = label_grants(caller.roles)
    own = _id_of(caller.patient)
    if role == "administrator":
        access = Access(role, everything=True, context=context)
    elif role == "citizen":
        patients = {own} if own else set()
        if context != "patient":
            patients |= wards(policy, caller, own)
        access = Access(role, patients=frozenset(patients), context=context)
    elif role == "clinician":
        access = _clinician(policy, ctx, granted, context)
    elif role in ("laboratory", "pharmacy", "insurer"):
        access = Access(role, organization=caller.organization,
                        exclude=frozenset({"V"} - granted) if role == "insurer" else frozenset(), context=context)
    elif role == "epidemiologist":
        access = Access(role, context=context, notes={"recipients": epidemiologist_refs(policy, caller.fhir_user)})
    elif role in ("analyst", "auditor"):
        access = Access(role, context=context)
    elif caller.kind == "system":
        # A backend integration with system/ scopes and no role: rows by scope, sensitive labels withheld.
        access = Access(None, exclude=frozenset(set(CONFIDENTIALITY) | set(SENSITIVE)) - granted, context=context)
    else:
        access = Access(None, context=context)
    if context == "patient":
        # A patient-context launch (patient/ scopes) narrows any role to the launch patient.
        launch = frozenset({own} if own else ())
        access.everything = False
        access.patients = launch if access.patients is None else access.patients & launch
    ctx.security[("access", context)] = access
    return access


def _id_of(ref: str | None) -> str | None:
    if ref and ref.startswith("Patient/"):
        return ref.split("/", 1)[1]
    return None


def _rows(policy: Any, rtype: str, criteria: list[Criterion], select: str) -> list[tuple]:
    compiler = SearchCompiler(policy.store, policy.registry)
    where = compiler.where(criteria, [rtype], "r0")
    return policy.store.query(f"SELECT {select} FROM resources r0 WHERE {where.text()}", list(where.params))


def _resources(policy: Any, rtype: str, criteria: list[Criterion]) -> list[dict[str, Any]]:
    """Live resources matching `criteria`, opened (Patient and RelatedPerson are encrypted at rest)."""
    rows = _rows(policy, rtype, criteria, "r0.id, r0.content")
    return [orjson.loads(policy.store.open_content(rtype, rid, content)) for rid, content in rows if content]


def patients_of(policy: Any, rtype: str, criteria: list[Criterion], code: str = "patient") -> set[str]:
    """Ids of the Patients that resources matching `criteria` point at through `code`."""
    pids = alias_pids(policy.store, policy.registry, [rtype], code) or [-1]
    compiler = SearchCompiler(policy.store, policy.registry)
    where = compiler.where(criteria, [rtype], "r0")
    sql = (f"SELECT DISTINCT x.target_id FROM resources r0 JOIN idx_reference x ON x.rid = r0.rid "
           f"WHERE {where.text()} AND x.pid IN {_in(pids)} AND x.target_type = 'Patient'")
    return {r[0] for r in policy.store.query(sql, list(where.params) + pids)}


def _ref(code: str, *refs: str) -> Criterion:
    return Criterion(code, "reference", None, [Value(r) for r in refs])


def _token(code: str, *values: str) -> Criterion:
    return Criterion(code, "token", None, [Value(v) for v in values])


def treating(policy: Any, organization: str | None, practitioner: str | None) -> set[str]:
    out: set[str] = set()
    if organization:
        out |= patients_of(policy, "Encounter", [_ref("service-provider", organization),
                                                  _token("status", "planned", "arrived", "triaged", "in-progress",
                                                         "onleave")])
        out |= patients_of(policy, "EpisodeOfCare", [_ref("organization", organization), _token("status", "active")])
    members = [m for m in (organization, practitioner) if m]
    if members:
        out |= patients_of(policy, "CareTeam", [_ref("participant", *members), _token("status", "active")])
    return out


def _clinician(policy: Any, ctx: RequestContext, granted: set[str], context: str) -> Access:
    caller = ctx.caller
    org = caller.organization
    practitioner = caller.fhir_user if (caller.fhir_user or "").startswith("Practitioner/") else None
    treated = treating(policy, org, practitioner) if (org or practitioner) else set()
    btg = active_grants(policy, caller.subject)
    decision: ConsentDecision = evaluate_consents(policy, treated | btg, org)
    # Break-the-glass is for emergencies: it overrides a consent refusal, and is audited and reviewable.
    visible = (treated - decision.denied) | btg
    if len(visible) > MAX_TREATING:
        log.error("clinician %s has %d visible patients; only %d are used", caller.subject, len(visible),
                  MAX_TREATING)
        visible = set(sorted(visible)[:MAX_TREATING])
    # A role may lift the default withholding of a label; nothing lifts the citizen's own refusal.
    exclude = ((set(CONFIDENTIALITY) - {"R"} | set(SENSITIVE)) - granted) | decision.labels
    return Access("clinician", patients=frozenset(visible), exclude=frozenset(exclude),
                  btg=frozenset(btg - (treated - decision.denied)), organization=org, context=context)


def epidemiologist_refs(policy: Any, fhir_user: str | None) -> tuple[str, ...]:
    """What an epidemiologist's alerts are addressed to: their fhirUser (a PractitionerRole or Practitioner)
    and, for a Practitioner, each of their active PractitionerRoles (alerts name the district's role)."""
    if not fhir_user or not fhir_user.startswith(("Practitioner/", "PractitionerRole/")):
        return ()
    refs = {fhir_user}
    if fhir_user.startswith("Practitioner/"):
        rows = _rows(policy, "PractitionerRole", [_ref("practitioner", fhir_user)], "r0.id")
        refs |= {f"PractitionerRole/{r[0]}" for r in rows}
    return tuple(sorted(refs))


def wards(policy: Any, caller: Any, own: str | None) -> set[str]:
    """Patients the citizen represents (children, wards) through RelatedPerson and Patient.link."""
    candidates: list[dict[str, Any]] = []
    fhir_user = caller.fhir_user or ""
    if fhir_user.startswith("RelatedPerson/"):
        candidates += _resources(policy, "RelatedPerson", [_token("_id", fhir_user.split("/", 1)[1])])
    if own:
        fins = [i.get("value") for patient in _resources(policy, "Patient", [_token("_id", own)])
                for i in patient.get("identifier", [])
                if isinstance(i, dict) and i.get("system") == FIN_SYSTEM and i.get("value")]
        if fins:
            candidates += _resources(policy, "RelatedPerson",
                                     [_token("identifier", *(f"{FIN_SYSTEM}|{v}" for v in fins))])
    out: set[str] = set()
    for rp in candidates:
        if rp.get("active") is False:
            continue
        ward = _id_of(((rp.get("patient") or {}).get("reference")))
        if not ward or ward == own:
            continue
        codes = {c.get("code") for rel in rp.get("relationship") or [] for c in (rel.get("coding") or [])}
        linked = _linked(policy, ward, f"RelatedPerson/{rp.get('id')}")
        if linked or codes & GUARDIAN_CODES:
            out.add(ward)
    return out


def _linked(policy: Any, ward: str, rp_ref: str) -> bool:
    return any((link.get("other") or {}).get("reference") == rp_ref
               for patient in _resources(policy, "Patient", [_token("_id", ward)])
               for link in patient.get("link") or [])


# -- break-the-glass ------------------------------------------------------------------------------------------------
def ensure_schema(store: Any) -> None:
    real = "DOUBLE PRECISION" if store.dialect == "postgres" else "REAL"
    with store.write_cursor() as cur:
        store.lock(cur, "security-schema")
        cur.execute(f"""CREATE TABLE IF NOT EXISTS security_break_glass (id TEXT PRIMARY KEY, clinician TEXT NOT NULL,
                        organization TEXT, patient TEXT NOT NULL, reason TEXT NOT NULL, started {real} NOT NULL,
                        expires {real} NOT NULL)""")
        cur.execute("CREATE INDEX IF NOT EXISTS security_break_glass_who ON security_break_glass (clinician, expires)")


def active_grants(policy: Any, clinician: str) -> set[str]:
    rows = policy.store.query("SELECT patient FROM security_break_glass WHERE clinician = ? AND expires > ?",
                              [clinician, time.time()])
    return {r[0] for r in rows}


def open_grant(policy: Any, ctx: RequestContext, patient: str, reason: str) -> None:
    caller = ctx.caller
    now = time.time()
    with policy.store.write_cursor() as cur:
        cur.execute(policy.store.sql("INSERT INTO security_break_glass (id, clinician, organization, patient, "
                                     "reason, started, expires) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                    (uuid.uuid4().hex, caller.subject, caller.organization, patient, reason, now,
                     now + BTG_HOURS * 3600))
    log.warning("BREAK-THE-GLASS: %s (%s) opened Patient/%s: %s", caller.subject, caller.organization, patient,
                reason)
    for key in [k for k in ctx.security if isinstance(k, tuple) and k[0] == "access"]:
        del ctx.security[key]  # recompute with the new grant


def grants_for_review(store: Any, since: float = 0.0) -> list[tuple]:
    return store.query("SELECT id, clinician, organization, patient, reason, started, expires "
                       "FROM security_break_glass WHERE started >= ? ORDER BY started", [since])
