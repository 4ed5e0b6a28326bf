"""Fixtures for the security tests: keys, a SMART server over a real store, and an attacker's toolbox."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from healthtwin.security.clients import add_client, add_user, ensure_security_schema
from healthtwin.security.keys import KeySet, public_jwk
from healthtwin.security.smart import JWT_BEARER, SmartConfig, smart_routes
from healthtwin.security.tokens import TokenService

BASE = "http://testserver"
TOKEN_URL = BASE + "/auth/token"
FHIR = BASE + "/fhir"
PASSWORD = "correct horse battery staple"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_jwt(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None = None) -> str:
    """A JWT built by hand — for the tokens libraries refuse to make: alg none, HS256 keyed with a public key."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    sig = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(sig)


class BackendClient:
    """A registered backend service with its private keys, able to make (good and evil) assertions."""

    def __init__(self, client_id: str, keys: dict[str, tuple[Any, str]]) -> None:
        self.client_id = client_id
        self.keys = keys  # kid -> (private key, alg)

    def assertion(self, kid: str | None = None, **overrides: Any) -> str:
        kid = kid or next(iter(self.keys))
        key, alg = self.keys[kid]
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": TOKEN_URL, "exp": now + 240,
                  "iat": now, "jti": uuid.uuid4().hex}
        header_kid = overrides.pop("header_kid", kid)
        alg = overrides.pop("alg", alg)
        key = overrides.pop("key", key)
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": header_kid, "typ": "JWT"})

    def form(self, assertion: str | None = None, scope: str = "system/Observation.rs", **extra: str) -> dict:
        form = {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
                "client_assertion": assertion or self.assertion(), "scope": scope}
        form.update(extra)
        return form


@pytest.fixture(scope="session")
def keys() -> KeySet:
    return KeySet.generate()


@pytest.fixture(scope="session")
def client_keys() -> dict[str, tuple[Any, str]]:
    ec384 = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec256 = ec.generate_private_key(ec.SECP256R1())
    return {public_jwk(ec384.public_key())["kid"]: (ec384, "ES384"),
            public_jwk(rsa_key.public_key())["kid"]: (rsa_key, "RS384"),
            public_jwk(ec256.public_key())["kid"]: (ec256, "ES256")}


@pytest.fixture
def tokens(keys) -> TokenService:
    return TokenService(keys, BASE, FHIR)


@pytest.fixture
def smart(store, tokens):
    ensure_security_schema(store)
    return SmartConfig(store, tokens, BASE)


@pytest.fixture
def backend(store, client_keys) -> BackendClient:
    jwks = {"keys": [public_jwk(k.public_key()) for k, _ in client_keys.values()]}
    client_id = add_client(store, "Lab system", jwks=jwks, scopes="system/Observation.rs system/Patient.r",
                           organization="Organization/lab")
    return BackendClient(client_id, client_keys)


@pytest.fixture
def http(smart):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient
    with TestClient(Starlette(routes=smart_routes(smart)), base_url=BASE, follow_redirects=False) as c:
        yield c


@pytest.fixture
def app_client(store) -> str:
    return add_client(store, "Citizen app", scopes="openid fhirUser launch/patient patient/*.rs user/*.rs",
                      redirect_uris=["https://app.example/cb", "http://localhost:8765/callback"])


@pytest.fixture
def citizen(store) -> str:
    add_user(store, "alice", PASSWORD, ["citizen"], patient="Patient/123")
    return "alice"


@pytest.fixture
def app(store, tmp_path):
    """The real application over the role-play world (world.py), loaded: (test client, world, store)."""
    from . import world as W
    client, world = W.build(store, tmp_path)
    with client as c:
        W.load(c, world)
        yield c, world, store
