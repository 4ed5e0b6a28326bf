"""An external OpenID Connect provider as this server signs people in through it (the relying party's side).

The provider is named by its issuer URL alone. Its discovery document (`/.well-known/openid-configuration`)
is fetched from that URL and must name the same issuer (OpenID Connect Discovery 1.0, section 4.3: a
document that names another issuer is refused, so a redirect or a poisoned cache cannot swap providers); its
keys come from the `jwks_uri` the document names. Both are cached; an id_token signed with a `kid` we do not
hold makes one fresh fetch of the JWKS (key rotation), at most once a minute.

The id_token is verified narrowly, as access tokens are (tokens.py): RS256 or ES256 only and fitting the
key's type, the key chosen by `kid` from the provider's JWKS (never a key the token names itself), `iss` the
configured issuer, `aud` containing our client id (and `azp` our client id when there are several
audiences), `exp`, `iat` and `sub` present, `exp` in the future and `iat` not older than ten minutes, and
`nonce` the one this sign-in sent. Provider URLs must be https, except on the loopback interface (a provider
run on this machine, as the tests do)."""
from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from .tokens import TokenError, unverified_claims, unverified_header, verify_signed

log = logging.getLogger("healthtwin.security")
ID_TOKEN_ALGS = ("RS256", "ES256")
MAX_ID_TOKEN_AGE = 600  # seconds: an id_token issued longer ago than this is not a sign-in happening now
MAX_DOCUMENT = 1024 * 1024


class ProviderError(Exception):
    """The provider could not be reached or answered something unusable; `reason` names which for the page."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def check_url(url: str, what: str) -> str:
    """`url` if it is https, or http to a loopback address; ValueError otherwise (keys and tokens fetched
    over plain HTTP from elsewhere could be swapped on the way)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            return url
    raise ValueError(f"the OpenID provider's {what} must be an https URL (or http on this machine's loopback): "
                     f"{url[:200]!r}")


def _fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
           timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers={"accept": "application/json", **(headers or {})})
    try:  # check_url has admitted only https, or http to loopback: no file: or other scheme reaches urlopen
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # nosec B310
            return answer.status, answer.read(MAX_DOCUMENT)
    except urllib.error.HTTPError as exc:  # the provider's own error answer (an OAuth error body)
        return exc.code, exc.read(MAX_DOCUMENT)


@dataclass
class Provider:
    """One provider: `issuer`, our `client_id` there and, for a confidential client, `client_secret` (sent
    with HTTP Basic, or in the form when the provider supports only that; a public client sends neither and
    relies on PKCE)."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    ttl: float = 3600
    timeout: float = 5.0
    leeway: float = 30
    _document: dict[str, Any] | None = field(default=None, repr=False)
    _jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []}, repr=False)
    _fetched: float = field(default=0.0, repr=False)
    _jwks_tried: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.issuer = check_url(self.issuer.rstrip("/"), "issuer")

    # -- discovery and keys ------------------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        """The discovery document (fetched, checked and cached); ProviderError if it cannot be had."""
        with self._lock:
            if self._document is not None and time.time() - self._fetched < self.ttl:
                return self._document
            doc = self._json(self.issuer + "/.well-known/openid-configuration", "discovery")
            if doc.get("issuer", "").rstrip("/") != self.issuer:
                raise ProviderError("provider", f"the discovery document names issuer {str(doc.get('issuer'))[:200]!r}, "
                                    f"not {self.issuer!r}")
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                try:
                    check_url(str(doc.get(name) or ""), name)
                except ValueError as exc:
                    raise ProviderError("provider", str(exc)) from None
            methods = doc.get("code_challenge_methods_supported")
            if isinstance(methods, list) and "S256" not in methods:
                raise ProviderError("provider", "the provider does not support PKCE with S256")
            self._document, self._fetched = doc, time.time()
            self._jwks = self._json(doc["jwks_uri"], "keys")
            self._jwks_tried = time.time()
            return doc

    def _json(self, url: str, what: str) -> dict[str, Any]:
        try:
            status, body = _fetch(url, timeout=self.timeout)
            doc = orjson.loads(body)
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ProviderError("provider", f"the provider's {what} ({url}) could not be read: {exc}") from None
        if status != 200 or not isinstance(doc, dict) or (what == "keys" and not isinstance(doc.get("keys"), list)):
            raise ProviderError("provider", f"the provider's {what} ({url}) answered {status} without a usable document")
        return doc

    def key(self, kid: str) -> dict[str, Any] | None:
        for jwk in self._jwks.get("keys", []):
            if isinstance(jwk, dict) and jwk.get("kid") == kid:
                return jwk
        with self._lock:  # an unknown kid: the provider may have rotated its keys; look again, once a minute
            if time.time() - self._jwks_tried < 60 or self._document is None:
                return None
            self._jwks_tried = time.time()
        self._jwks = self._json(self._document["jwks_uri"], "keys")
        return next((j for j in self._jwks.get("keys", []) if isinstance(j, dict) and j.get("kid") == kid), None)

    # -- the authorization code flow ---------------------------------------------------------------------------
    def authorization_url(self, redirect_uri: str, scope: str, state: str, nonce: str, challenge: str,
                          lang: str | None = None) -> str:
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                  "scope": scope, "state": state, "nonce": nonce, "code_challenge": challenge,
                  "code_challenge_method": "S256"}
        if lang:
            params["ui_locales"] = lang
        endpoint = self.document()["authorization_endpoint"]
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    def redeem(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        """The token endpoint's answer for `code` (with the PKCE verifier and our client authentication)."""
        doc = self.document()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier}
        headers = {"content-type": "application/x-www-form-urlencoded"}
        methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if self.client_secret and "client_secret_basic" in methods:
            pair = f"{_form_quote(self.client_id)}:{_form_quote(self.client_secret)}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif self.client_secret and "client_secret_post" in methods:
            form.update(client_id=self.client_id, client_secret=self.client_secret)
        else:
            form["client_id"] = self.client_id
        try:
            status, body = _fetch(doc["token_endpoint"], urlencode(form).encode(), headers, self.timeout)
            answer = orjson.loads(body)
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ProviderError("provider", f"the provider's token endpoint could not be read: {exc}") from None
        if status != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            raise ProviderError("refused", f"the provider refused the code ({status} {str(error)[:80]})")
        if not isinstance(answer.get("id_token"), str):
            raise ProviderError("refused", "the provider's answer carries no id_token (was openid asked for?)")
        return answer

    def verify_id_token(self, token: str, nonce: str) -> dict[str, Any]:
        """The id_token's claims if every check in the module's docstring passes; TokenError naming the one
        that failed."""
        header = unverified_header(token, ID_TOKEN_ALGS)
        if unverified_claims(token).get("iss") != self.issuer:
            raise TokenError("wrong issuer")
        jwk = self.key(header["kid"])
        if jwk is None:
            raise TokenError("unknown kid")
        claims = verify_signed(token, jwk, header["alg"], self.issuer, self.client_id, self.leeway,
                               ("iss", "sub", "aud", "exp", "iat"))
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.client_id:
            raise TokenError("azp is not this client")
        if not isinstance(claims["iat"], (int, float)) or claims["iat"] < time.time() - MAX_ID_TOKEN_AGE - self.leeway:
            raise TokenError("token expired")  # issued too long ago to be this sign-in
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise TokenError("wrong nonce")
        if not isinstance(claims["sub"], str) or not 0 < len(claims["sub"]) <= 255:
            raise TokenError("sub must be a string of at most 255 characters")
        return claims


def _form_quote(value: str) -> str:
    """RFC 6749 section 2.3.1: the id and secret are form-urlencoded before they are joined for Basic."""
    from urllib.parse import quote_plus
    return quote_plus(value)
