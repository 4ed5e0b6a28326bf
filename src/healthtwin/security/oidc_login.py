"""Signing a citizen in through an external OpenID Connect provider (a national eID broker, a Keycloak...).

`begin` makes the state, the nonce and the PKCE verifier of one sign-in and keeps them on the server (table
`security_oidc_logins`, keyed by the SHA-256 of the state, bound to the SHA-256 of a random value the browser
holds in an HttpOnly cookie, expiring after ten minutes); it returns the provider's authorization URL, which
carries the state, the nonce and the S256 challenge, never a secret. `finish` takes the state and code the
provider sent back: it removes the pending row (a state is used once, whatever happens next), checks that
this browser started the sign-in, redeems the code at the provider with the verifier and our client
authentication, verifies the id_token (oidc_provider.py) and maps the person to a citizen:

* the claim named by `patient_claim` (default `fin`, the national identification number) is looked up as a
  Patient identifier of `patient_system` (default the FIN system); exactly one live Patient must hold it;
* the person becomes the account `ext-<hash of issuer and sub>` (made on the first sign-in, updated when the
  mapping changes, refused when an administrator disabled it), a citizen linked to that Patient, with no
  usable password: the same kind of account the built-in login signs in, so the session gets the same access
  rules, consent, audit and revocation (`healthtwin users disable` ends it);
* the access token of the browser's session is then minted for the pages' client exactly as the built-in login's code
  exchange mints it (`smart.user_tokens`).

The provider's own tokens (its access token, id_token, refresh token) are dropped as soon as the id_token is
verified: they are never stored, put in a cookie or sent to the browser. Every sign-in, refused or not, is an
AuditEvent (auth_audit.py) that says which provider, which external subject and, if refused, why."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from .access import FIN_SYSTEM
from .auth_audit import auth_event, record, record_or_log
from .clients import _real, ensure_security_schema, get_client, split_scopes
from .oidc_provider import Provider, ProviderError
from .tokens import TokenError

PENDING_SECONDS = 600
CITIZEN_SCOPES = "openid fhirUser launch/patient user/*.cruds"  # what the built-in login grants the pages' client


class SignInRefused(Exception):
    """An external sign-in that did not go through; `reason` is a short code the page words in its language
    (state, provider, refused, signature, expired, nonce, token, no_claim, unknown_subject, ambiguous,
    disabled), `detail` the technical account that goes to the audit trail."""

    def __init__(self, reason: str, detail: str, subject: str | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.subject = reason, detail, subject


_TOKEN_REASONS = {"bad signature": "signature", "token expired": "expired", "wrong nonce": "nonce",
                  "token not yet valid": "expired"}


@dataclass(frozen=True)
class OidcSettings:
    """The provider the pages offer as a second way in, from the environment (never the repository: the
    secret especially): HEALTHTWIN_OIDC_ISSUER and HEALTHTWIN_OIDC_CLIENT_ID turn it on;
    HEALTHTWIN_OIDC_CLIENT_SECRET (a confidential client; absent: a public one, PKCE alone),
    HEALTHTWIN_OIDC_NAME (what the sign-in button calls it), HEALTHTWIN_OIDC_SCOPE (default "openid profile"),
    HEALTHTWIN_OIDC_PATIENT_CLAIM (default "fin") and HEALTHTWIN_OIDC_PATIENT_SYSTEM (default the FIN system)."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    name: str = "OpenID Connect"
    scope: str = "openid profile"
    patient_claim: str = "fin"
    patient_system: str = FIN_SYSTEM

    @classmethod
    def from_env(cls, env: Any = None) -> "OidcSettings | None":
        import os
        env = os.environ if env is None else env
        issuer, client_id = env.get("HEALTHTWIN_OIDC_ISSUER"), env.get("HEALTHTWIN_OIDC_CLIENT_ID")
        if not issuer or not client_id:
            return None
        scope = env.get("HEALTHTWIN_OIDC_SCOPE") or "openid profile"
        if "openid" not in scope.split():
            raise ValueError("HEALTHTWIN_OIDC_SCOPE must include openid")
        return cls(issuer, client_id, env.get("HEALTHTWIN_OIDC_CLIENT_SECRET") or None,
                   env.get("HEALTHTWIN_OIDC_NAME") or "OpenID Connect", scope,
                   env.get("HEALTHTWIN_OIDC_PATIENT_CLAIM") or "fin", env.get("HEALTHTWIN_OIDC_PATIENT_SYSTEM") or FIN_SYSTEM)

    def login(self, smart: Any) -> "ExternalLogin":
        """The sign-in through this provider, minting tokens as `smart` (a SmartConfig) does."""
        provider = Provider(self.issuer, self.client_id, self.client_secret)
        return ExternalLogin(provider, smart, self.name, self.scope, self.patient_claim, self.patient_system)


@dataclass
class ExternalLogin:
    """The provider (`Provider`), how its people map to citizens, and what it takes to mint their tokens
    (`smart`: the SmartConfig whose token service and audit trail the built-in login uses)."""

    provider: Provider
    smart: Any
    display_name: str = "OpenID Connect"
    scope: str = "openid profile"
    patient_claim: str = "fin"
    patient_system: str = FIN_SYSTEM

    @property
    def store(self) -> Any:
        return self.smart.store

    def ensure_schema(self) -> None:
        ensure_security_schema(self.store)
        with self.store.write_cursor() as cur:
            cur.execute(f"""CREATE TABLE IF NOT EXISTS security_oidc_logins (state_hash TEXT PRIMARY KEY,
                 browser_hash TEXT NOT NULL, nonce TEXT NOT NULL, verifier TEXT NOT NULL, after TEXT NOT NULL,
                 expires {_real(self.store)} NOT NULL)""")

    # -- the sign-in under way ---------------------------------------------------------------------------------
    def begin(self, redirect_uri: str, after: str, lang: str | None = None) -> tuple[str, str]:
        """(the provider's authorization URL, the browser's binding value for its cookie); ProviderError if
        the provider cannot be reached."""
        state, nonce, browser = (secrets.token_urlsafe(32) for _ in range(3))
        verifier = secrets.token_urlsafe(48)
        from .keys import b64url
        challenge = b64url(hashlib.sha256(verifier.encode("ascii")).digest())
        url = self.provider.authorization_url(redirect_uri, self.scope, state, nonce, challenge, lang)
        with self.store.write_cursor() as cur:
            cur.execute(self.store.sql("DELETE FROM security_oidc_logins WHERE expires < ?"), (time.time(),))
            cur.execute(self.store.sql("INSERT INTO security_oidc_logins (state_hash, browser_hash, nonce, verifier, "
                                       "after, expires) VALUES (?, ?, ?, ?, ?, ?)"),
                        (_digest(state), _digest(browser), nonce, verifier, after, time.time() + PENDING_SECONDS))
        return url, browser

    def _take(self, state: str, browser: str | None) -> tuple[str, str, str]:
        """(nonce, verifier, where to go after) of the sign-in this state names, removed as it is read."""
        if not state or len(state) > 512:
            raise SignInRefused("state", "the provider's answer carries no usable state")
        with self.store.write_cursor() as cur:
            cur.execute(self.store.sql("DELETE FROM security_oidc_logins WHERE state_hash = ? "
                                       "RETURNING browser_hash, nonce, verifier, after, expires"), (_digest(state),))
            row = cur.fetchone()
        if row is None:
            raise SignInRefused("state", "the state is unknown or was used before (a replayed or forged answer)")
        browser_hash, nonce, verifier, after, expires = row
        if not browser or not hmac.compare_digest(browser_hash, _digest(browser)):
            raise SignInRefused("state", "the answer came to another browser than the one that began the sign-in")
        if time.time() > expires:
            raise SignInRefused("state", "the sign-in took longer than ten minutes")
        return nonce, verifier, after

    def finish(self, params: dict[str, str], browser: str | None, redirect_uri: str, client_id: str,
               address: str | None) -> tuple[dict[str, Any], str]:
        """(the token response for the pages' client, where to go after); SignInRefused, audited, if refused.
        The refusal's audit record is best effort; a sign-in that cannot be recorded does not go through."""
        subject = None
        try:
            nonce, verifier, after = self._take(params.get("state") or "", browser)
            if params.get("error"):
                raise SignInRefused("refused", f"the provider answered {params['error'][:64]!r}: "
                                    f"{(params.get('error_description') or '')[:200]}")
            code = params.get("code") or ""
            if not code or len(code) > 2048:
                raise SignInRefused("refused", "the provider's answer carries no code")
            answer = self.provider.redeem(code, redirect_uri, verifier)
            try:
                claims = self.provider.verify_id_token(answer["id_token"], nonce)
            except TokenError as exc:
                raise SignInRefused(_TOKEN_REASONS.get(str(exc), "token"), f"id_token refused: {exc}") from None
            subject = claims["sub"]
            user = self._account(claims)
            body = self._tokens(user, client_id)
        except ProviderError as exc:
            self._audit(False, subject, client_id, address, f"{exc.reason}: {exc.detail}")
            raise SignInRefused(exc.reason, exc.detail, subject) from None
        except SignInRefused as exc:
            self._audit(False, exc.subject or subject, client_id, address, f"{exc.reason}: {exc.detail}")
            raise
        record(self.smart.audit, auth_event(
            "login", True, user.username, client_id=client_id, address=address,
            description=f"signed in through {self.provider.issuer} as {subject[:128]!r}: {user.patient}"))
        return body, after

    def _audit(self, success: bool, subject: str | None, client_id: str, address: str | None, why: str) -> None:
        who = f"{self.provider.issuer}#{subject}" if subject else None
        record_or_log(self.smart.audit, auth_event("login", success, who, client_id=client_id, address=address,
                                                   description=f"external sign-in refused ({self.provider.issuer}): {why}"))

    # -- the person as a citizen -------------------------------------------------------------------------------
    def _account(self, claims: dict[str, Any]) -> Any:
        value = claims.get(self.patient_claim)
        if not isinstance(value, str) or not value.strip() or len(value) > 64:
            raise SignInRefused("no_claim", f"the id_token carries no {self.patient_claim!r} claim", claims["sub"])
        patients = patients_holding(self.store, self.patient_system, value.strip())
        if not patients:
            raise SignInRefused("unknown_subject", f"no record holds {self.patient_claim} of this person", claims["sub"])
        if len(patients) > 1:
            raise SignInRefused("ambiguous", f"{len(patients)} records hold this person's {self.patient_claim}",
                                claims["sub"])
        username = "ext-" + hashlib.sha256(f"{self.provider.issuer}|{claims['sub']}".encode()).hexdigest()[:24]
        from .clients import User
        patient = "Patient/" + patients[0]
        with self.store.write_cursor() as cur:
            cur.execute(self.store.sql("SELECT disabled FROM security_users WHERE username = ?"), (username,))
            row = cur.fetchone()
            if row is not None and row[0] is not None:
                raise SignInRefused("disabled", "the account was disabled by an administrator", claims["sub"])
            if row is None:  # "external" is no scrypt hash: no password ever verifies for this account
                cur.execute(self.store.sql("INSERT INTO security_users (username, password_hash, roles, patient, "
                                           "created) VALUES (?, 'external', 'citizen', ?, ?)"),
                            (username, patient, time.time()))
            else:
                cur.execute(self.store.sql("UPDATE security_users SET patient = ?, roles = 'citizen' "
                                           "WHERE username = ?"), (patient, username))
        return User(username, ("citizen",), patient, None, None)

    def _tokens(self, user: Any, client_id: str) -> dict[str, Any]:
        from .smart import _grant_for, user_tokens
        client = get_client(self.store, client_id)
        if client is None:
            raise SignInRefused("provider", "the pages' client is not registered")
        scopes = [s for s in _grant_for(user, split_scopes(CITIZEN_SCOPES)) if s in client.scopes]
        return user_tokens(self.smart, user, client, scopes, secrets.token_urlsafe(16))


def patients_holding(store: Any, system: str, value: str) -> list[str]:
    """The ids of the live Patients (active, not merged away) that hold identifier `system|value`, through the
    identifier index as the store writes it (blinded where the store seals identifiers)."""
    rows = store.index_values("Patient", [("identifier", "token", system, value, None)])
    blinded_system, code = rows[0][2], rows[0][3]
    pid = store.pid("Patient", "identifier")
    if pid is None:
        return []
    with store.cursor() as cur:
        cur.execute(store.sql("SELECT r.id FROM idx_token t JOIN resources r ON r.rid = t.rid WHERE t.pid = ? "
                              "AND t.code = ? AND t.system = ? AND r.type = 'Patient' AND r.deleted = 0"),
                    (pid, code, blinded_system))
        ids = sorted({row[0] for row in cur.fetchall()})
    out = []
    for rid in ids:
        stored = store.read("Patient", rid)
        if stored is None or not stored.content:
            continue
        patient = orjson.loads(stored.content)
        merged = any(isinstance(link, dict) and link.get("type") == "replaced-by" for link in patient.get("link") or ())
        if patient.get("active") is not False and not merged:
            out.append(rid)
    return out


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()
