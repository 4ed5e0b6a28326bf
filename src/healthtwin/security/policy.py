"""SmartPolicy: SMART scopes × roles × patient compartments × consent × security labels.

Three duties, all fed by the same per-type criteria (`criteria()`), so a read, a search, a count and an
include can never disagree about what the caller may see:
* `authorize` — may this caller do this interaction on this type at all (401 anonymous, 403 otherwise);
  for writes, may it write *this* resource.
* `restrict` — add criteria to a SearchQuery, so pages and totals only ever count visible rows; refuse
  query shapes whose inner criteria would reach rows the caller may not see (some chains, `_has`, iterate).
* `readable` — filter resources about to be released that no query filtered (reads, includes, history
  versions), and mask the Patient for insurers. A hidden resource answers exactly like an absent one.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ..request import RequestContext
from ..fhir.outcome import FHIRError
from ..fhir.search_query import Criterion, SearchQuery, Value
from ..store.records import Stored
from ..store.search_sql import SearchCompiler
from .access import NOWHERE, SURVEILLANCE_ALERT_SYSTEM, Access, compute, ensure_schema, integration, open_grant
from .clients import parse_scope

LETTER = {"read": "r", "vread": "r", "history-instance": "r", "everything": "r", "search": "s",
          "history-type": "s", "history-system": "s", "create": "c", "update": "u", "patch": "u", "delete": "d",
          # the terminology service reads the definitions of its type, as a read of them would
          "$lookup": "r", "$subsumes": "r", "$expand": "r", "$validate-code": "r", "$translate": "r",
          "$meta": "r", "$meta-add": "u", "$meta-delete": "u",
          "$lastn": "s",  # a search, run as the caller's own
          "$summary": "r", "$twin": "r",  # a patient's summary and twin: read as the caller's own searches
          "$immds-forecast": "r", "$evaluate": "r",  # forecasts from the record, read the same way
          "$match": "s"}  # the patient index's candidates: a search of Patients, released as the caller's own
CONFORMANCE = frozenset({"CapabilityStatement", "StructureDefinition", "SearchParameter", "ValueSet", "CodeSystem",
                         "ConceptMap", "OperationDefinition", "NamingSystem", "ImplementationGuide",
                         "CompartmentDefinition", "StructureMap", "GraphDefinition", "Questionnaire",
                         "TerminologyCapabilities", "MessageDefinition"})
DIRECTORY = frozenset({"Organization", "Practitioner", "PractitionerRole", "Location", "HealthcareService",
                       "Endpoint", "Medication", "Substance", "OrganizationAffiliation"})
PRIMARY_PREFERENCE = ("patient", "beneficiary", "subject", "individual", "member", "actor")
INSURER_PATIENT_PARAMS = {"_id", "identifier", "name", "family", "given", "gender", "birthdate"}
MASKED_KEEP = {"resourceType", "id", "meta", "identifier", "active", "name", "gender", "birthDate",
               "deceasedBoolean", "deceasedDateTime"}
MASKED_TAG = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "MASKED"}


def forbidden(message: str) -> FHIRError:
    return FHIRError(403, message, "forbidden")


def unauthenticated() -> FHIRError:
    return FHIRError(401, "Authentication required: send 'Authorization: Bearer <access token>'", "login",
                     headers={"www-authenticate": 'Bearer realm="healthtwin"'})


class SmartPolicy:
    open = False

    def __init__(self, store: Any, registry: Any, parser: Any) -> None:
        self.store, self.registry, self.parser = store, registry, parser
        ensure_schema(store)

    # -- scopes ---------------------------------------------------------------------------------------------
    def grants(self, ctx: RequestContext, rtype: str | None, letter: str) -> tuple[str, list[str]]:
        """The SMART context the caller's scopes grant `letter` on `rtype` from (system > user > patient, the
        broadest wins), and that context's granular filters ([] = none). Memoized per request: a read asks
        once to authorize and again to release what it read."""
        memo = ctx.security.get(("grants", rtype, letter))
        if memo is not None:
            return memo
        caller = ctx.caller
        found: dict[str, list[str]] = {}
        for scope in caller.scopes:
            parsed = parse_scope(scope)
            if parsed is None or letter not in parsed[2] or parsed[1] not in ("*", rtype):
                continue
            if (parsed[0] == "system") != (caller.kind == "system"):
                continue  # system scopes are for systems only, patient/user scopes for people
            found.setdefault(parsed[0], []).append(parsed[3].lstrip("?"))
        for context in ("system", "user", "patient"):
            if context in found:
                queries = found[context]
                granted = ctx.security[("grants", rtype, letter)] = (
                    context, ([] if "" in queries else sorted(set(queries))))
                return granted
        raise forbidden(f"No granted scope allows '{letter}' on {rtype or 'all types'}")

    def access(self, ctx: RequestContext, rtype: str | None, letter: str) -> tuple[Access, list[str]]:
        context, queries = self.grants(ctx, rtype, letter)
        return compute(self, ctx, context), queries

    def primary(self, rtype: str) -> str | None:
        """The parameter that says whose record a resource is (Observation → subject)."""
        if rtype == "Patient":
            return None
        codes = self.registry.compartment_params("Patient", rtype)
        for code in PRIMARY_PREFERENCE:
            if code in codes:
                return code
        return codes[0] if codes else None

    # -- the row rules --------------------------------------------------------------------------------------
    def criteria(self, ctx: RequestContext, rtype: str, letter: str) -> list[Criterion]:
        access, queries = self.access(ctx, rtype, letter)
        out = self.type_rule(ctx, access, rtype, letter) + self._scope_criteria(rtype, queries)
        if access.exclude and rtype != "Patient":
            out.append(Criterion("_security", "token", "not", [Value(c) for c in sorted(access.exclude)]))
        return out

    def type_rule(self, ctx: RequestContext, access: Access, rtype: str, letter: str) -> list[Criterion]:
        if access.everything:
            return []
        reading = letter in "rs"
        if rtype in CONFORMANCE or rtype in DIRECTORY:
            if reading:
                return []  # directory and definitions: readable by every authenticated role
            raise forbidden(f"Your role may not change {rtype} resources")
        role = access.role
        if role in ("epidemiologist", "analyst") and rtype == "Communication" and reading:
            # The detection run's alerts (aggregate counts, suppressed): an analyst reads every district's, an
            # epidemiologist those addressed to them. Nothing else of a patient's record reaches either role.
            alerts = [Criterion("identifier", "token", None, [Value(SURVEILLANCE_ALERT_SYSTEM + "|")])]
            if role == "analyst":
                return alerts
            refs = access.notes.get("recipients") or (f"PractitionerRole/{NOWHERE}",)
            return alerts + [Criterion("recipient", "reference", None, [Value(r) for r in refs])]
        if role == "epidemiologist":
            raise forbidden("Epidemiologists read their district's alerts (Communication, /analytics/alerts), "
                            "not patient-level data")
        if role in ("analyst", "auditor"):
            raise forbidden("Patient-level data is not available to your role through the FHIR API"
                            + (" (aggregates: /analytics)" if role == "analyst" else ""))
        if access.patients is not None:
            ids = sorted(access.patients) or [NOWHERE]
            if rtype == "Patient":
                return [Criterion("_id", "token", None, [Value(i) for i in ids])]
            code = self.primary(rtype)
            if code is None:
                raise forbidden(f"{rtype} is not part of a patient's record")
            return [Criterion(code, "reference", None, [Value(f"Patient/{i}") for i in ids])]
        org = access.organization or f"Organization/{NOWHERE}"
        ref = lambda code, value=org: Criterion(code, "reference", None, [Value(value)])  # noqa: E731
        if role == "laboratory":
            if rtype == "ServiceRequest" and reading:
                return [ref("performer")]
            if rtype == "Task":
                return [ref("owner")]  # the Tasks it owns: its worklist of orders (registries/laboratory)
            if rtype in ("Observation", "DiagnosticReport"):
                return [Criterion("based-on", "chain", None, [], targets=("ServiceRequest",), inner=ref("performer"))]
            if rtype == "Patient" and reading:
                return [Criterion("_has", "has", None, [], has_type="ServiceRequest", has_param="subject",
                                  inner=ref("performer"))]
        elif role == "pharmacy":
            if rtype == "MedicationRequest" and letter == "s":
                return []  # restrict() insists on an identifier: prescriptions are presented, not browsed
            if rtype == "MedicationDispense":
                return [ref("performer")]
        elif role == "insurer" and reading:
            if rtype == "Coverage":
                return [ref("payor")]
            if rtype == "Claim":
                return [ref("insurer")]
            if rtype == "ExplanationOfBenefit":
                return [Criterion("coverage", "chain", None, [], targets=("Coverage",), inner=ref("payor"))]
            if rtype == "Patient":
                return [Criterion("_has", "has", None, [], has_type="Coverage", has_param="beneficiary",
                                  inner=ref("payor"))]
        elif integration(ctx, access):
            return []  # a backend integration: rows by scope alone (labels still withheld)
        raise forbidden(f"Your role may not {'see' if reading else 'change'} {rtype} resources")

    def _scope_criteria(self, rtype: str, queries: list[str]) -> list[Criterion]:
        """Granular scopes (`Observation.rs?category=laboratory`): one filter, or several on the same
        parameter (OR-ed); filters on different parameters cannot be OR-ed as criteria, so they are refused."""
        if not queries:
            return []
        parsed = [self.parser.parse([rtype], parse_qsl(q, keep_blank_values=True), strict=True).criteria
                  for q in queries]
        if all(len(p) == 1 for p in parsed) and len({(p[0].code, p[0].modifier) for p in parsed}) == 1:
            merged = parsed[0][0]
            return [replace(merged, values=[v for p in parsed for v in p[0].values])]
        if len(parsed) == 1:
            return parsed[0]
        raise forbidden("Your granular scopes filter on different parameters; ask for one at a time")

    # -- Policy interface -----------------------------------------------------------------------------------
    def authorize(self, ctx: RequestContext, interaction: str, resource_type: str | None,
                  resource: dict[str, Any] | None = None) -> None:
        if interaction in ("capabilities", "metadata"):
            return
        if ctx.caller.kind == "anonymous":
            raise unauthenticated()
        role = _role(ctx)
        if interaction in ("transaction", "batch", "$validate", "$access-log", "$break-glass-review", "$export",
                           "$export-poll-status", "$export-file"):
            # Entries are authorized one by one; the operations check their own subject ($export: each type
            # as a search by the caller, and its jobs are the caller's alone).
            return
        if interaction == "$audit-trail":
            if role not in ("auditor", "administrator"):
                raise forbidden("The audit trail is searched by auditors and administrators")
            return
        if interaction == "analytics-alerts":  # the detection run's alerts (twin/surveillance/web.py)
            if role not in ("analyst", "epidemiologist", "administrator"):
                raise forbidden("Surveillance alerts are for epidemiologists, analysts and administrators")
            return
        if interaction == "alert-acknowledge":  # the alert itself must also be readable by the caller
            if role not in ("epidemiologist", "administrator"):
                raise forbidden("An alert is acknowledged by the epidemiologist it is addressed to")
            return
        if interaction == "analytics":
            if role not in ("analyst", "administrator"):
                raise forbidden("Analytics needs the analyst role")
            return
        if interaction == "$everything":
            interaction = "everything"
        letter = LETTER.get(interaction)
        if letter is None or resource_type is None:
            # Operations ($reindex, $import...), and whole-system interactions: administrators only.
            if role != "administrator":
                raise forbidden(f"'{interaction}' is for administrators")
            if letter is not None:
                self.grants(ctx, resource_type, letter)
            return
        access, queries = self.access(ctx, resource_type, letter)
        if interaction == "history-type" and not access.everything:
            raise forbidden("Type-level history is for administrators (it would list rows you may not see)")
        self.type_rule(ctx, access, resource_type, letter)
        if letter == "d" and not access.everything and not (integration(ctx, access)):
            raise forbidden("Deleting is for administrators (records are corrected, not erased)")
        if resource is not None and letter in "cu":
            from .writes import check_write
            check_write(self, ctx, access, resource_type, resource, queries)

    def restrict(self, ctx: RequestContext, query: SearchQuery) -> None:
        if ctx.caller.kind == "anonymous":
            raise unauthenticated()
        types = list(query.types)
        if not types:
            if _role(ctx) != "administrator":
                raise forbidden("Name the resource types to search (_type)")
            self.grants(ctx, None, "s")
            return
        per_type = [self.criteria(ctx, t, "s") for t in types]
        if any(c != per_type[0] for c in per_type[1:]):
            raise forbidden("Search one resource type at a time (your access differs between these types)")
        access, _ = self.access(ctx, types[0], "s")
        if not access.everything:
            from .shapes import check_shapes
            check_shapes(self, ctx, access, types, query)
        query.criteria.extend(per_type[0])

    def readable(self, ctx: RequestContext, stored: list[Stored], checked: bool = False,
                 versions: bool = False) -> list[Stored]:
        """The resources of `stored` the caller may see (masked where the role demands); `checked` means a
        restricted search found them; `versions` means they are versions of one resource (history, vread)."""
        if not stored:
            return []
        if ctx.caller.kind == "anonymous":
            raise unauthenticated()
        visible: dict[str, set[str] | None] = {}
        for rtype in {s.type for s in stored}:
            if checked:
                visible[rtype] = None  # the restricted search already decided; only masking is left
                continue
            try:
                crits = self.criteria(ctx, rtype, "r")
            except FHIRError as exc:
                if exc.status == 401:
                    raise
                visible[rtype] = set()
                continue
            if not crits and not versions:
                visible[rtype] = None  # every row of the type is visible
                continue
            ids = sorted({s.id for s in stored if s.type == rtype})
            seen = self._visible_ids(rtype, ids, crits)
            missing = [i for i in ids if i not in seen]
            visible[rtype] = seen | self._deleted_visible(ctx, rtype, missing) if missing else seen
        out = []
        for s in stored:
            seen = visible[s.type]
            if seen is not None and s.id not in seen:
                continue
            if versions and s.content is not None and not self._content_ok(ctx, s):
                continue
            if s.deleted and seen is None and not checked and not self._deleted_visible(ctx, s.type, [s.id]):
                continue
            out.append(self._mask(ctx, s))
        return out

    def _deleted_visible(self, ctx: RequestContext, rtype: str, ids: list[str]) -> set[str]:
        """Those of `ids` whose current version is a deletion that the caller may know of: a deleted resource
        has no index rows for the row rules to match, so it is judged by its last version before the deletion
        (whose record it was, its labels). Rules only the index can judge (an organisation's orders or
        coverages, chains, granular scopes) keep it hidden: fail closed."""
        try:
            access, queries = self.access(ctx, rtype, "r")
            index_only = not access.everything and (bool(queries) or (
                access.patients is None and bool(self.type_rule(ctx, access, rtype, "r"))))
        except FHIRError as exc:
            if exc.status == 401:
                raise
            return set()
        if index_only or not ids:
            return set()
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self.store.query(f"SELECT id, version FROM resources WHERE type = ? AND deleted = 1 AND id IN "
                                    f"({','.join('?' * len(chunk))})", [rtype, *chunk])
            for rid, version in rows:
                last = self.store.vread(rtype, rid, version - 1)
                if last is not None and last.content is not None and self._content_ok(ctx, last):
                    found.add(rid)
        return found

    def check_existing(self, ctx: RequestContext, rtype: str, current: Stored | None, letter: str = "u") -> None:
        """A caller updates (`u`) or deletes (`d`) only what it may read. An update-as-create with a chosen id is
        for callers from whom no row of the type can be hidden: for anyone else an absent id might be a hidden
        one, so absent and hidden are refused alike. (A delete of a hidden row never gets here: api/write.py
        answers it as for an absent id.) A privacy Consent is changed only by its citizen or an administrator."""
        access, _ = self.access(ctx, rtype, letter)
        live = current is not None and not current.deleted
        if not access.everything:
            if live and not self.readable(ctx, [current]) or not live and letter == "u" and not self._sees_all(
                    ctx, rtype):
                verb = "update" if letter == "u" else "delete"
                raise forbidden(f"{rtype}: you may only {verb} resources you can see (create new ones with POST)")
        if live and rtype in ("Consent", "RelatedPerson") and current.content is not None:
            from .writes import check_consent_author, check_representation
            replaced = orjson.loads(current.content)
            if rtype == "Consent":
                check_consent_author(access, replaced)
            check_representation(self, access, rtype, replaced, replaced=True)

    def _sees_all(self, ctx: RequestContext, rtype: str) -> bool:
        """Whether every row of `rtype` is visible to the caller (its read rules add no criteria)."""
        try:
            return not self.criteria(ctx, rtype, "r")
        except FHIRError as exc:
            if exc.status == 401:
                raise
            return False

    def break_glass(self, ctx: RequestContext, patient: str | None, reason: str) -> None:
        if _role(ctx) != "clinician":
            raise forbidden("Break-the-glass access is for clinicians")
        reason = " ".join(reason.split())
        if not reason or len(reason) > 500:
            raise FHIRError(400, "X-Break-Glass needs a reason (1-500 characters)")
        if not patient:
            raise FHIRError(400, "X-Break-Glass applies to a request about one patient (Patient/[id]/..., or "
                                 "a search with patient=, subject= or _id=)")
        open_grant(self, ctx, patient, reason)
        ctx.purpose = "BTG"
        ctx.security["btg_reason"] = reason

    def declare_purpose(self, ctx: RequestContext, code: str) -> None:
        """`X-Purpose-Of-Use`: accepted only among the caller's role's purposes (access.PURPOSES), then recorded
        with the request's audit events."""
        from .access import PURPOSES
        allowed = PURPOSES.get(_role(ctx) or "", ())
        if code not in allowed:
            raise forbidden(f"purpose of use {code} is not one your role may declare"
                            + (f" ({', '.join(allowed)})" if allowed else ""))
        ctx.purpose = code

    def purpose(self, ctx: RequestContext, patients: list[str]) -> str | None:
        if ctx.purpose:
            return ctx.purpose
        for key, access in ctx.security.items():
            if isinstance(key, tuple) and key[0] == "access" and access.btg and \
                    any(p.removeprefix("Patient/") in access.btg for p in patients):
                return "BTG"
        return None

    def visible_rids(self, ctx: RequestContext, rids: list[int]) -> list[int]:
        """The row ids (in order) the caller may read: for $everything, which collects rows itself."""
        by_type: dict[str, dict[str, int]] = {}
        for start in range(0, len(rids), 500):
            chunk = rids[start:start + 500]
            for rid, rtype, rid_text in self.store.query(
                    f"SELECT rid, type, id FROM resources WHERE rid IN ({','.join('?' * len(chunk))})", chunk):
                by_type.setdefault(rtype, {})[rid_text] = rid
        keep: set[int] = set()
        for rtype, ids in by_type.items():
            try:
                crits = self.criteria(ctx, rtype, "r")
            except FHIRError as exc:
                if exc.status == 401:
                    raise
                continue
            seen = set(ids) if not crits else self._visible_ids(rtype, sorted(ids), crits)
            keep |= {ids[i] for i in seen}
        return [r for r in rids if r in keep]

    # -- helpers --------------------------------------------------------------------------------------------
    def _visible_ids(self, rtype: str, ids: list[str], crits: list[Criterion]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            where = SearchCompiler(self.store, self.registry).where(
                [Criterion("_id", "token", None, [Value(i) for i in chunk]), *crits], [rtype], "r0")
            found |= {r[0] for r in self.store.query(f"SELECT r0.id FROM resources r0 WHERE {where.text()}",
                                                     list(where.params))}
        return found

    def _content_ok(self, ctx: RequestContext, s: Stored) -> bool:
        """Checks one version's own content (labels, whose record it is): history may hold versions that were
        labelled, or filed under another patient, before the current one."""
        access, _ = self.access(ctx, s.type, "r")
        if access.everything:
            return True
        resource = orjson.loads(s.content or b"{}")
        labels = {c.get("code") for c in (resource.get("meta") or {}).get("security") or [] if isinstance(c, dict)}
        if s.type != "Patient" and labels & access.exclude:
            return False
        if access.patients is not None:
            if s.type == "Patient":
                return s.id in access.patients
            code = self.primary(s.type)
            rows = self.registry.extractor(s.type)(resource)
            return any(r[0] == code and r[2] == "Patient" and r[3] in access.patients for r in rows)
        return True

    def _mask(self, ctx: RequestContext, s: Stored) -> Stored:
        if s.type != "Patient" or s.content is None or _role(ctx) != "insurer":
            return s
        resource = orjson.loads(s.content)
        masked = {k: v for k, v in resource.items() if k in MASKED_KEEP}
        meta = dict(masked.get("meta") or {})
        meta["security"] = [*(meta.get("security") or []), MASKED_TAG]
        masked["meta"] = meta
        return replace(s, content=orjson.dumps(masked))


def _role(ctx: RequestContext) -> str | None:
    from .access import primary_role
    return primary_role(ctx.caller.roles)
