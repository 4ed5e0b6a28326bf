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
"""
from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from .clients import get_user, split_scopes
from .smart import OAuthError, SmartConfig, requesting_client, user_tokens
from .tokens import MAX_TOKEN_LIFETIME

LIFETIME = {"offline_access": 30 * 86400, "online_access": 12 * 3600}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_refresh(config: SmartConfig, client_id: str, username: str, scopes: list[str], access_jti: str,
                  family: str | None = None, expires: float | None = None) -> str | None:
    """A new refresh token if the scopes ask for one (a new family, unless `family` and its `expires` are
    given); None otherwise."""
    kind = next((s for s in ("offline_access", "online_access") if s in scopes), None)
    if kind is None:
        return None
    token, store, now = secrets.token_urlsafe(32), config.store, time.time()
    with store.write_cursor() as cur:
        cur.execute(store.sql("INSERT INTO security_refresh (token_hash, family, client_id, username, scope, expires, "
                              "access_jti, used) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)"),
                    (_digest(token), family or secrets.token_urlsafe(16), client_id, username, " ".join(scopes),
                     expires if expires is not None else now + LIFETIME[kind], access_jti))
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
                              "RETURNING family, client_id, username, scope, expires"), (now, _digest(raw)))
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
    family, client_id, username, scope, expires = row
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
    body = user_tokens(config, user, client, requested, jti)
    # The next token keeps the granted scopes (a narrowed refresh does not shrink the sign-in) and the family's end.
    body["refresh_token"] = issue_refresh(config, client.client_id, username, granted, jti, family, expires)
    return body


def end_family(config: SmartConfig, family: str) -> None:
    """Marks every refresh token of the family used and revokes the access tokens they issued."""
    store, now = config.store, time.time()
    with store.write_cursor() as cur:
        cur.execute(store.sql("UPDATE security_refresh SET used = ? WHERE family = ? AND used IS NULL"), (now, family))
        cur.execute(store.sql("SELECT access_jti FROM security_refresh WHERE family = ? AND access_jti IS NOT NULL"),
                    (family,))
        jtis = [r[0] for r in cur.fetchall()]
    for jti in jtis:  # access tokens live an hour at most: revoked that long
        config.tokens.revocations.revoke(jti, now + MAX_TOKEN_LIFETIME)


def revoke_refresh(config: SmartConfig, client_id: str, raw: str) -> bool:
    """Ends the family of a refresh token issued to `client_id`; False if it is not one of theirs."""
    rows = config.store.query("SELECT family, client_id FROM security_refresh WHERE token_hash = ?", [_digest(raw)])
    if not rows or rows[0][1] != client_id:
        return False
    end_family(config, rows[0][0])
    return True
