"""`GET /analytics/alerts` and `POST /analytics/alerts/{id}/acknowledge`: the detection run's stored alerts.

The listing answers, per district, the alerts of its latest week with any, ranked (strongest evidence first),
with their evidence as stored: small-cell suppressed (suppression.py). Who sees what is the access policy's:
the route asks `services.policy.authorize(ctx, "analytics-alerts", None)` (epidemiologists, analysts and
administrators), then releases the stored Communications through `api.guard.release`, whose row rules give an
analyst every district's alerts and an epidemiologist those addressed to them. Acknowledging
(`authorize(ctx, "alert-acknowledge", None)`: the epidemiologist, or an administrator) needs the alert to be
readable by the caller, and sets status completed, `received` (when) and a note naming who. Every request,
answered or refused, is in the audit chain with purpose of use PUBHLTH, as /analytics requests are.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
import re
from typing import Any, Callable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...analytics.seam import PublicHealthSeam
from ...api.guard import release, release_one
from ...fhir.outcome import FHIRError
from ...request import Caller, RequestContext
from ...security.access import SURVEILLANCE_ALERT_SYSTEM
from ...store.search_sql import SearchCompiler
from .alerts import ACKNOWLEDGED, UNREAD

log = logging.getLogger("healthtwin.twin")
HEADERS = {"x-content-type-options": "nosniff", "cache-control": "no-store"}
PARAMS = {"district", "region", "status", "since", "limit"}
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
DEFAULT_WEEKS = 8  # how far back the listing looks by default (the `since` parameter overrides it)
MAX_NOTE = 500


class Alerts:
    def __init__(self, services: Any, identify: Callable[[Request], Caller] | None = None,
                 base_path: str = "/analytics", clock: Callable[[], dt.datetime] | None = None) -> None:
        self.services = services
        self.identify = identify or (lambda request: Caller())
        self.base_path = base_path
        self.seam = PublicHealthSeam(services, self.identify, base_path, "alerts", ())
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.routes = [Route(f"{base_path}/alerts", self.listing, methods=["GET"]),
                       Route(f"{base_path}/alerts/{{alert_id}}/acknowledge", self.acknowledge, methods=["POST"])]

    # -- the seam shared with /analytics ---------------------------------------------------------------
    async def _guard(self, request: Request, interaction: str, fn: Callable[[RequestContext], Any]) -> Response:
        return await self.seam.answer(request, interaction, fn)

    # -- routes ----------------------------------------------------------------------------------------
    async def listing(self, request: Request) -> Response:
        """Per district, the latest week's alerts the caller may see, ranked, with their evidence."""
        async def run(ctx: RequestContext) -> Response:
            params = _params(request)
            return _json(await run_in_threadpool(self._listing, ctx, params))
        return await self._guard(request, "analytics-alerts", run)

    async def acknowledge(self, request: Request) -> Response:
        """Marks an alert read: status completed, `received` now, a note naming who (and their words)."""
        async def run(ctx: RequestContext) -> Response:
            alert_id = request.path_params["alert_id"]
            if not ID.match(alert_id):
                raise FHIRError(400, f"'{alert_id}' is not an alert id", "invalid", "alert_id")
            note = _note(await request.body())
            return _json(await run_in_threadpool(self._acknowledge, ctx, alert_id, note))
        return await self._guard(request, "alert-acknowledge", run)

    # The query parameters of the listing, for the OpenAPI description (api/openapi.py).
    listing.query_parameters = (  # type: ignore[attr-defined]
        ("district", "district name(s) as addresses give them, comma-separated: alerts involving any of them"),
        ("region", "region name(s), comma-separated"),
        ("status", "in-progress (unread, the default), completed (acknowledged) or all"),
        ("since", "YYYY-MM-DD: alerts sent on or after it (default: eight weeks back)"),
        ("limit", "alerts per district, 1 to 50 (default 5)"))

    # -- the work --------------------------------------------------------------------------------------
    def _listing(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        services = self.services
        query = services.parser.parse(["Communication"], [("identifier", SURVEILLANCE_ALERT_SYSTEM + "|"),
                                                           ("sent", "ge" + params["since"].isoformat())],
                                      strict=True)
        where = SearchCompiler(services.store, services.registry).where(query.criteria, ["Communication"], "r0")
        ids = [r[0] for r in services.store.query(f"SELECT r0.id FROM resources r0 WHERE {where.text()}",
                                                  list(where.params))]
        rows = [s for s in (services.store.read("Communication", i) for i in ids) if s is not None]
        shown = [alert_view(orjson.loads(r.content or b"{}"), ctx) for r in release(services, ctx, rows)]
        shown = [a for a in shown if _wanted(a, params)]
        by_district: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for a in shown:
            by_district.setdefault((a["region"] or "", a["district"] or a["region"] or ""), []).append(a)
        districts = []
        for (region, district), items in by_district.items():
            latest = max(a["week"] for a in items)
            ranked = sorted((a for a in items if a["week"] == latest), key=lambda a: -a["rank"])
            districts.append({"region": region, "district": district, "week": latest,
                              "alerts": ranked[:params["limit"]], "more": max(0, len(ranked) - params["limit"])})
        districts.sort(key=lambda d: -d["alerts"][0]["rank"])
        return {"since": params["since"].isoformat(), "districts": districts,
                "suppression": "observed counts of 1-4 are shown as '<5'"}

    def _acknowledge(self, ctx: RequestContext, alert_id: str, note: str | None) -> dict[str, Any]:
        store = self.services.store
        row = release_one(self.services, ctx, store.read("Communication", alert_id))
        alert = orjson.loads(row.content or b"{}") if row is not None else None
        if alert is None or not _is_alert(alert):
            raise FHIRError(404, f"No alert '{alert_id}' addressed to you", "not-found")
        if alert.get("status") == ACKNOWLEDGED:
            return alert_view(alert, ctx)  # the first acknowledgement stands
        caller = ctx.caller
        by = caller.fhir_user or caller.subject
        now = self.clock().astimezone(dt.timezone.utc).isoformat(timespec="seconds")
        entry: dict[str, Any] = {"time": now, "text": "Acknowledged" + (f": {note}" if note else "")}
        if by.startswith("Practitioner/"):
            entry["authorReference"] = {"reference": by}
        else:  # Annotation.author cannot reference a PractitionerRole: name it
            entry["authorString"] = by if by == caller.subject else f"{by} ({caller.subject})"
        with store.transaction() as tx:
            current = tx.current("Communication", alert_id)
            if current is None or current[1].version != row.version:  # type: ignore[union-attr]
                raise FHIRError(409, f"Alert '{alert_id}' changed while it was acknowledged; retry", "conflict")
            alert.update(status=ACKNOWLEDGED, received=now, note=[*(alert.get("note") or []), entry])
            alert.pop("meta", None)
            tx.update("Communication", alert_id, alert, existing=current)
        return alert_view(alert, ctx)


def _is_alert(resource: dict[str, Any]) -> bool:
    return any(i.get("system") == SURVEILLANCE_ALERT_SYSTEM for i in resource.get("identifier") or []
               if isinstance(i, dict))


def alert_view(alert: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """What the listing shows of one stored alert (its counts were suppressed when it was written)."""
    evidence: dict[str, Any] = {}
    for part in alert.get("payload") or []:
        att = part.get("contentAttachment") if isinstance(part, dict) else None
        if att and att.get("contentType") == "application/json" and att.get("data"):
            evidence = orjson.loads(base64.b64decode(att["data"]))
    text = next((p["contentString"] for p in alert.get("payload") or [] if "contentString" in p), "")
    acknowledged = None
    if alert.get("status") == ACKNOWLEDGED:
        last = (alert.get("note") or [{}])[-1]
        acknowledged = {"at": alert.get("received"),
                        "by": (last.get("authorReference") or {}).get("reference") or last.get("authorString")}
    root = ctx.base_url.rsplit("/", 1)[0]
    return {"id": alert.get("id"), "url": f"{root}/fhir/Communication/{alert.get('id')}",
            "region": evidence.get("region"), "district": evidence.get("district"),
            "syndrome": evidence.get("syndrome"), "week": evidence.get("week", ""),
            "rank": evidence.get("rank", 0.0), "priority": alert.get("priority"), "status": alert.get("status"),
            "districts": evidence.get("districts") or [d for d in [evidence.get("district")] if d],
            "sent": alert.get("sent"), "recipient": (alert.get("recipient") or [None])[0],
            "recipients": alert.get("recipient") or [], "text": text,
            "acknowledged": acknowledged, "method": evidence.get("method"), "signals": evidence.get("signals", [])}


def _wanted(alert: dict[str, Any], params: dict[str, Any]) -> bool:
    if params["district"] and not params["district"] & {alert["district"], *alert["districts"]}:
        return False
    if params["region"] and alert["region"] not in params["region"]:
        return False
    return params["status"] == "all" or alert["status"] == params["status"]


def _params(request: Request) -> dict[str, Any]:
    """The listing's query parameters, checked: a bad one is a 400 naming it."""
    raw = request.query_params
    unknown = sorted(set(raw) - PARAMS - {"_format"})
    if unknown:
        raise FHIRError(400, f"Unknown parameter(s) {', '.join(unknown)}; use {', '.join(sorted(PARAMS))}",
                        "not-supported", unknown[0])
    status = raw.get("status", UNREAD)
    if status not in (UNREAD, ACKNOWLEDGED, "all"):
        raise FHIRError(400, f"status '{status}': use {UNREAD} (unread), {ACKNOWLEDGED} (acknowledged) or all",
                        "invalid", "status")
    try:
        since = (dt.date.fromisoformat(raw["since"]) if "since" in raw
                 else dt.date.today() - dt.timedelta(weeks=DEFAULT_WEEKS))
    except ValueError:
        raise FHIRError(400, f"since '{raw['since']}' is not a date (YYYY-MM-DD)", "invalid", "since") from None
    try:
        limit = int(raw.get("limit", "5"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 50:
        raise FHIRError(400, f"limit '{raw.get('limit')}': a whole number of alerts per district, 1 to 50",
                        "invalid", "limit")
    split = lambda name: {v for v in raw.get(name, "").split(",") if v}  # noqa: E731
    return {"district": split("district"), "region": split("region"), "status": status, "since": since,
            "limit": limit}


def _note(body: bytes) -> str | None:
    if not body.strip():
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FHIRError(400, f"The body is not JSON: {exc}", "invalid") from None
    if not isinstance(parsed, dict) or set(parsed) - {"note"}:
        raise FHIRError(400, 'The body is {"note": "..."} or empty', "invalid")
    note = parsed.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise FHIRError(400, f"note is text of at most {MAX_NOTE} characters", "invalid", "note")
    return " ".join(note.split()) if note else None


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=HEADERS)
