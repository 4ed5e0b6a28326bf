"""Who may ask for tokens: registered system clients and apps, and people with passwords.

Tables (created by `ensure_security_schema`, plain SQL with '?' placeholders through `store.sql()` so the same
statements run on SQLite and PostgreSQL):

    security_clients  client_id PK, name, jwks (JSON text, public keys only), scopes (space separated, the
                      most the client may ever be granted), organization, redirect_uris (space separated;
                      apps using the authorization-code flow), created, roles (space separated; a backend
                      service's role — laboratory, pharmacy, insurer… — is carried into its tokens, so
                      the policy's row rules apply to it, not just its scopes)
    security_users    username PK, password_hash (scrypt), roles, patient, practitioner, organization, created
    security_jti      jti PK (hash of client id + jti), expires — replay protection for client assertions;
                      the primary key makes a replay fail even when two copies arrive at the same instant
    security_codes    code_hash PK, ... — one-time authorization codes, consumed by DELETE ... RETURNING

Scopes follow SMART App Launch (v1 `patient/Observation.read`, v2 `patient/Observation.rs`, optional `?`
granular filters); `scope_permitted` decides whether a requested scope is covered by an allowed one.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

import orjson
from cryptography.hazmat.primitives import serialization

from .keys import public_jwk, thumbprint

# Roles a machine can hold (clinician and citizen are people: they need a practitioner or patient identity).
SYSTEM_ROLES = ("laboratory", "pharmacy", "insurer", "analyst", "auditor", "administrator")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1  # ~16 MiB and tens of ms per guess: hostile to GPU guessing


def _real(store: Any) -> str:
    # PostgreSQL REAL is float4: epoch seconds would lose minutes; DOUBLE PRECISION keeps milliseconds.
    return "DOUBLE PRECISION" if store.dialect == "postgres" else "REAL"


def ensure_security_schema(store: Any) -> None:
    real = _real(store)
    ddl = [
        f"""CREATE TABLE IF NOT EXISTS security_clients (client_id TEXT PRIMARY KEY, name TEXT NOT NULL,
             jwks TEXT, scopes TEXT NOT NULL, organization TEXT, redirect_uris TEXT, created {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS security_users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
             roles TEXT NOT NULL, patient TEXT NULL, practitioner TEXT NULL, organization TEXT NULL,
             created {real} NOT NULL)""",
        f"CREATE TABLE IF NOT EXISTS security_jti (jti TEXT PRIMARY KEY, expires {real} NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS security_codes (code_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL,
             redirect_uri TEXT NOT NULL, challenge TEXT NOT NULL, username TEXT NOT NULL, scope TEXT NOT NULL,
             nonce TEXT, expires {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS security_revoked (jti TEXT PRIMARY KEY, expires {real} NOT NULL,
             revoked {real} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS security_revoked_at ON security_revoked (revoked)",
        f"""CREATE TABLE IF NOT EXISTS security_refresh (token_hash TEXT PRIMARY KEY, family TEXT NOT NULL,
             client_id TEXT NOT NULL, username TEXT NOT NULL, scope TEXT NOT NULL, expires {real} NOT NULL,
             access_jti TEXT, used {real}, issued {real})""",
        "CREATE INDEX IF NOT EXISTS security_refresh_family ON security_refresh (family)",
        f"""CREATE TABLE IF NOT EXISTS security_launch (launch_hash TEXT PRIMARY KEY, ehr_client TEXT NOT NULL,
             app_client TEXT, context TEXT NOT NULL, expires {real} NOT NULL, used {real})""",
    ]
    with store.write_cursor() as cur:
        store.lock(cur, "security-schema")
        for stmt in ddl:
            cur.execute(stmt)
        # Added after the first release: stores created earlier get the columns on start. A code's token_jti
        # is the id of the token it was redeemed for (set when it is redeemed; revoked if it comes back).
        # `disabled`: when an account was disabled (NULL: active). `launch`: an EHR launch's context (launch.py),
        # carried from the code to the tokens and their refreshes.
        for table, column, kind in (("security_clients", "roles", "TEXT"), ("security_codes", "token_jti", "TEXT"),
                                    ("security_clients", "disabled", real), ("security_users", "disabled", real),
                                    ("security_codes", "launch", "TEXT"), ("security_refresh", "launch", "TEXT"),
                                    ("security_clients", "secret_hash", "TEXT")):
            if store.dialect == "postgres":
                cur.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
            else:
                cur.execute(f"PRAGMA table_info({table})")
                if column not in {row[1] for row in cur.fetchall()}:
                    cur.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


# -- scopes -----------------------------------------------------------------------------------------------------
_SCOPE_RE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|c?r?u?d?s?)(\?[^\s]*)?$")
_PLAIN_SCOPES = {"openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access", "profile"}
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


@functools.lru_cache(maxsize=4096)  # the same few scope strings, parsed for every request's policy checks
def parse_scope(scope: str) -> tuple[str, str, frozenset[str], str] | None:
    """(context, type, permissions as letters c/r/u/d/s, query) for a resource scope, None otherwise."""
    m = _SCOPE_RE.match(scope)
    if not m or m.group(3) == "":
        return None
    perms = _V1.get(m.group(3), m.group(3))
    return m.group(1), m.group(2), frozenset(perms), m.group(4) or ""


def valid_scope(scope: str) -> bool:
    return scope in _PLAIN_SCOPES or parse_scope(scope) is not None


def scope_permitted(requested: str, allowed: Iterable[str]) -> bool:
    """True when some allowed scope covers `requested`: same context, type equal or `*` on the allowed
    side, permissions a subset, and a granular filter only narrows (an allowed filter must be matched exactly)."""
    allowed = list(allowed)
    if requested in _PLAIN_SCOPES:
        return requested in allowed
    req = parse_scope(requested)
    if req is None:
        return False
    for candidate in allowed:
        al = parse_scope(candidate)
        if al is None:
            continue
        if al[0] != req[0] or al[1] not in ("*", req[1]) or not req[2] <= al[2]:
            continue
        if al[3] and al[3] != req[3]:
            continue
        return True
    return False


def split_scopes(text: str | None) -> list[str]:
    return [s for s in (text or "").split() if s]


# -- clients ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    jwks: dict[str, Any] | None
    scopes: tuple[str, ...]
    organization: str | None
    redirect_uris: tuple[str, ...]
    created: float
    roles: tuple[str, ...] = ()
    secret_hash: str | None = None  # an app that authenticates with a shared secret (scrypt), not keys

    @property
    def confidential(self) -> bool:
        """Authenticates with keys (private_key_jwt): what backend services, EHR launches and introspection
        need."""
        return bool(self.jwks and self.jwks.get("keys"))

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_hash)

    def secret_ok(self, secret: str) -> bool:
        """Whether `secret` is this client's (constant cost: scrypt, whether or not it has one)."""
        return _check_hash(secret, self.secret_hash or _DUMMY_HASH) and self.has_secret

    def key(self, kid: str) -> dict[str, Any] | None:
        for jwk in (self.jwks or {}).get("keys", []):
            if jwk.get("kid") == kid:
                return jwk
        return None


_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k", "oth")


def normalize_jwks(jwks: dict[str, Any] | str | None = None, public_key_pem: str | bytes | None = None) -> dict:
    """A public JWKS with a `kid` on every key. Refuses private or symmetric keys: the server must never
    hold a client's secret, and an `oct` key would reopen HMAC algorithm-confusion attacks."""
    keys: list[dict[str, Any]] = []
    if public_key_pem is not None:
        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        if b"PRIVATE" in pem:
            raise ValueError("register the client's PUBLIC key, never its private key")
        keys.append(public_jwk(serialization.load_pem_public_key(pem)))
    if jwks is not None:
        doc = orjson.loads(jwks) if isinstance(jwks, str) else jwks
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ValueError("a JWKS is a JSON object with a 'keys' array")
        for jwk in doc["keys"]:
            if not isinstance(jwk, dict) or jwk.get("kty") not in ("EC", "RSA"):
                raise ValueError("only EC and RSA public keys are accepted")
            if any(m in jwk for m in _PRIVATE_MEMBERS):
                raise ValueError("the JWKS holds private key material; register public keys only")
            jwk = dict(jwk)
            jwk.setdefault("kid", thumbprint(jwk))
            keys.append(jwk)
    kids = [k["kid"] for k in keys]
    if len(kids) != len(set(kids)):
        raise ValueError("key ids (kid) must be unique within a client's JWKS")
    return {"keys": keys}


def add_client(store: Any, name: str, jwks: dict | str | None = None, scopes: str | Iterable[str] = "",
               organization: str | None = None, public_key_pem: str | bytes | None = None,
               redirect_uris: Iterable[str] = (), client_id: str | None = None,
               roles: str | Iterable[str] = (), secret: str | None = None) -> str:
    """Registers a client and returns its id. A backend service registers keys (jwks or a PEM public key)
    and its role; an app for people registers redirect URIs (and keys, or a `secret` of at least 32
    characters, if it is confidential): people's roles come from their own accounts."""
    role_list = split_scopes(roles) if isinstance(roles, str) else list(roles)
    unknown = [r for r in role_list if r not in SYSTEM_ROLES and not r.startswith("label:")]
    if unknown:
        raise ValueError(f"not roles a system client can hold: {' '.join(unknown)} (one of "
                         f"{', '.join(SYSTEM_ROLES)}, or label:<code>)")
    scope_list = split_scopes(scopes) if isinstance(scopes, str) else list(scopes)
    bad = [s for s in scope_list if not valid_scope(s)]
    if bad:
        raise ValueError(f"not SMART scopes: {' '.join(bad)}")
    uris = list(redirect_uris)
    for uri in uris:
        # Exact-match redirect URIs must be absolute, fragment-free and, off localhost, HTTPS.
        if "#" in uri or not re.match(r"^(https://[^/\s]+|http://(localhost|127\.0\.0\.1)(:\d+)?)(/\S*)?$", uri):
            raise ValueError(f"redirect URI {uri!r} must be an absolute https URL without a fragment")
    keyset = normalize_jwks(jwks, public_key_pem) if (jwks is not None or public_key_pem is not None) else None
    if keyset is None and not uris:
        raise ValueError("a client needs keys (backend services) or redirect URIs (apps)")
    if secret is not None and (len(secret) < 32 or not uris):
        raise ValueError("a client secret is for an app (with redirect URIs) and has at least 32 characters")
    client_id = client_id or new_client_id()
    ensure_security_schema(store)
    with store.write_cursor() as cur:
        cur.execute(store.sql("INSERT INTO security_clients (client_id, name, jwks, scopes, organization, "
                              "redirect_uris, created, roles, secret_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                    (client_id, name, orjson.dumps(keyset).decode() if keyset else None, " ".join(scope_list),
                     organization, " ".join(uris), time.time(), " ".join(role_list),
                     hash_password(secret) if secret is not None else None))
    return client_id


def get_client(store: Any, client_id: str) -> Client | None:
    if not client_id or len(client_id) > 200:
        return None
    with store.cursor() as cur:
        cur.execute(store.sql("SELECT client_id, name, jwks, scopes, organization, redirect_uris, created, roles, "
                              "secret_hash FROM security_clients WHERE client_id = ? AND disabled IS NULL"), (client_id,))
        row = cur.fetchone()
    if row is None:
        return None
    return Client(row[0], row[1], orjson.loads(row[2]) if row[2] else None, tuple(split_scopes(row[3])), row[4],
                  tuple(split_scopes(row[5])), row[6], tuple(split_scopes(row[7] or "")), row[8])


# -- users --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class User:
    username: str
    roles: tuple[str, ...]
    patient: str | None
    practitioner: str | None
    organization: str | None


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    enc = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${enc(salt)}${enc(digest)}"


def _check_hash(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# Verified against when the user does not exist, so an unknown name costs the same time as a wrong password.
def new_client_id() -> str:
    """A random client id (96 bits) that a shell and argparse take as a plain word: a URL-safe token may begin
    with '-', which `healthtwin clients disable ID` then read as an option."""
    return secrets.token_hex(12)


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def add_user(store: Any, username: str, password: str, roles: str | Iterable[str], patient: str | None = None,
             practitioner: str | None = None, organization: str | None = None) -> None:
    if not re.match(r"^[A-Za-z0-9._@+-]{1,128}$", username):
        raise ValueError("usernames are 1-128 characters of letters, digits and . _ @ + -")
    if len(password) < 12:
        raise ValueError("passwords must be at least 12 characters")
    for ref, rtype in ((patient, "Patient"), (practitioner, "Practitioner")):
        if ref is not None and not re.match(rf"^{rtype}/[A-Za-z0-9\-.]{{1,64}}$", ref):
            raise ValueError(f"{rtype.lower()} must be a reference like {rtype}/123")
    role_text = roles if isinstance(roles, str) else " ".join(roles)
    ensure_security_schema(store)
    with store.write_cursor() as cur:
        cur.execute(store.sql("INSERT INTO security_users (username, password_hash, roles, patient, practitioner, "
                              "organization, created) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                    (username, hash_password(password), role_text, patient, practitioner, organization, time.time()))


def get_user(store: Any, username: str) -> User | None:
    with store.cursor() as cur:
        cur.execute(store.sql("SELECT username, roles, patient, practitioner, organization FROM security_users "
                              "WHERE username = ? AND disabled IS NULL"), (username,))
        row = cur.fetchone()
    return User(row[0], tuple(split_scopes(row[1])), row[2], row[3], row[4]) if row else None


def verify_password(store: Any, username: str, password: str) -> User | None:
    """The user if the password is right, else None — with the same cost whether or not the user exists."""
    with store.cursor() as cur:
        cur.execute(store.sql("SELECT password_hash FROM security_users WHERE username = ? AND disabled IS NULL"),
                    (username[:200],))
        row = cur.fetchone()
    ok = _check_hash(password, row[0] if row else _DUMMY_HASH)
    return get_user(store, username) if ok and row else None


# -- disabling accounts --------------------------------------------------------------------------------------------
def set_disabled(store: Any, kind: str, name: str, disabled: bool) -> bool:
    """Disables (or enables again) a user (`kind` "user") or a client ("client"); False if there is none such.

    A disabled account cannot sign in or get a token, and the tokens it already holds are revoked: for a user,
    those issued to that user; for a client, every token issued to it, a backend's own and its users' alike
    (`Revocations`). Enabling it again does not revive them; new ones work."""
    table, key = {"user": ("security_users", "username"), "client": ("security_clients", "client_id")}[kind]
    ensure_security_schema(store)
    with store.write_cursor() as cur:  # table and key come from the fixed mapping above, never from input
        cur.execute(store.sql(f"UPDATE {table} SET disabled = ? WHERE {key} = ?"),  # nosec B608
                    (time.time() if disabled else None, name))
        found = cur.rowcount == 1
    if found and disabled:
        from .tokens import MAX_TOKEN_LIFETIME
        Revocations(store).revoke(f"{'sub' if kind == 'user' else 'client'}:{name}", time.time() + MAX_TOKEN_LIFETIME)
    return found


# -- replay protection ---------------------------------------------------------------------------------------------
def claim_jti(store: Any, client_id: str, jti: str, expires: float) -> bool:
    """Records a client assertion's jti; False if it was seen before (a replay). The primary key decides, so
    two concurrent requests with the same jti cannot both win, in one process or many."""
    key = hashlib.sha256(f"{client_id}\x00{jti}".encode("utf-8")).hexdigest()
    now = time.time()
    with store.write_cursor() as cur:
        cur.execute(store.sql("INSERT INTO security_jti (jti, expires) VALUES (?, ?) ON CONFLICT DO NOTHING"),
                    (key, expires))
        fresh = cur.rowcount == 1
        if fresh and secrets.randbelow(64) == 0:
            # Housekeeping: expired jtis can no longer be replayed (the assertion's exp check rejects them).
            cur.execute(store.sql("DELETE FROM security_jti WHERE expires < ?"), (now,))
    return fresh


# -- revoked access tokens (security/revocation.py has the endpoints) -------------------------------------------
SYNC_SECONDS = 1.0
_CLOCK_MARGIN = 5.0  # seconds: rows another process stamped with a slightly slower clock are still read


class Revocations:
    """Revoked tokens, shared by the server's processes through the store: single tokens by their jti, and all
    tokens issued before a moment to a user (`sub:<username>`) or a client (`client:<client_id>`), when the
    account is disabled (`set_disabled`)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._revoked: dict[str, tuple[float, float]] = {}  # key -> (expires, revoked at), epoch seconds
        self._since = 0.0  # newest `revoked` stamp read so far
        self._synced = 0.0  # monotonic time of the last read
        self._lock = threading.Lock()

    def revoke(self, key: str, expires: float) -> None:
        """Records the revocation of a jti or an account key until `expires` (when the last token it can stop
        expires); effective here at once, elsewhere within SYNC_SECONDS. Revoking again moves the moment on."""
        self.revoke_all([key], expires)

    def revoke_all(self, keys: list[str], expires: float) -> None:
        """`revoke` for several keys, in one transaction."""
        if not keys:
            return
        store, now = self.store, time.time()
        with store.write_cursor() as cur:
            cur.executemany(store.sql("INSERT INTO security_revoked (jti, expires, revoked) VALUES (?, ?, ?) ON "
                                      "CONFLICT (jti) DO UPDATE SET expires = excluded.expires, "
                                      "revoked = excluded.revoked"), [(k, expires, now) for k in keys])
            if secrets.randbelow(32) == 0:  # housekeeping: a revocation outlives its tokens by nothing
                cur.execute(store.sql("DELETE FROM security_revoked WHERE expires < ?"), (now - 60,))
        with self._lock:
            for key in keys:
                self._revoked[key] = (expires, now)

    def revoked(self, jti: str | None) -> bool:
        """Whether this token id was revoked."""
        if jti is None:
            return False
        self._fresh()
        return jti in self._revoked

    def refuses(self, caller: Any) -> bool:
        """Whether a caller's token was revoked: by its id, or as one issued to an account before the account
        was disabled. `caller` is a tokens.TokenCaller of our own issuing."""
        self._fresh()
        if caller.token_id in self._revoked:
            return True
        person = f"sub:{caller.subject}" if caller.kind == "person" else None  # users and clients: two namespaces
        for key in (person, f"client:{caller.client_id}" if caller.client_id else None):
            found = self._revoked.get(key) if key else None
            if found is not None and (caller.issued is None or caller.issued <= found[1]):
                return True
        return False

    def _fresh(self) -> None:
        if time.monotonic() - self._synced >= SYNC_SECONDS:
            self._sync()

    def _sync(self) -> None:
        with self._lock:
            if time.monotonic() - self._synced < SYNC_SECONDS:
                return  # another thread just did
            rows = self.store.query("SELECT jti, expires, revoked FROM security_revoked WHERE revoked >= ?",
                                    [self._since - _CLOCK_MARGIN])
            now = time.time()
            for key, expires, stamp in rows:
                self._revoked[key] = (expires, stamp)
                self._since = max(self._since, stamp)
            if len(self._revoked) > 1000:  # forget revocations whose tokens have expired anyway
                self._revoked = {k: v for k, v in self._revoked.items() if v[0] >= now}
            self._synced = time.monotonic()
