"""Revoking access tokens before they expire, and telling relying parties whether a token is live.

* `clients.Revocations`: revoked token ids (`jti`) in the `security_revoked` table, mirrored in each server
  process and checked on every request (`TokenService.identify`). A process learns of other processes'
  revocations within SYNC_SECONDS: one indexed query per second at most, instead of one per request.
* `POST /auth/revoke` (RFC 7009): a client revokes a token issued to it (logout, a lost device). The client
  authenticates as at the token endpoint: a client assertion if it is confidential, its `client_id` if public.
  The answer is 200 whether or not the token was valid, as the RFC asks, so it reveals nothing.
* `POST /auth/introspect` (RFC 7662): a confidential client (a resource server of another institution) asks
  whether a token is active, and gets its claims. Expired, revoked, forged or foreign tokens are all just
  `{"active": false}`.
* An authorization code used twice revokes the token issued for it (RFC 6749 section 4.1.2): the second use
  means the code leaked, and whoever redeemed it first may be the attacker (smart.py, `_authorization_code`).

Revocations live as long as the tokens they stop (at most an hour); older rows are deleted.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth_audit import auth_event, record_or_log
from .clients import Client
from .smart import OAuthError, SmartConfig, form_endpoint, requesting_client
from .tokens import TokenError


# -- endpoints -----------------------------------------------------------------------------------------------------
def revoke_token(config: SmartConfig, form: dict[str, str]) -> None:
    client = requesting_client(config, form)
    token = form.get("token")
    if not token:
        raise OAuthError("invalid_request", "token is required")
    if "." not in token or form.get("token_type_hint") == "refresh_token":  # refresh tokens are opaque
        from .refresh import revoke_refresh
        if revoke_refresh(config, client.client_id, token):
            _audit_logout(config, None, client.client_id, "a refresh token's sign-in ended by its client")
        return
    try:
        claims, external = config.tokens.verify(token)
    except TokenError:
        return  # invalid, expired or not ours: nothing to revoke (RFC 7009 2.2: answered 200 all the same)
    if external is not None:
        return
    if claims.get("client_id") != client.client_id:
        raise OAuthError("unauthorized_client", "the token was issued to another client")
    config.tokens.revocations.revoke(claims["jti"], float(claims["exp"]))
    _audit_logout(config, claims.get("sub"), client.client_id, f"token {claims['jti']} revoked by its client")


def _audit_logout(config: SmartConfig, who: str | None, client_id: str, description: str) -> None:
    record_or_log(config.audit, auth_event("logout", True, who or client_id, client_id=client_id,
                                           description=description))


def introspect_token(config: SmartConfig, form: dict[str, str]) -> dict[str, Any]:
    client: Client = requesting_client(config, form)
    if not client.confidential:
        raise OAuthError("invalid_client", "introspection is for clients that authenticate with an assertion")
    token = form.get("token")
    if not token:
        raise OAuthError("invalid_request", "token is required")
    try:
        claims, external = config.tokens.verify(token)
    except TokenError:
        return {"active": False}
    if external is not None or config.tokens.revocations.refuses(config.tokens.our_caller(claims)):
        return {"active": False}
    body = {"active": True, "token_type": "Bearer", **{k: claims[k] for k in (
        "scope", "client_id", "sub", "iss", "aud", "exp", "iat", "jti") if k in claims}}
    if claims.get("client_id") == client.client_id:  # the launch context only to the app it was issued to
        body.update({k: claims[k] for k in ("patient", "fhirUser") if k in claims})
    return body


def revocation_routes(config: SmartConfig) -> list[Route]:
    """/auth/revoke and /auth/introspect; the token service must have its `revocations`."""

    async def revoke(request: Request) -> Response:
        return await form_endpoint(config, request, lambda form: revoke_token(config, form))

    async def introspect(request: Request) -> Response:
        return await form_endpoint(config, request, lambda form: introspect_token(config, form))

    return [Route("/auth/revoke", revoke, methods=["POST"]),
            Route("/auth/introspect", introspect, methods=["POST"])]


__all__ = ["revocation_routes", "revoke_token", "introspect_token"]
