"""Attacks on authentication through the running app, and tamper detection through `healthtwin audit verify`."""
from __future__ import annotations

import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from healthtwin.security.keys import KeySet, public_jwk

from . import world as W
from .conftest import hand_made_jwt


def _claims(**over):
    now = int(time.time())
    claims = {"iss": W.BASE, "aud": W.BASE + "/fhir", "sub": "root", "iat": now, "nbf": now, "exp": now + 300,
              "jti": uuid.uuid4().hex, "scope": "user/*.cruds", "kind": "person", "roles": ["administrator"]}
    claims.update(over)
    return claims


def test_bad_tokens_are_refused_end_to_end(app):
    c, world, _ = app
    keys = world.keys
    good = jwt.encode(_claims(), keys.signing_key, algorithm="ES256", headers={"kid": keys.kid, "typ": "at+jwt"})
    assert c.get("/fhir/Patient/p2", headers={"authorization": f"Bearer {good}"}).status_code == 200
    other = KeySet.generate()
    attacker = ec.generate_private_key(ec.SECP256R1())
    forged = {
        "foreign key": jwt.encode(_claims(), other.signing_key, algorithm="ES256",
                                  headers={"kid": keys.kid, "typ": "at+jwt"}),
        "expired": jwt.encode(_claims(exp=int(time.time()) - 120, iat=int(time.time()) - 600), keys.signing_key,
                              algorithm="ES256", headers={"kid": keys.kid, "typ": "at+jwt"}),
        "wrong audience": jwt.encode(_claims(aud="https://other.example/fhir"), keys.signing_key, algorithm="ES256",
                                     headers={"kid": keys.kid, "typ": "at+jwt"}),
        "alg none": hand_made_jwt({"alg": "none", "kid": keys.kid, "typ": "at+jwt"}, _claims()),
        "HS256 with our public key": hand_made_jwt({"alg": "HS256", "kid": keys.kid, "typ": "at+jwt"}, _claims(),
                                                   secret=str(keys.public_jwk()).encode()),
        "embedded jwk": jwt.encode(_claims(), attacker, algorithm="ES256",
                                   headers={"kid": keys.kid, "typ": "at+jwt", "jwk": public_jwk(attacker.public_key())}),
        "id token as access token": jwt.encode(_claims(), keys.signing_key, algorithm="ES256",
                                               headers={"kid": keys.kid, "typ": "JWT"}),
        "tampered payload": good.split(".")[0] + "." + hand_made_jwt({}, _claims(sub="evil")).split(".")[1] + "."
        + good.split(".")[2],
    }
    for name, token in forged.items():
        r = c.get("/fhir/Patient/p2", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 401, name
        assert "invalid_token" in r.headers["www-authenticate"], name
        assert "Mammadov" not in r.text
    assert c.get("/fhir/Patient/p2", headers={"authorization": "Basic cm9vdDpyb290"}).status_code == 401


def test_replayed_client_assertion_refused_through_the_app(app, client_keys):
    c, world, store = app
    from healthtwin.security.clients import add_client
    from healthtwin.security.smart import JWT_BEARER

    from .conftest import BackendClient
    jwks = {"keys": [public_jwk(k.public_key()) for k, _ in client_keys.values()]}
    cid = add_client(store, "Registry sync", jwks=jwks, scopes="system/*.rs")
    backend = BackendClient(cid, client_keys)
    assertion = backend.assertion()
    form = {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER, "client_assertion": assertion,
            "scope": "system/Observation.rs"}
    first = c.post("/auth/token", data=form)
    assert first.status_code == 200, first.text
    assert c.post("/auth/token", data=form).status_code in (400, 401)
    token = first.json()["access_token"]
    # a system token without a role: rows by scope, sensitive labels withheld; no other type
    got = c.get("/fhir/Observation", headers={"authorization": f"Bearer {token}"}).json()
    assert {e["resource"]["id"] for e in got["entry"]} == {"o1", "o2", "okid"}
    assert c.get("/fhir/Patient/p1", headers={"authorization": f"Bearer {token}"}).status_code == 403  # scope
    # a client acting for an organization must carry its role: without one it gets nothing
    org_client = world.mint("x", subject="lab2", kind="system", scopes=["system/*.rs"],
                            organization="Organization/org-lab", client_id="lab2")
    assert c.get("/fhir/Observation", headers=org_client).status_code == 403


def test_audit_tamper_is_detected_by_the_cli(app, tmp_path, capsys):
    c, world, store = app
    for rid in ("o1", "o2", "p1"):
        c.get(f"/fhir/Observation/{rid}", headers=world.headers["clinician"])
    from healthtwin import cli
    from healthtwin.security.audit import AuditLog
    # The real command line, on a data folder with no store: a clear error, and nothing created there.
    assert cli.main(["audit", "verify", "--data-dir", str(tmp_path / "cli")]) == 2
    assert "no store at" in capsys.readouterr().err and not (tmp_path / "cli").exists()
    log = AuditLog(store)
    seq, head = log.head()
    assert seq >= 4

    def verify(*extra: str) -> int:
        from healthtwin.security import commands
        # `healthtwin audit verify [--anchor]` on the fixture's store (SQLite file or PostgreSQL schema)
        args = type("A", (), {"audit_command": "verify", "anchor": list(extra), "archive": None})()
        saved, commands._read_store = commands._read_store, lambda a: _Unclosed(store)
        try:
            return commands.cmd_audit(args)
        finally:
            commands._read_store = saved

    assert verify(f"{seq}:{head}") == 0
    with store.write_cursor() as cur:  # edit
        cur.execute(store.sql("UPDATE audit_log SET agent = 'someone-else' WHERE seq = ?"), (2,))
    assert verify() == 1 and "entry 2" in capsys.readouterr().err
    with store.write_cursor() as cur:  # delete (renumbering nothing leaves a gap)
        cur.execute(store.sql("DELETE FROM audit_log WHERE seq = ?"), (2,))
    assert verify() == 1
    with store.write_cursor() as cur:  # reorder: swap two events' bodies
        cur.execute("SELECT seq, event FROM audit_log WHERE seq IN (3, 4) ORDER BY seq")
        (a, ea), (b, eb) = cur.fetchall()
        cur.execute(store.sql("UPDATE audit_log SET event = ? WHERE seq = ?"), (eb, a))
        cur.execute(store.sql("UPDATE audit_log SET event = ? WHERE seq = ?"), (ea, b))
    assert verify() == 1
    with store.write_cursor() as cur:  # truncating the newest entries is caught only by the anchor
        cur.execute(store.sql("DELETE FROM audit_log WHERE seq >= ?"), (2,))
    assert verify() == 0
    assert verify(f"{seq}:{head}") == 1


class _Unclosed:
    """The fixture's store, handed to a command that closes what it opened: the fixture closes it later."""

    def __init__(self, store):
        self._store = store

    def close(self):
        pass

    def __getattr__(self, name):
        return getattr(self._store, name)
