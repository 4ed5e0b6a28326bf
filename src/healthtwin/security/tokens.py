"""Access tokens: minting ours (ES256), verifying ours and those of trusted OpenID Connect providers.

Verification is deliberately narrow, because every relaxation is a known attack:
* The algorithm comes from an allow-list (ES256, ES384, RS256 — never `none`, never HS*) AND must fit the
  key it is checked with: an HS256 token "signed" with our public key (algorithm confusion) is refused
  before any MAC is computed, and an ES384 header against a P-256 key is refused too.
* The key is chosen by (issuer, kid) from keys we hold; an unknown kid fails; keys in the token header
  (`jwk`, `jku`, `x5u`, `x5c`) are never used. Our keys are the current signing key and those retired by
  `healthtwin keys rotate-signing` (keys.py); a running server notices a rotation within KEYS_RECHECK seconds.
* iss, aud, exp, iat, sub and jti are required; exp/nbf get a small leeway for clock skew only.
* A token whose lifetime (`exp - iat`) exceeds the server's maximum is refused, whoever signed it.
* Our own tokens carry `typ: at+jwt` (RFC 9068), so an id token or a client assertion can never be replayed
  as an access token here.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import jwt
import orjson

from ..request import PURPOSE_CODE, Caller
from ..fhir.outcome import FHIRError
from .keys import SIGNING_ALG, KeySet, load_or_create, retired_signing_files

log = logging.getLogger("healthtwin.security")

ACCESS_TOKEN_ALGS = ("ES256", "ES384", "RS256")
MAX_TOKEN_LIFETIME = 3600  # seconds: no token we sign lives longer (access tokens; id tokens 600)
KEYS_RECHECK = 10.0  # seconds between looks at the keys folder for a rotated or retired signing key
MAX_TOKEN_BYTES = 16 * 1024
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class TokenError(Exception):
    """A token was refused; the message is safe to show the client (it names the check, not secrets)."""


@dataclass(frozen=True)
class TokenCaller(Caller):
    """A Caller authenticated by a token (`patient` and `fhir_user` come from Caller)."""

    issuer: str | None = None
    token_id: str | None = None
    expires: float | None = None
    issued: float | None = None  # iat


def key_for(jwk: Mapping[str, Any], alg: str) -> Any:
    """The verification key for `alg`, or TokenError if the JWK's type does not fit the algorithm."""
    kty = jwk.get("kty")
    if alg.startswith("ES"):
        if kty != "EC" or jwk.get("crv") != _EC_CURVES.get(alg):
            raise TokenError(f"the key {jwk.get('kid')!r} cannot verify {alg}")
        return jwt.algorithms.ECAlgorithm.from_jwk(dict(jwk))
    if alg.startswith(("RS", "PS")):
        if kty != "RSA":
            raise TokenError(f"the key {jwk.get('kid')!r} cannot verify {alg}")
        key = jwt.algorithms.RSAAlgorithm.from_jwk(dict(jwk))
        if key.key_size < 2048:
            raise TokenError("RSA keys shorter than 2048 bits are refused")
        return key
    raise TokenError(f"algorithm {alg} is not accepted")


def unverified_header(token: str, algorithms: Iterable[str]) -> dict[str, Any]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise TokenError("malformed token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError("malformed token header") from exc
    alg = header.get("alg")
    if alg not in set(algorithms):
        raise TokenError(f"algorithm {alg!r} is not accepted")
    if any(h in header for h in ("jku", "jwk", "x5u", "x5c", "crit")):
        # Keys named by the token itself would let the attacker pick the key; `crit` we do not implement.
        raise TokenError("token headers jku/jwk/x5u/x5c/crit are not accepted")
    if not isinstance(header.get("kid"), str):
        raise TokenError("the token header has no kid")
    return header


def unverified_claims(token: str) -> dict[str, Any]:
    """Only for choosing which issuer's keys to verify with; never trusted beyond that."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenError("malformed token payload") from exc
    if not isinstance(claims, dict):
        raise TokenError("malformed token payload")
    return claims


def verify_signed(token: str, jwk: Mapping[str, Any], alg: str, issuer: str, audience: str | list[str],
                  leeway: float, require: Iterable[str]) -> dict[str, Any]:
    key = key_for(jwk, alg)
    try:
        return jwt.decode(token, key=key, algorithms=[alg], audience=audience, issuer=issuer, leeway=leeway,
                          options={"require": list(require), "verify_signature": True, "verify_exp": True,
                                   "verify_nbf": True, "verify_iat": True, "verify_aud": True,
                                   "verify_iss": True})
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise TokenError("token not yet valid") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenError("wrong audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenError("wrong issuer") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"missing claim {exc.claim}") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenError("bad signature") from exc
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token: {type(exc).__name__}") from exc


# -- external OpenID Connect providers -----------------------------------------------------------------------
class JWKSFetcher:
    """A provider's JWKS fetched from its `jwks_uri` and cached. Request handling never waits on the network:
    `prime()` fetches once at start; later an unknown kid (key rotation) triggers at most one background
    refresh per `min_interval`, and that token is refused until the new key has arrived."""

    def __init__(self, url: str, ttl: float = 3600, min_interval: float = 60, timeout: float = 5,
                 fetch: Callable[[str, float], bytes] | None = None) -> None:
        if not url.startswith("https://"):
            raise ValueError("a JWKS URL must be https (keys fetched over plain HTTP can be swapped)")
        self.url, self.ttl, self.min_interval, self.timeout = url, ttl, min_interval, timeout
        self._fetch = fetch or _https_get
        self._jwks: dict[str, Any] = {"keys": []}
        self._fetched = 0.0
        self._attempted = 0.0
        self._lock = threading.Lock()
        self._refreshing = False

    def prime(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        try:
            doc = orjson.loads(self._fetch(self.url, self.timeout))
            if isinstance(doc, dict) and isinstance(doc.get("keys"), list):
                self._jwks, self._fetched = doc, time.time()
        except Exception:  # a failed refresh keeps the old keys; the provider may be briefly down
            log.exception("could not fetch JWKS from %s", self.url)
        finally:
            self._refreshing = False

    def _refresh_soon(self) -> None:
        with self._lock:
            now = time.time()
            if self._refreshing or now - self._attempted < self.min_interval:
                return
            self._refreshing, self._attempted = True, now
        threading.Thread(target=self._refresh, name="jwks-refresh", daemon=True).start()

    def get(self) -> dict[str, Any]:
        if time.time() - self._fetched > self.ttl:
            self._refresh_soon()
        return self._jwks

    def miss(self, kid: str) -> None:
        self._refresh_soon()


def _https_get(url: str, timeout: float) -> bytes:
    req = urllib.request.Request(url, headers={"accept": "application/json"})
    # https is enforced above, so file: and custom schemes never reach urlopen.
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec B310
        return resp.read(1024 * 1024)


@dataclass
class ExternalIssuer:
    """A trusted OpenID Connect provider (Keycloak, national eID broker, ...).

    `jwks` is the JWKS document (config or file) or a JWKSFetcher. `audience` is what its tokens carry in
    `aud` for this server (default: the FHIR base URL). With `role_map`, only mapped roles are taken over,
    so a provider-side role name cannot collide with one of ours by accident."""

    issuer: str
    jwks: dict[str, Any] | JWKSFetcher
    audience: str | list[str] | None = None
    role_map: dict[str, str] | None = None
    algorithms: tuple[str, ...] = ACCESS_TOKEN_ALGS

    def key(self, kid: str) -> dict[str, Any] | None:
        doc = self.jwks.get() if isinstance(self.jwks, JWKSFetcher) else self.jwks
        for jwk in doc.get("keys", []):
            if jwk.get("kid") == kid:
                return jwk
        if isinstance(self.jwks, JWKSFetcher):
            self.jwks.miss(kid)
        return None

    def caller(self, claims: dict[str, Any]) -> TokenCaller:
        roles: set[str] = set()
        realm = claims.get("realm_access")
        for source in ((realm or {}).get("roles") if isinstance(realm, dict) else None, claims.get("roles")):
            if isinstance(source, list):
                roles.update(r for r in source if isinstance(r, str))
        if self.role_map is not None:
            roles = {self.role_map[r] for r in roles if r in self.role_map}
            # IHE IUA's subject_role is a Coding from the provider's value set, not one of our role names:
            # taken over only through the map, keyed "system|code" or "code".
            for coding in _codings(_iua(claims).get("subject_role")):
                key = f"{coding.get('system') or ''}|{coding['code']}"
                mapped = self.role_map.get(key) or self.role_map.get(coding["code"])
                if mapped:
                    roles.add(mapped)
        scope = claims.get("scope") if isinstance(claims.get("scope"), str) else " ".join(claims.get("scp") or [])
        scopes = frozenset(scope.split())
        fhir_user = _relative(claims.get("fhirUser"))
        patient = claims.get("patient")
        patient = _relative(patient if "/" in str(patient) else f"Patient/{patient}") if patient else None
        system = not fhir_user and not patient and any(s.startswith("system/") for s in scopes)
        return TokenCaller(subject=str(claims["sub"]), kind="system" if system else "person",
                           roles=frozenset(roles), scopes=scopes,
                           organization=_organization(claims), client_id=claims.get("azp") or claims.get("client_id"),
                           patient=patient, fhir_user=fhir_user, issuer=self.issuer, token_id=claims.get("jti"),
                           expires=claims.get("exp"), purpose=purpose_claim(claims))


ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


def purpose_claim(claims: Mapping[str, Any]) -> str | None:
    """The purpose of use a token was issued for: IHE IUA's `extensions.ihe_iua.purpose_of_use` (a Coding, or
    a list of one), or a plain `purpose_of_use` (a code or a Coding) as some providers write it. A value
    that is there but unreadable refuses the token (TokenError): it must not pass as "no purpose"."""
    value = claims.get("purpose_of_use")
    if value is None:
        value = _iua(claims).get("purpose_of_use")
    if value is None:
        return None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, Mapping):
        value = value.get("code")
    if not isinstance(value, str) or not PURPOSE_CODE.match(value):
        raise TokenError("the token's purpose_of_use is not one HL7 ActReason code")
    return value


def _iua(claims: Mapping[str, Any]) -> Mapping[str, Any]:
    extensions = claims.get("extensions")
    iua = extensions.get("ihe_iua") if isinstance(extensions, Mapping) else None
    return iua if isinstance(iua, Mapping) else {}


def _codings(value: Any) -> list[Mapping[str, Any]]:
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, Mapping) and isinstance(v.get("code"), str) and v["code"]]


def _organization(claims: Mapping[str, Any]) -> str | None:
    """The caller's organization: an `organization` claim, or IUA's subject_organization_id when it is a
    reference to an Organization (an OID names no record here, so it is not taken)."""
    org = claims.get("organization")
    if isinstance(org, str):
        return org
    ref = _relative(_iua(claims).get("subject_organization_id"))
    return ref if ref and ref.startswith("Organization/") else None


def _relative(ref: Any) -> str | None:
    """'https://x/fhir/Practitioner/9' or 'Practitioner/9' -> 'Practitioner/9'; anything else -> None."""
    if not isinstance(ref, str):
        return None
    parts = ref.rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2][:1].isupper() or not parts[-1]:
        return None
    return f"{parts[-2]}/{parts[-1]}"


# -- our tokens ---------------------------------------------------------------------------------------------------
@dataclass
class TokenService:
    keys: KeySet
    issuer: str  # our authorization server, e.g. https://twin.example
    audience: str  # the FHIR base URL, e.g. https://twin.example/fhir
    lifetime: int = MAX_TOKEN_LIFETIME  # what we mint
    leeway: float = 30
    max_lifetime: int = MAX_TOKEN_LIFETIME  # the longest `exp - iat` accepted, from us or an external issuer
    externals: list[ExternalIssuer] = field(default_factory=list)
    _verified: dict[str, TokenCaller] = field(default_factory=dict, repr=False)  # token -> caller (identify)
    revocations: Any = None  # clients.Revocations: tokens revoked before they expire (set by SmartConfig)
    _keys_seen: tuple = field(default=(), repr=False)  # the keys folder's signing files when last loaded
    _keys_checked: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.lifetime > MAX_TOKEN_LIFETIME:
            raise ValueError("access tokens live at most one hour")
        if self.lifetime > self.max_lifetime:
            raise ValueError("the tokens we mint must fit the maximum lifetime we accept")
        if any(e.issuer == self.issuer for e in self.externals):
            raise ValueError("an external issuer cannot share our issuer URL")
        self._keys_seen = self._signing_files()
        self._keys_checked = time.monotonic()

    def _signing_files(self) -> tuple:
        """(name, inode, mtime) of the signing key files, to notice a rotation or a retirement cheaply."""
        folder = self.keys.folder
        if folder is None:
            return ()
        found = []
        for path in [folder / "signing.pem", *retired_signing_files(folder)]:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            found.append((path.name, st.st_ino, st.st_mtime_ns))
        return tuple(found)

    def refresh_keys(self) -> None:
        """Reloads the keys if the folder's signing files changed since they were loaded; looks at most once
        per KEYS_RECHECK seconds, so tokens with made-up kids cannot make every request read the disk."""
        now = time.monotonic()
        if self.keys.folder is None or now - self._keys_checked < KEYS_RECHECK:
            return
        self._keys_checked = now
        seen = self._signing_files()
        if seen != self._keys_seen:
            self.keys = load_or_create(self.keys.folder.parent)
            self._keys_seen = seen
            self._verified.clear()  # a retired key's tokens must be checked again
            log.warning("token-signing keys reloaded from %s: signing with %s, %d retired key(s) still verify",
                        self.keys.folder, self.keys.kid, len(self.keys.retired_signing))

    def mint(self, subject: str, kind: str, scopes: Iterable[str], roles: Iterable[str] = (),
             client_id: str | None = None, organization: str | None = None, patient: str | None = None,
             fhir_user: str | None = None, lifetime: int | None = None, jti: str | None = None,
             purpose: str | None = None) -> tuple[str, int]:
        """A signed access token and its lifetime in seconds; `jti` if its id must be known beforehand;
        `purpose`, a purpose of use every request made with it states (IHE IUA's claim)."""
        self.refresh_keys()
        life = min(lifetime or self.lifetime, self.lifetime)
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": subject, "iat": now,
                                  "nbf": now, "exp": now + life, "jti": jti or secrets.token_urlsafe(16),
                                  "scope": " ".join(scopes), "kind": kind, "roles": sorted(set(roles))}
        for name, value in (("client_id", client_id), ("organization", organization), ("patient", patient),
                            ("fhirUser", fhir_user)):
            if value:
                claims[name] = value
        if purpose:
            claims["extensions"] = {"ihe_iua": {"purpose_of_use": {"system": ACT_REASON, "code": purpose}}}
        token = jwt.encode(claims, self.keys.signing_key, algorithm=SIGNING_ALG,
                           headers={"kid": self.keys.kid, "typ": "at+jwt"})
        return token, life

    def mint_id_token(self, subject: str, client_id: str, nonce: str | None, fhir_user: str | None,
                      extra: Mapping[str, Any] | None = None) -> str:
        """An OpenID Connect id_token for `client_id`; `extra` claims (a citizen's `fin`) are added as given."""
        self.refresh_keys()
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": client_id, "sub": subject, "iat": now,
                                  "exp": now + min(self.lifetime, 600)}
        if nonce:
            claims["nonce"] = nonce
        if fhir_user:
            claims["fhirUser"] = fhir_user
        for name, value in (extra or {}).items():
            claims.setdefault(name, value)
        return jwt.encode(claims, self.keys.signing_key, algorithm=SIGNING_ALG,
                          headers={"kid": self.keys.kid, "typ": "JWT"})

    def verify(self, token: str) -> tuple[dict[str, Any], ExternalIssuer | None]:
        """The verified claims and the external issuer that signed them (None: we did); TokenError if refused."""
        header = unverified_header(token, ACCESS_TOKEN_ALGS)
        iss = unverified_claims(token).get("iss")
        if iss == self.issuer:
            if header.get("typ") != "at+jwt":
                raise TokenError("not an access token (typ must be at+jwt)")
            self.refresh_keys()
            jwk = self.keys.verification_jwk(header["kid"])
            if jwk is None:
                raise TokenError("unknown kid")
            claims = verify_signed(token, jwk, header["alg"], self.issuer, self.audience,
                                   self.leeway, ("iss", "sub", "aud", "exp", "iat", "jti"))
            self._check_lifetime(claims)
            return claims, None
        for ext in self.externals:
            if iss == ext.issuer:
                if header["alg"] not in ext.algorithms:
                    raise TokenError(f"algorithm {header['alg']} is not accepted for {ext.issuer}")
                jwk = ext.key(header["kid"])
                if jwk is None:
                    raise TokenError("unknown kid")
                claims = verify_signed(token, jwk, header["alg"], ext.issuer, ext.audience or self.audience,
                                       self.leeway, ("iss", "sub", "aud", "exp"))
                self._check_lifetime(claims)
                return claims, ext
        raise TokenError("wrong issuer")

    def _check_lifetime(self, claims: Mapping[str, Any]) -> None:
        """Refuses a token meant to live longer than this server allows (`exp - iat` over `max_lifetime`),
        whoever signed it: a leaked day-long token from a provider is not a day-long key here. Without `iat`
        (external providers need not send it) the time left must fit the maximum."""
        exp, iat = claims.get("exp"), claims.get("iat")
        if not _number(exp) or (iat is not None and not _number(iat)):
            raise TokenError("exp and iat must be numbers")
        start = iat if iat is not None else time.time()
        if exp - start > self.max_lifetime + self.leeway:
            raise TokenError(f"token lifetime exceeds this server's maximum of {self.max_lifetime} s")

    def caller(self, token: str) -> TokenCaller:
        claims, ext = self.verify(token)
        return ext.caller(claims) if ext is not None else self.our_caller(claims)

    def our_caller(self, claims: dict[str, Any]) -> TokenCaller:
        """The caller that the verified claims of one of our tokens describe."""
        return TokenCaller(subject=claims["sub"], kind=claims.get("kind", "person"),
                           roles=frozenset(claims.get("roles") or ()),
                           scopes=frozenset(str(claims.get("scope", "")).split()),
                           organization=claims.get("organization"), client_id=claims.get("client_id"),
                           patient=claims.get("patient"), fhir_user=claims.get("fhirUser"), issuer=self.issuer,
                           token_id=claims.get("jti"), expires=claims.get("exp"), issued=claims.get("iat"),
                           purpose=purpose_claim(claims))

    def identify(self, request: Any) -> Caller:
        """FHIRRouter's identify seam: no Authorization header -> anonymous (the policy decides what that may
        do); a Bearer token -> its caller; anything else -> 401 with a WWW-Authenticate challenge."""
        header = request.headers.get("authorization")
        if header is None:
            return Caller()
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("invalid_request", "use 'Authorization: Bearer <token>'")
        token = token.strip()
        cached = self._verified.get(token)
        # A token verified before is the same bytes, already checked; only its expiry can change. Caching the
        # result keeps signature checks (~100-300 µs in Python) off the path of every later request.
        if cached is not None and (cached.expires is None or cached.expires > time.time()):
            caller = cached
        else:
            try:
                caller = self.caller(token)
            except TokenError as exc:
                raise _unauthorized("invalid_token", str(exc)) from None
            if len(self._verified) >= 10_000:
                self._verified.clear()  # bounded memory; tokens re-verify once after a clear
            self._verified[token] = caller
        if self.revocations is not None and caller.issuer == self.issuer and self.revocations.refuses(caller):
            raise _unauthorized("invalid_token", "the token was revoked")
        return caller


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unauthorized(code: str, description: str) -> FHIRError:
    safe = description.replace('"', "'")
    return FHIRError(401, f"Authentication failed: {description}", "login",
                     headers={"www-authenticate": f'Bearer error="{code}", error_description="{safe}"'})
