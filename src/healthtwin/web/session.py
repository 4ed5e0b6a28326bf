"""The browser session: the person's access token in an HttpOnly, SameSite=Strict cookie that the browser
drops when it closes (no Max-Age), never in a URL or in anything a script can read; a CSRF token derived from
it for every form; the sign-in's PKCE verifier and state in a second short-lived cookie.

Why the token itself rather than a session id: every server worker can then serve the session without a
shared session table, and the token's own expiry (one hour) ends the session: a page after it asks to sign in
again. The CSRF token is an HMAC of a fixed label keyed by the access token: a page on another site can neither
read the cookie nor compute the form token, and SameSite=Strict keeps the cookie off its requests anyway."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

SESSION = "ht_session"
LOGIN = "ht_login"
LANG = "ht_lang"
PATH = "/app"
LOGIN_SECONDS = 600


@dataclass(frozen=True)
class Session:
    token: str
    claims: dict[str, Any]

    @property
    def subject(self) -> str:
        return str(self.claims.get("sub") or "")

    @property
    def roles(self) -> set[str]:
        return set(self.claims.get("roles") or ())

    @property
    def patient(self) -> str | None:
        """The person's own record id (a citizen), from the token's patient claim."""
        ref = self.claims.get("patient") or ""
        return ref.split("/", 1)[1] if ref.startswith("Patient/") else (ref or None)

    @property
    def organization(self) -> str | None:
        return self.claims.get("organization")

    @property
    def expires(self) -> float:
        return float(self.claims.get("exp") or 0)

    @property
    def persona(self) -> str:
        roles = self.roles
        if "citizen" in roles:
            return "citizen"
        if "clinician" in roles:
            return "clinician"
        if roles & {"analyst", "administrator"}:
            return "ministry"
        if "epidemiologist" in roles:  # the alerts page of the dashboard, not the indicators (analytics)
            return "epidemiology"
        return "other"

    def csrf(self) -> str:
        return hmac.new(self.token.encode("ascii"), b"healthtwin-web-csrf", hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf(), sent or "")


def claims_of(token: str) -> dict[str, Any] | None:
    """The token's claims as read for display and expiry only: the API verifies the signature on every call."""
    try:
        part = token.split(".")[1]
        return orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return None


def current(request: Request) -> Session | None:
    """The session of this request, None if there is none or it has expired."""
    token = request.cookies.get(SESSION)
    if not token or len(token) > 8192 or not token.isascii():
        return None
    claims = claims_of(token)
    if not claims or float(claims.get("exp") or 0) <= time.time():
        return None
    return Session(token, claims)


def expired(request: Request) -> bool:
    """A session cookie is there but its token has expired: the page says so rather than just "sign in"."""
    return bool(request.cookies.get(SESSION)) and current(request) is None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def start(response: Response, request: Request, token: str) -> None:
    response.set_cookie(SESSION, token, path=PATH, httponly=True, samesite="strict", secure=_secure(request))
    response.delete_cookie(LOGIN, path=PATH)


def end(response: Response) -> None:
    response.delete_cookie(SESSION, path=PATH)


# -- the sign-in under way --------------------------------------------------------------------------------------
def new_login() -> tuple[str, str, str]:
    """(state, PKCE verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return secrets.token_urlsafe(24), verifier, challenge


def remember_login(response: Response, request: Request, state: str, verifier: str, after: str) -> None:
    value = base64.urlsafe_b64encode(orjson.dumps([state, verifier, after])).decode()
    response.set_cookie(LOGIN, value, max_age=LOGIN_SECONDS, path=PATH, httponly=True, samesite="lax",
                        secure=_secure(request))


def login_under_way(request: Request) -> tuple[str, str, str] | None:
    raw = request.cookies.get(LOGIN)
    if not raw or len(raw) > 2048:
        return None
    try:
        state, verifier, after = orjson.loads(base64.urlsafe_b64decode(raw.encode("ascii")))
    except (ValueError, orjson.JSONDecodeError, TypeError):
        return None
    return str(state), str(verifier), safe_next(str(after))


def safe_next(path: str | None) -> str:
    """Only a page of ours to go back to after signing in: never another site (an open redirect)."""
    if not path or not path.startswith(PATH + "/") and path != PATH or path.startswith("//") or "\\" in path:
        return PATH + "/"
    return path
