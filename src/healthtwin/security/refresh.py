"""Refresh tokens (SMART App Launch `offline_access` and `online_access`), rotated on every use.

An app that signs a person in with `offline_access` (a citizen's phone app) or `online_access` gets a refresh
token with its access token, and trades it at the token endpoint (`grant_type=refresh_token`) for a new access
token and a new refresh token. The rules, after the OAuth 2.0 Security Best Current Practice (RFC 9700 §4.14):

* A refresh token is 256 random bits, stored only as its SHA-256, bound to the client and the person, and
  good once: redeeming it marks it used in the same statement that reads it (`UPDATE … RETURNING`), so two
  concurrent redemptions cannot both succeed.
* Each redemption issues the next token of the same *family* (the tokens descended from one sign-in). A
  used token that comes back means it was copied: the whole family is ended and the access tokens it issued
  are revoked, whichever of the two holders was the thief.
* The family lives a fixed time from the sign-in, not renewed by use: 30 days for `offline_access`, 12 hours
  for `online_access`. Then the person signs in again.
* A refresh may ask for fewer scopes than the sign-in granted, never more; the person's account and the
  client must still be enabled (`clients.set_disabled`).
* `/auth/revoke` with a refresh token ends its family (revocation.py).

A person sees the apps that can still act for them this way, and ends any of them (a lost phone, an app no
longer trusted): `GET /auth/sessions` and `DELETE /auth/sessions/{id}` with their own access token
(`session_routes`).
"""
from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..fhir.outcome import FHIRError
from ..store.records import instant
from .auth_audit import auth_event, record_or_log
from .clients import get_client, get_user, split_scopes
from .launch import LaunchContext
from .smart import NO_STORE, OAuthError, SmartConfig, requesting_client, user_tokens
from .tokens import MAX_TOKEN_LIFETIME


LIFETIME = {"offline_access": 30 * 86400, "online_access": 12 * 3600}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_refresh(config: SmartConfig, client_id: str, username: str, scopes: list[str], access_jti: str,
                  family: str | None = None, expires: float | None = None, launch: Any = None) -> str | None:
    """A new refresh token if the scopes ask for one (a new family, unless `family` and its `expires` are
    given); None otherwise. An EHR launch's context (`launch.LaunchContext`) goes with it to every refresh."""
    kind = next((s for s in ("offline_access", "online_access") if s in scopes), None)
    if kind is None:
        return None
    token, store, now = secrets.token_urlsafe(32), config.store, time.time()
    with store.write_cursor() as cur:
        cur.execute(store.sql("INSERT INTO security_refresh (token_hash, family, client_id, username, scope, expires, "
                              "access_jti, used, issued, launch) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)"),
                    (_digest(token), family or secrets.token_urlsafe(16), client_id, username, " ".join(scopes),
                     expires if expires is not None else now + LIFETIME[kind], access_jti, now,
                     launch.dumps() if launch is not None else None))
        if secrets.randbelow(64) == 0:  # housekeeping: families past their end can no longer be redeemed
            cur.execute(store.sql("DELETE FROM security_refresh WHERE expires < ?"), (now - 86400,))
    return token


def redeem_refresh(config: SmartConfig, form: dict[str, str]) -> dict[str, Any]:
    """`grant_type=refresh_token`: the next access and refresh tokens, or an OAuthError."""
    client = requesting_client(config, form)
    raw = form.get("refresh_token")
    if not raw:
        raise OAuthError("invalid_request", "refresh_token is required")
    store, now = config.store, time.time()
    with store.write_cursor() as cur:
        cur.execute(store.sql("UPDATE security_refresh SET used = ? WHERE token_hash = ? AND used IS NULL "
                              "RETURNING family, client_id, username, scope, expires, launch"), (now, _digest(raw)))
        row = cur.fetchone()
        if row is None:
            cur.execute(store.sql("SELECT family FROM security_refresh WHERE token_hash = ?"), (_digest(raw),))
            used = cur.fetchone()
    if row is None:
        if used is not None:  # a used token presented again was copied, whoever presents it
            end_family(config, used[0])
            raise OAuthError("invalid_grant", "the refresh token was used before: it was copied, so the sign-in "
                                              "it came from is ended; sign in again")
        raise OAuthError("invalid_grant", "unknown or expired refresh token")
    family, client_id, username, scope, expires, launch_text = row
    if client_id != client.client_id:
        end_family(config, family)  # a token in the wrong client's hands is as good as stolen
        raise OAuthError("invalid_grant", "the refresh token was issued to another client")
    if now > expires:
        raise OAuthError("invalid_grant", "the sign-in this refresh token came from has expired; sign in again")
    user = get_user(store, username)
    if user is None:
        raise OAuthError("invalid_grant", "the user is disabled or no longer exists")
    granted = split_scopes(scope)
    requested = split_scopes(form.get("scope")) or granted
    if not set(requested) <= set(granted):
        raise OAuthError("invalid_scope", "a refresh can narrow the scopes granted at sign-in, not widen them")
    jti = secrets.token_urlsafe(16)
    launch = LaunchContext.loads(launch_text)
    body = user_tokens(config, user, client, requested, jti, launch)
    # The next token keeps the granted scopes (a narrowed refresh does not shrink the sign-in), the family's end
    # and the launch context.
    body["refresh_token"] = issue_refresh(config, client.client_id, username, granted, jti, family, expires, launch)
    return body


def end_family(config: SmartConfig, family: str) -> None:
    """Marks every refresh token of the family used and revokes the access tokens they issued that may still
    be live (those of the last MAX_TOKEN_LIFETIME: older ones have expired), in one transaction."""
    store, now = config.store, time.time()
    with store.write_cursor() as cur:
        cur.execute(store.sql("UPDATE security_refresh SET used = ? WHERE family = ? AND used IS NULL"), (now, family))
        cur.execute(store.sql("SELECT access_jti FROM security_refresh WHERE family = ? AND access_jti IS NOT NULL "
                              "AND issued >= ?"), (family, now - MAX_TOKEN_LIFETIME - 60))
        jtis = [r[0] for r in cur.fetchall()]
    config.tokens.revocations.revoke_all(jtis, now + MAX_TOKEN_LIFETIME)


def revoke_refresh(config: SmartConfig, client_id: str, raw: str) -> bool:
    """Ends the family of a refresh token issued to `client_id`; False if it is not one of theirs."""
    rows = config.store.query("SELECT family, client_id FROM security_refresh WHERE token_hash = ?", [_digest(raw)])
    if not rows or rows[0][1] != client_id:
        return False
    end_family(config, rows[0][0])
    return True


# -- a person's own sessions ----------------------------------------------------------------------------------------
def sessions_of(config: SmartConfig, username: str) -> list[dict[str, Any]]:
    """The live sign-ins (refresh-token families) of a person: one per app sign-in that can still refresh."""
    rows = config.store.query(
        "SELECT family, client_id, scope, expires, min(issued) FROM security_refresh WHERE username = ? "
        "GROUP BY family, client_id, scope, expires HAVING max(CASE WHEN used IS NULL THEN 1 ELSE 0 END) = 1 "
        "AND expires > ? ORDER BY min(issued)", [username, time.time()])
    out = []
    for family, client_id, scope, expires, issued in rows:
        client = get_client(config.store, client_id)
        out.append({"id": family, "client_id": client_id, "client_name": client.name if client else None,
                    "scope": scope, "started": instant(issued or 0.0), "expires": instant(expires)})
    return out


def session_routes(config: SmartConfig) -> list[Route]:
    """GET /auth/sessions and DELETE /auth/sessions/{id}, for a person with their own access token."""

    def person(request: Request) -> Any:
        """The signed-in person, or the refusal as an OAuth-style JSON response."""
        try:
            caller = config.tokens.identify(request)  # 401 for a missing, invalid or revoked token
        except FHIRError as exc:
            return JSONResponse({"error": "invalid_token", "error_description": exc.diagnostics}, exc.status,
                                headers={**NO_STORE, **(exc.headers or {})})
        if caller.kind == "anonymous":
            return JSONResponse({"error": "invalid_token", "error_description": "send your access token"}, 401,
                                headers={**NO_STORE, "www-authenticate": 'Bearer realm="healthtwin"'})
        if caller.kind != "person" or caller.issuer != config.tokens.issuer or not caller.subject:
            return JSONResponse({"error": "insufficient_scope", "error_description": "sessions are a signed-in "
                                 "person's own (send that person's access token)"}, 403, headers=NO_STORE)
        return caller

    async def listing(request: Request) -> Response:
        caller = person(request)
        if isinstance(caller, Response):
            return caller
        found = await run_in_threadpool(sessions_of, config, caller.subject)
        return JSONResponse({"sessions": found}, headers=NO_STORE)

    async def end(request: Request) -> Response:
        caller = person(request)
        if isinstance(caller, Response):
            return caller
        family = request.path_params["family"]
        mine = await run_in_threadpool(config.store.query, "SELECT client_id FROM security_refresh WHERE family = ? "
                                       "AND username = ? LIMIT 1", [family, caller.subject])
        if not mine:  # someone else's and absent answer alike
            return JSONResponse({"error": "not_found", "error_description": "no such session of yours"}, 404,
                                headers=NO_STORE)
        await run_in_threadpool(end_family, config, family)
        await run_in_threadpool(record_or_log, config.audit, auth_event(
            "logout", True, caller.subject, client_id=mine[0][0], description="an app's sign-in ended by the person"))
        return Response(status_code=204, headers=NO_STORE)

    return [Route("/auth/sessions", listing, methods=["GET"]),
            Route("/auth/sessions/{family}", end, methods=["DELETE"])]
