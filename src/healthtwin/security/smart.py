"""SMART on FHIR authorization: discovery, our JWKS, the token endpoint and a minimal login page.

Two ways in:
* Backend Services (systems): `client_credentials` with a `private_key_jwt` client assertion signed by a key
  the client registered. Checks, in this order: algorithm allow-list, iss == sub == client_id, known client
  and kid, signature, aud == our token endpoint, exp present and at most 5 minutes ahead, and only THEN the
  jti is recorded (so forged assertions cannot burn a client's jtis), then requested scopes ⊆ allowed.
* Authorization code + PKCE (people): `/auth/authorize` shows a login form, issues a 60-second one-time code
  bound to client, redirect URI and S256 challenge; the code is consumed atomically (DELETE ... RETURNING), so
  a second use fails even under a race — and a wrong verifier burns the code.

URLs in tokens and checks come from the configured public URL, never from the request's Host header: an
assertion made for another server must not become valid here because someone sent `Host: other-server`.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .audit import AuditError
from .auth_audit import auth_event, record, record_or_log
from .clients import Client, Revocations, claim_jti, get_client, get_user, parse_scope, scope_permitted, \
    split_scopes, verify_password, ensure_security_schema
from .keys import b64url
from .ratelimit import RateLimiter
from .tokens import MAX_TOKEN_LIFETIME, TokenError, TokenService, unverified_claims, unverified_header, verify_signed

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_RATE = (5.0, 30.0)  # token requests per second and burst, per address
LOGIN_RATE = (5 / 60, 5.0)  # login attempts: five, then one every twelve seconds, per user and per address
ASSERTION_ALGS = ("RS384", "ES384", "RS256", "ES256")
MAX_FORM_BYTES = 64 * 1024
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
HTML_HEADERS = {**NO_STORE, "x-frame-options": "DENY", "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer",
                # No form-action: browsers apply it to the redirect that follows the login POST.
                "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"}
_CHALLENGE_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_VERIFIER_RE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


@dataclass
class SmartConfig:
    store: Any
    tokens: TokenService
    public_url: str  # scheme://host[:port] as clients reach us, e.g. https://twin.example
    fhir_path: str = "/fhir"
    assertion_max_ahead: float = 300  # SMART: a client assertion's exp is at most five minutes in the future
    clock_skew: float = 10
    code_lifetime: float = 60
    audit: Any = None  # security.audit.AuditLog: sign-ins and tokens recorded (auth_audit.py); None in bare tests
    token_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(*TOKEN_RATE))
    login_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(*LOGIN_RATE))

    def __post_init__(self) -> None:
        self.public_url = self.public_url.rstrip("/")
        if self.tokens.revocations is None:  # revoked tokens are refused wherever this token service checks
            self.tokens.revocations = Revocations(self.store)

    def share_limits(self, folder: Path) -> None:
        """Token and login limits kept in files in `folder`, shared by every worker process that opens them."""
        self.token_limiter = RateLimiter(*TOKEN_RATE, path=folder / "token.buckets")
        self.login_limiter = RateLimiter(*LOGIN_RATE, path=folder / "login.buckets")

    @property
    def token_endpoint(self) -> str:
        return self.public_url + "/auth/token"

    @property
    def fhir_base(self) -> str:
        return self.public_url + self.fhir_path


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.error, self.description = error, description
        self.status = status or (401 if error == "invalid_client" else 400)
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "error_description": self.description}, self.status,
                            headers={**NO_STORE, **self.headers})


# -- discovery --------------------------------------------------------------------------------------------------
def smart_configuration(config: SmartConfig) -> dict[str, Any]:
    base = config.public_url
    return {
        "issuer": base,
        "jwks_uri": base + "/auth/jwks",
        "authorization_endpoint": base + "/auth/authorize",
        "token_endpoint": config.token_endpoint,
        "revocation_endpoint": base + "/auth/revoke",
        "introspection_endpoint": base + "/auth/introspect",
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
                             "patient/*.rs", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds",
                             "patient/*.read", "user/*.read", "system/*.read"],
        "response_types_supported": ["code"],
        "capabilities": ["launch-standalone", "launch-ehr", "client-public", "client-confidential-asymmetric",
                         "client-confidential-symmetric",
                         "permission-v2", "permission-v1", "permission-patient", "permission-user",
                         "sso-openid-connect", "context-standalone-patient", "context-ehr-patient",
                         "context-ehr-encounter", "permission-offline", "permission-online"],
        "code_challenge_methods_supported": ["S256"],
    }


def openid_configuration(config: SmartConfig) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 for the same endpoints: what a relying party that signs people in through
    this server reads (the SMART document above is for SMART apps, and lacks the fields OpenID requires)."""
    smart = smart_configuration(config)
    return {
        "issuer": smart["issuer"], "authorization_endpoint": smart["authorization_endpoint"],
        "token_endpoint": smart["token_endpoint"], "jwks_uri": smart["jwks_uri"],
        "revocation_endpoint": smart["revocation_endpoint"], "introspection_endpoint": smart["introspection_endpoint"],
        "response_types_supported": ["code"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"], "grant_types_supported": smart["grant_types_supported"],
        "scopes_supported": ["openid", "profile", "fhirUser", "launch/patient", "offline_access"],
        # public clients (PKCE alone), keys (private_key_jwt) and secrets (kept as scrypt hashes)
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt", "client_secret_basic",
                                                  "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser", "fin"],
        "code_challenge_methods_supported": ["S256"], "ui_locales_supported": ["az", "ru", "en"],
    }


# -- client authentication (private_key_jwt) -----------------------------------------------------------------------
def authenticate_client(config: SmartConfig, assertion: str | None, claimed_id: str | None) -> Client:
    if not assertion:
        raise OAuthError("invalid_client", "client_assertion is required")
    try:
        header = unverified_header(assertion, ASSERTION_ALGS)
        claims = unverified_claims(assertion)
    except TokenError as exc:
        raise OAuthError("invalid_client", str(exc)) from None
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or iss != sub:
        raise OAuthError("invalid_client", "iss and sub must both be the client_id")
    if claimed_id is not None and claimed_id != iss:
        raise OAuthError("invalid_client", "client_id does not match the assertion")
    client = get_client(config.store, iss)
    if client is None or not client.confidential:
        raise OAuthError("invalid_client", "unknown client")
    jwk = client.key(header["kid"])
    if jwk is None:
        raise OAuthError("invalid_client", "unknown kid")
    try:
        verified = verify_signed(assertion, jwk, header["alg"], client.client_id, config.token_endpoint,
                                 config.clock_skew, ("iss", "sub", "aud", "exp", "jti"))
    except TokenError as exc:
        raise OAuthError("invalid_client", f"client assertion refused: {exc}") from None
    exp, jti = verified["exp"], verified["jti"]
    if verified["sub"] != client.client_id:
        raise OAuthError("invalid_client", "sub must be the client_id")
    if not isinstance(exp, (int, float)) or exp > time.time() + config.assertion_max_ahead + config.clock_skew:
        raise OAuthError("invalid_client", "exp must be at most 5 minutes in the future")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise OAuthError("invalid_client", "jti must be a string of at most 256 characters")
    if not claim_jti(config.store, client.client_id, jti, float(exp) + config.clock_skew):
        raise OAuthError("invalid_client", "jti already used (replayed assertion)")
    return client


# -- token endpoint -------------------------------------------------------------------------------------------------
def token_exchange(config: SmartConfig, form: dict[str, str]) -> dict[str, Any]:
    grant = form.get("grant_type")
    if grant == "client_credentials":
        return _client_credentials(config, form)
    if grant == "authorization_code":
        return _authorization_code(config, form)
    if grant == "refresh_token":
        from .refresh import redeem_refresh
        return redeem_refresh(config, form)
    raise OAuthError("unsupported_grant_type",
                     "grant_type must be client_credentials, authorization_code or refresh_token")


def _client_credentials(config: SmartConfig, form: dict[str, str]) -> dict[str, Any]:
    if form.get("client_assertion_type") != JWT_BEARER:
        raise OAuthError("invalid_client", f"client_assertion_type must be {JWT_BEARER}")
    client = authenticate_client(config, form.get("client_assertion"), form.get("client_id"))
    requested = split_scopes(form.get("scope"))
    if not requested:
        raise OAuthError("invalid_scope", "scope is required")
    for scope in requested:
        parsed = parse_scope(scope)
        if parsed is None or parsed[0] != "system":
            raise OAuthError("invalid_scope", f"backend services may request system/ scopes only, not {scope}")
        if not scope_permitted(scope, client.scopes):
            raise OAuthError("invalid_scope", f"scope {scope} is beyond what this client is allowed")
    purpose = _purpose(form, client.roles)
    token, life = config.tokens.mint(client.client_id, "system", requested, roles=client.roles,
                                     client_id=client.client_id, organization=client.organization, purpose=purpose)
    body = {"access_token": token, "token_type": "bearer", "expires_in": life, "scope": " ".join(requested)}
    if purpose:
        body["purpose_of_use"] = purpose
    return body


def _purpose(form: dict[str, str], roles: Any) -> str | None:
    """A purpose of use the client asks its token to carry (IHE IUA): one its role may state (access.PURPOSES).
    Every request made with the token then states it, and may state no other (routing.py)."""
    code = form.get("purpose_of_use")
    if code is None:
        return None
    from ..request import PURPOSE_CODE
    from .access import PURPOSES, primary_role
    allowed = PURPOSES.get(primary_role(roles) or "", ())
    if not PURPOSE_CODE.match(code) or code not in allowed:
        raise OAuthError("invalid_request", f"purpose_of_use {code[:16]!r} is not one this client's role may state"
                         + (f" ({', '.join(allowed)})" if allowed else ""))
    return code


def _authorization_code(config: SmartConfig, form: dict[str, str]) -> dict[str, Any]:
    code, verifier, redirect_uri = form.get("code"), form.get("code_verifier"), form.get("redirect_uri")
    if not code or not redirect_uri:
        raise OAuthError("invalid_request", "code and redirect_uri are required")
    store = config.store
    # Redeemed first, whatever happens next: a code is tried once, so a wrong verifier cannot be retried. The
    # row stays, holding the id of the token it is redeemed for, until it is swept an hour after expiring: a
    # code that comes back leaked, and the token issued for it is revoked (RFC 6749 section 4.1.2).
    jti = secrets.token_urlsafe(16)
    with store.write_cursor() as cur:
        cur.execute(store.sql("UPDATE security_codes SET token_jti = ? WHERE code_hash = ? AND token_jti IS NULL "
                              "RETURNING client_id, redirect_uri, challenge, username, scope, nonce, expires, launch"),
                    (jti, _digest(code)))
        row = cur.fetchone()
        if row is None:
            cur.execute(store.sql("SELECT token_jti FROM security_codes WHERE code_hash = ?"), (_digest(code),))
            used = cur.fetchone()
    if row is None:
        if used is not None:
            config.tokens.revocations.revoke(used[0], time.time() + MAX_TOKEN_LIFETIME)
            raise OAuthError("invalid_grant", "the code was used before; the token issued for it is revoked")
        raise OAuthError("invalid_grant", "unknown or expired code")
    client_id, bound_uri, challenge, username, scope, nonce, expires, launch_text = row
    client = requesting_client(config, form)
    if client.client_id != client_id:
        raise OAuthError("invalid_grant", "the code was issued to another client")
    if time.time() > expires:
        raise OAuthError("invalid_grant", "the code expired")
    if redirect_uri != bound_uri:
        raise OAuthError("invalid_grant", "redirect_uri differs from the one the code was issued for")
    if not verifier or not _VERIFIER_RE.match(verifier):
        raise OAuthError("invalid_grant", "code_verifier is missing or malformed")
    if not hmac.compare_digest(b64url(hashlib.sha256(verifier.encode("ascii")).digest()), challenge):
        raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
    user = get_user(store, username)
    if user is None:
        raise OAuthError("invalid_grant", "the user no longer exists")
    scopes = split_scopes(scope)
    from .launch import LaunchContext
    launch = LaunchContext.loads(launch_text)
    body = user_tokens(config, user, client, scopes, jti, launch)
    if "openid" in scopes:
        body["id_token"] = config.tokens.mint_id_token(user.username, client.client_id, nonce,
                                                       user.practitioner or user.patient if "fhirUser" in scopes
                                                       else None, profile_claims(config, user, scopes))
    from .refresh import issue_refresh
    refresh = issue_refresh(config, client.client_id, user.username, scopes, jti, launch=launch)
    if refresh is not None:
        body["refresh_token"] = refresh
    return body


def profile_claims(config: SmartConfig, user: Any, scopes: list[str]) -> dict[str, Any]:
    """What the `profile` scope adds to a citizen's id_token: their FIN (the national identification number
    of the Patient the account is linked to), so that another service this server signs people in for can
    find the same person in its own records (oidc_login.py is that service's side)."""
    if "profile" not in scopes or not (user.patient or "").startswith("Patient/"):
        return {}
    from .access import FIN_SYSTEM
    stored = config.store.read("Patient", user.patient.split("/", 1)[1])
    patient = orjson.loads(stored.content) if stored is not None and stored.content else {}
    fins = [i["value"] for i in patient.get("identifier") or () if isinstance(i, dict)
            and i.get("system") == FIN_SYSTEM and isinstance(i.get("value"), str)
            and not (i.get("period") or {}).get("end")]
    return {"fin": fins[0]} if fins else {}


def user_tokens(config: SmartConfig, user: Any, client: Client, scopes: list[str], jti: str,
                launch: Any = None) -> dict[str, Any]:
    """The token response for a person signed in through an app: an access token with id `jti` and the
    launch context: an EHR launch's patient and encounter (`launch.LaunchContext`), or else the person's own
    record for patient-context scopes."""
    if launch is not None:
        patient = launch.patient
    else:
        patient = user.patient if any(s.startswith("patient/") or s == "launch/patient" for s in scopes) else None
    token, life = config.tokens.mint(user.username, "person", scopes, roles=user.roles, client_id=client.client_id,
                                     organization=user.organization, patient=patient,
                                     fhir_user=user.practitioner or user.patient, jti=jti)
    body: dict[str, Any] = {"access_token": token, "token_type": "bearer", "expires_in": life,
                            "scope": " ".join(scopes)}
    if launch is not None:
        body.update(launch.response_fields())
    elif patient:
        body["patient"] = patient.split("/", 1)[1]
    return body


def requesting_client(config: SmartConfig, form: dict[str, str]) -> Client:
    """The client making a token, revocation or introspection request: authenticated by its assertion if it
    sends one (and it must, if it is confidential), else a public client named by `client_id`."""
    if form.get("client_assertion") is not None or form.get("client_assertion_type") is not None:
        if form.get("client_assertion_type") != JWT_BEARER:
            raise OAuthError("invalid_client", f"client_assertion_type must be {JWT_BEARER}")
        return authenticate_client(config, form.get("client_assertion"), form.get("client_id"))
    client = get_client(config.store, form.get("client_id") or "")
    if form.get("client_secret") is not None:  # client_secret_basic (moved into the form) or _post
        if form.get("client_assertion") is not None:
            raise OAuthError("invalid_request", "use one way of authenticating the client")
        if client is None or not client.secret_ok(form["client_secret"]):
            raise OAuthError("invalid_client", "unknown client or wrong client secret")
        return client
    if client is None:
        raise OAuthError("invalid_client", "unknown client")
    if client.confidential:
        raise OAuthError("invalid_client", "this client must authenticate with a client assertion")
    if client.has_secret:
        raise OAuthError("invalid_client", "this client must authenticate with its client secret")
    return client


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


# -- authorization endpoint ----------------------------------------------------------------------------------------
class PageError(Exception):
    """An error shown on our own page: the redirect URI is not (yet) trusted, so we must not redirect to it."""


@dataclass
class AuthRequest:
    client: Client
    redirect_uri: str
    state: str
    scopes: list[str]
    challenge: str
    nonce: str | None
    params: dict[str, str]
    launch: Any = None  # launch.LaunchContext of an EHR launch (peeked: used up when the code is issued)


def _redirect(uri: str, params: dict[str, str]) -> RedirectResponse:
    sep = "&" if "?" in uri else "?"
    return RedirectResponse(uri + sep + urlencode(params), status_code=303, headers=NO_STORE)


class RedirectError(Exception):
    def __init__(self, uri: str, error: str, description: str, state: str | None) -> None:
        super().__init__(description)
        params = {"error": error, "error_description": description}
        if state:
            params["state"] = state
        self.uri, self.params = uri, params


def validate_authorize(config: SmartConfig, params: dict[str, str]) -> AuthRequest:
    client = get_client(config.store, params.get("client_id") or "")
    if client is None or not client.redirect_uris:
        raise PageError("Unknown application (client_id).")
    uri = params.get("redirect_uri") or ""
    # Exact string comparison only: prefix, suffix, case, path-traversal and added-query tricks all fail.
    if not any(hmac.compare_digest(uri.encode(), r.encode()) for r in client.redirect_uris):
        raise PageError("The redirect_uri is not registered for this application.")
    state = params.get("state") or ""
    if params.get("response_type") != "code":
        raise RedirectError(uri, "unsupported_response_type", "response_type must be code", state)
    if not state or len(state) > 512:
        raise RedirectError(uri, "invalid_request", "state is required (at most 512 characters)", None)
    if params.get("code_challenge_method") != "S256" or not _CHALLENGE_RE.match(params.get("code_challenge") or ""):
        raise RedirectError(uri, "invalid_request", "PKCE with code_challenge_method=S256 is required", state)
    if params.get("aud") is not None and params["aud"].rstrip("/") != config.fhir_base:
        raise RedirectError(uri, "invalid_request", "aud is not this FHIR server", state)
    scopes = [s for s in split_scopes(params.get("scope")) if scope_permitted(s, client.scopes)]
    if not scopes:
        raise RedirectError(uri, "invalid_scope", "none of the requested scopes is allowed", state)
    launch = None
    if params.get("launch") is not None or "launch" in scopes:
        # An EHR launch: the value the EHR handed the app, and the scope that asks for its context.
        from .launch import peek_launch
        if "launch" not in scopes or not params.get("launch"):
            raise RedirectError(uri, "invalid_request", "an EHR launch needs both the launch parameter and the "
                                "launch scope (registered for this app)", state)
        launch = peek_launch(config, params["launch"], client.client_id)
        if launch is None:
            raise RedirectError(uri, "invalid_request", "the launch is unknown, expired, used, or made for "
                                "another app", state)
    nonce = params.get("nonce")
    return AuthRequest(client, uri, state, scopes, params["code_challenge"], nonce[:256] if nonce else None,
                       {k: params[k] for k in _AUTH_PARAMS if params.get(k) is not None}, launch)


_AUTH_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
                "code_challenge_method", "aud", "nonce", "launch", "ui_locales")


_PAGE_STYLE = ("body{font-family:system-ui,sans-serif;max-width:30em;margin:2em auto;padding:0 1em;line-height:1.5;"
               "color:#1b1b1b}label{display:block;font-weight:600;margin-top:.6em}input{font:inherit;padding:.4em;"
               "min-height:44px;width:100%;box-sizing:border-box;border:1px solid #767676;border-radius:4px}"
               "button{font:inherit;padding:.5em 1em;min-height:44px;background:#123f7a;color:#fff;border:0;"
               "border-radius:4px;margin-top:1em}.alert{color:#a4262c;font-weight:600}"
               ":focus-visible{outline:3px solid #c25e00;outline-offset:2px}")
_PAGE_STYLE_HASH = __import__("base64").b64encode(hashlib.sha256(_PAGE_STYLE.encode()).digest()).decode()
# The sign-in page's own stylesheet by its hash: no other style, no script (and no form-action: browsers apply
# it to the redirect that follows the login POST).
HTML_HEADERS = {**HTML_HEADERS, "content-security-policy": f"default-src 'none'; style-src 'sha256-{_PAGE_STYLE_HASH}'; "
                "base-uri 'none'; frame-ancestors 'none'"}


def _page_lang(req: "AuthRequest | None", request: Request | None) -> str:
    from .scope_words import choose
    return choose(req.params.get("ui_locales") if req else None,
                  request.headers.get("accept-language") if request is not None else None)


def _login_page(req: AuthRequest, message: str | None = None, status: int = 200, lang: str = "az") -> HTMLResponse:
    """The sign-in and consent page: what the application asks for in plain words (scope_words.py), in the
    language the application asked for (ui_locales) or the browser prefers."""
    from .scope_words import describe_all, word
    e = html.escape
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in req.params.items())
    note = f'<p role="alert" class="alert">{e(message)}</p>' if message else ""
    context = ""
    if req.launch:
        whom = req.launch.patient + (f" ({req.launch.encounter})" if req.launch.encounter else "")
        context = f"<p>{e(word(lang, 'launch', patient=whom))}</p>"
    asks = "".join(f"<li>{e(text)}</li>" for text in describe_all(req.scopes, lang))
    body = (f"<!doctype html><html lang={lang}><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{e(word(lang, 'title'))} · Health Twin</title><style>{_PAGE_STYLE}</style></head><body><main>"
            f"<h1>{e(word(lang, 'title'))}</h1><p>{e(word(lang, 'asks', app=req.client.name))}</p><ul>{asks}</ul>"
            f"{context}{note}<form method=post action='/auth/authorize'>{hidden}"
            f"<label for=username>{e(word(lang, 'user'))}</label>"
            f"<input id=username name=username autocomplete=username required>"
            f"<label for=password>{e(word(lang, 'password'))}</label>"
            f"<input id=password name=password type=password autocomplete=current-password required>"
            f"<button type=submit>{e(word(lang, 'submit'))}</button></form></main></body></html>")
    return HTMLResponse(body, status, headers=HTML_HEADERS)


def _error_page(message: str, lang: str = "en") -> HTMLResponse:
    from .scope_words import word
    title = html.escape(word(lang, "error"))
    return HTMLResponse(f"<!doctype html><html lang={lang}><meta charset=utf-8><title>{title}</title><main><h1>{title}"
                        f"</h1><p>{html.escape(message)}</p></main></html>", 400, headers=HTML_HEADERS)


def _grant_for(user: Any, scopes: list[str], launch: Any = None) -> list[str]:
    """Patient-context scopes need a patient (the person's own record, or an EHR launch's); system scopes
    never go to a person."""
    out = []
    for s in scopes:
        parsed = parse_scope(s)
        if parsed and parsed[0] == "system":
            continue
        if (s == "launch/patient" or (parsed and parsed[0] == "patient")) and not (user.patient or launch):
            continue
        out.append(s)
    return out


def issue_code(config: SmartConfig, req: AuthRequest, user: Any) -> str:
    """A one-time code for the signed-in user; an EHR launch's value is used up here (RedirectError if it
    went meanwhile, or was made by another organization's EHR than the user's)."""
    launch = None
    if req.launch is not None:
        from .launch import take_launch
        if not user.organization or user.organization != req.launch.organization:
            raise RedirectError(req.redirect_uri, "access_denied", "this launch was made by another "
                                "organization's EHR than the one you work for", req.state)
        launch = take_launch(config, req.params["launch"], req.client.client_id)
        if launch is None:
            raise RedirectError(req.redirect_uri, "invalid_request", "the launch is unknown, expired or used",
                                req.state)
    code = secrets.token_urlsafe(32)
    store = config.store
    with store.write_cursor() as cur:
        cur.execute(store.sql("INSERT INTO security_codes (code_hash, client_id, redirect_uri, challenge, username, "
                              "scope, nonce, expires, launch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                    (_digest(code), req.client.client_id, req.redirect_uri, req.challenge, user.username,
                     " ".join(_grant_for(user, req.scopes, launch)), req.nonce, time.time() + config.code_lifetime,
                     launch.dumps() if launch else None))
        cur.execute(store.sql("DELETE FROM security_codes WHERE expires < ?"), (time.time() - 3600,))
    return code


# -- HTTP ----------------------------------------------------------------------------------------------------------
async def read_form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the request as application/x-www-form-urlencoded")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", "request too large", 413)
    form: dict[str, str] = {}
    for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        if key in form:  # RFC 6749 §3.2: parameters must not be repeated (and parsers disagree on which wins)
            raise OAuthError("invalid_request", f"parameter {key} is repeated")
        form[key] = value
    _basic_credentials(request, form)
    return form


def _basic_credentials(request: Request, form: dict[str, str]) -> None:
    """A client's id and secret sent with HTTP Basic (client_secret_basic), moved into the form as
    client_secret_post would send them, so one check (requesting_client) sees both; a client may use one
    method only (RFC 6749 §2.3)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return
    import base64
    import binascii
    from urllib.parse import unquote_plus
    try:
        pair = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "the Basic credentials are not base64 of id:secret") from None
    client_id, sep, secret = pair.partition(":")
    if not sep or "client_secret" in form or "client_assertion" in form:
        raise OAuthError("invalid_request", "use one way of authenticating the client")
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if form.get("client_id", client_id) != client_id:
        raise OAuthError("invalid_client", "client_id does not match the Basic credentials")
    form["client_id"], form["client_secret"] = client_id, secret


def _audit_token(config: SmartConfig, form: dict[str, str], address: str, body: dict[str, Any] | None,
                 error: OAuthError | None) -> None:
    """The token endpoint's AuditEvent: who got a token (from the token just minted), or who asked and why
    it was refused (the claimed client, unverified: it is what the attacker sent). A failure to record a
    refusal is logged, not raised: the refusal stands anyway."""
    grant = form.get("grant_type") or "none"
    if body is not None:
        claims = unverified_claims(body["access_token"])  # ours, minted a moment ago
        record(config.audit, auth_event("login", True, claims.get("sub"), client_id=claims.get("client_id"),
                                        address=address, description=f"token issued ({grant})"))
        return
    claimed = form.get("client_id")
    if not claimed and form.get("client_assertion"):
        try:
            claimed = unverified_claims(form["client_assertion"]).get("iss")
        except TokenError:
            claimed = None
    record_or_log(config.audit, auth_event(
        "login", False, str(claimed) if claimed else None, address=address,
        description=f"token refused ({grant}): {error.error}: {error.description}" if error else grant))


async def form_endpoint(config: SmartConfig, request: Request, work: Any) -> Response:
    """An OAuth endpoint that takes a form (revoke, introspect, launch): rate-limited per address like the
    token endpoint; `work(form)` runs in a thread and returns the JSON body (None: `{}`); OAuth errors answer
    as JSON, and a trail that cannot be written as 503."""
    wait = config.token_limiter.check("addr:" + _address(request))
    if wait is not None:
        return OAuthError("slow_down", "too many requests", 429,
                          {"retry-after": RateLimiter.retry_after_header(wait)}).response()
    try:
        form = await read_form(request)
        body = await run_in_threadpool(work, form)
    except OAuthError as exc:
        return exc.response()
    except AuditError:
        return OAuthError("temporarily_unavailable", "the audit trail could not be written; try again",
                          503).response()
    return JSONResponse(body if body is not None else {}, headers=NO_STORE)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def smart_routes(config: SmartConfig) -> list[Route]:
    """Routes to mount at the application root (before the /fhir Mount, so the FHIR-relative discovery
    document is reachable)."""
    ensure_security_schema(config.store)
    discovery = orjson.dumps(smart_configuration(config))

    async def well_known(request: Request) -> Response:
        return Response(discovery, media_type="application/json", headers={"cache-control": "max-age=3600"})

    openid = orjson.dumps(openid_configuration(config))

    async def openid_well_known(request: Request) -> Response:
        return Response(openid, media_type="application/json", headers={"cache-control": "max-age=3600"})

    async def jwks(request: Request) -> Response:
        config.tokens.refresh_keys()  # a rotation is published within seconds, not at the next restart
        # Cached briefly: after a rotation, relying parties see the new key within five minutes (and should
        # fetch again on an unknown kid anyway).
        return JSONResponse(config.tokens.keys.public_jwks(), headers={"cache-control": "max-age=300"})

    async def token(request: Request) -> Response:
        wait = config.token_limiter.check("addr:" + _address(request))
        if wait is not None:
            return OAuthError("slow_down", "too many token requests", 429,
                              {"retry-after": RateLimiter.retry_after_header(wait)}).response()
        form: dict[str, str] = {}
        try:
            form = await read_form(request)
            body = await run_in_threadpool(token_exchange, config, form)
        except OAuthError as exc:
            await run_in_threadpool(_audit_token, config, form, _address(request), None, exc)
            return exc.response()
        try:  # recorded before the token is released: no token leaves unaudited
            await run_in_threadpool(_audit_token, config, form, _address(request), body, None)
        except AuditError:
            return OAuthError("temporarily_unavailable", "the audit trail could not be written; try again",
                              503).response()
        return JSONResponse(body, headers=NO_STORE)

    async def authorize(request: Request) -> Response:
        try:
            if request.method == "GET":
                params = dict(request.query_params)
                req = await run_in_threadpool(validate_authorize, config, params)
                return _login_page(req, lang=_page_lang(req, request))
            form = await read_form(request)
            req = await run_in_threadpool(validate_authorize, config, form)
        except PageError as exc:
            return _error_page(str(exc))
        except RedirectError as exc:
            return _redirect(exc.uri, exc.params)
        except OAuthError as exc:
            return _error_page(exc.description)
        username = form.get("username", "")
        for key in ("addr:" + _address(request), "user:" + username.lower()):
            wait = config.login_limiter.check(key)
            if wait is not None:
                from .scope_words import word
                lang = _page_lang(req, request)
                return _login_page(req, word(lang, "slow", s=int(wait) + 1), 429, lang=lang)
        user = await run_in_threadpool(verify_password, config.store, username, form.get("password", ""))
        event = auth_event("login", user is not None, username, client_id=req.client.client_id,
                           address=_address(request), description="signed in at the login page" if user else
                           "sign-in refused: wrong user name or password, or the account is disabled")
        try:
            await run_in_threadpool(record, config.audit, event)
        except AuditError:
            return _error_page("The sign-in cannot be recorded just now; try again in a moment.")
        if user is None:
            from .scope_words import word
            lang = _page_lang(req, request)
            return _login_page(req, word(lang, "wrong"), 401, lang=lang)
        if not _grant_for(user, req.scopes, req.launch):
            return _redirect(req.redirect_uri, {"error": "invalid_scope", "state": req.state,
                                                "error_description": "no requested scope fits this user"})
        try:
            code = await run_in_threadpool(issue_code, config, req, user)
        except RedirectError as exc:
            return _redirect(exc.uri, exc.params)
        return _redirect(req.redirect_uri, {"code": code, "state": req.state})

    return [
        Route("/.well-known/smart-configuration", well_known, methods=["GET"]),
        Route(config.fhir_path + "/.well-known/smart-configuration", well_known, methods=["GET"]),
        Route("/.well-known/openid-configuration", openid_well_known, methods=["GET"]),
        Route("/auth/jwks", jwks, methods=["GET"]),
        Route("/auth/token", token, methods=["POST"]),
        Route("/auth/authorize", authorize, methods=["GET", "POST"]),
    ]
