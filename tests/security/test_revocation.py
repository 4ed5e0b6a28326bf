"""Revoking tokens (RFC 7009), introspecting them (RFC 7662), and a reused authorization code revoking the
token issued for it (RFC 6749 4.1.2); SQLite and PostgreSQL."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from healthtwin.fhir.outcome import FHIRError
from healthtwin.security import clients as clients_module
from healthtwin.security.clients import Revocations
from healthtwin.security.smart import JWT_BEARER

from .conftest import BASE
from .test_smart import exchange, get_code, pkce, refused


@pytest.fixture
def http(smart):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from healthtwin.security.revocation import revocation_routes
    from healthtwin.security.smart import smart_routes
    app = Starlette(routes=smart_routes(smart) + revocation_routes(smart))
    with TestClient(app, base_url=BASE, follow_redirects=False) as c:
        yield c


def bearer(token: str) -> SimpleNamespace:
    return SimpleNamespace(headers={"authorization": f"Bearer {token}"})


def refused_401(tokens, token: str) -> str:
    with pytest.raises(FHIRError) as err:
        tokens.identify(bearer(token))
    assert err.value.status == 401
    return str(err.value)


def user_token(http, app_client) -> str:
    verifier, challenge = pkce()
    resp = exchange(http, app_client, get_code(http, app_client, challenge), verifier)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def test_discovery_names_both_endpoints(http):
    doc = http.get("/.well-known/smart-configuration").json()
    assert doc["revocation_endpoint"] == BASE + "/auth/revoke"
    assert doc["introspection_endpoint"] == BASE + "/auth/introspect"


def test_a_reused_code_revokes_the_token_issued_for_it(http, app_client, citizen, tokens):
    verifier, challenge = pkce()
    code = get_code(http, app_client, challenge)
    token = exchange(http, app_client, code, verifier).json()["access_token"]
    assert tokens.identify(bearer(token)).subject == "alice"  # works, and is now cached
    description = refused(exchange(http, app_client, code, verifier), "invalid_grant")
    assert "revoked" in description
    assert "revoked" in refused_401(tokens, token)  # the cached caller is refused too


def test_a_client_revokes_its_own_token_and_no_one_elses(http, app_client, citizen, tokens, store):
    from healthtwin.security.clients import add_client
    token = user_token(http, app_client)
    other = add_client(store, "other app", scopes="patient/*.rs", redirect_uris=["https://other.example/cb"])
    refused(http.post("/auth/revoke", data={"client_id": other, "token": token}), "unauthorized_client")
    assert tokens.identify(bearer(token)).subject == "alice"
    resp = http.post("/auth/revoke", data={"client_id": app_client, "token": token})
    assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"
    assert "revoked" in refused_401(tokens, token)
    # RFC 7009: an invalid or already revoked token is answered 200 as well (nothing to learn from it)
    assert http.post("/auth/revoke", data={"client_id": app_client, "token": "not.a.token"}).status_code == 200
    assert http.post("/auth/revoke", data={"client_id": app_client, "token": token}).status_code == 200
    refused(http.post("/auth/revoke", data={"client_id": "nobody", "token": token}), "invalid_client")
    refused(http.post("/auth/revoke", data={"client_id": app_client}), "invalid_request")


def test_introspection(http, app_client, citizen, backend, tokens):
    def introspect(token, **form):
        body = {"client_assertion_type": JWT_BEARER, "client_assertion": backend.assertion(), "token": token}
        body.update(form)
        return http.post("/auth/introspect", data=body)

    token = user_token(http, app_client)
    live = introspect(token).json()
    assert live["active"] is True and live["sub"] == "alice" and live["client_id"] == app_client
    assert "patient/*.rs" in live["scope"] and live["exp"] > live["iat"]
    assert "patient" not in live and "fhirUser" not in live  # the launch context is the app's own business
    system_token, _ = tokens.mint(backend.client_id, "system", ["system/Observation.rs"], client_id=backend.client_id,
                                  patient="Patient/9")
    assert introspect(system_token).json()["patient"] == "Patient/9"  # its own token: everything
    assert introspect("not.a.token").json() == {"active": False}
    http.post("/auth/revoke", data={"client_id": app_client, "token": token})
    assert introspect(token).json() == {"active": False}
    refused(http.post("/auth/introspect", data={"client_id": app_client, "token": token}), "invalid_client")
    refused(http.post("/auth/introspect", data={"token": token}), "invalid_client")


def test_other_processes_learn_of_a_revocation(store, smart, monkeypatch):
    monkeypatch.setattr(clients_module, "SYNC_SECONDS", 0.0)
    here, there = smart.tokens.revocations, Revocations(store)  # two server processes on one store
    assert not there.revoked("jti-1")
    here.revoke("jti-1", 4102444800.0)
    assert there.revoked("jti-1") and not there.revoked("jti-2")
    monkeypatch.setattr(clients_module, "SYNC_SECONDS", 3600.0)
    here.revoke("jti-2", 4102444800.0)
    assert not there.revoked("jti-2")  # within SYNC_SECONDS a process answers from memory, without a query


# -- disabled accounts -----------------------------------------------------------------------------------------
def test_a_disabled_user_cannot_sign_in_and_their_tokens_die(http, app_client, citizen, tokens, store, monkeypatch):
    monkeypatch.setattr(clients_module, "SYNC_SECONDS", 0.0)  # the disabling writes through the store
    from healthtwin.security.clients import set_disabled, verify_password

    from .conftest import PASSWORD
    from .test_smart import login
    token = user_token(http, app_client)
    other, _ = tokens.mint("bob", "person", ["user/*.rs"])  # another person, untouched
    assert tokens.identify(bearer(token)).subject == "alice"
    assert set_disabled(store, "user", "alice", True)
    assert "revoked" in refused_401(tokens, token)
    assert tokens.identify(bearer(other)).subject == "bob"
    assert verify_password(store, "alice", PASSWORD) is None
    verifier, challenge = pkce()
    from .test_smart import authorize_params
    assert login(http, authorize_params(app_client, challenge)).status_code == 401
    assert set_disabled(store, "user", "alice", False)
    time.sleep(1.01)  # tokens carry whole seconds: one minted in the second of the disabling counts as before it
    fresh = user_token(http, app_client)
    assert tokens.identify(bearer(fresh)).subject == "alice"
    assert "revoked" in refused_401(tokens, token)  # the old one stays dead
    assert not set_disabled(store, "user", "nobody", True)


def test_a_disabled_client_loses_its_tokens_and_its_users_tokens(http, app_client, citizen, backend, tokens,
                                                                 store, monkeypatch):
    monkeypatch.setattr(clients_module, "SYNC_SECONDS", 0.0)
    from healthtwin.security.clients import set_disabled
    user_tok = user_token(http, app_client)
    resp = http.post("/auth/token", data=backend.form())
    system_tok = resp.json()["access_token"]
    assert set_disabled(store, "client", backend.client_id, True)
    assert "revoked" in refused_401(tokens, system_tok)
    refused(http.post("/auth/token", data=backend.form()), "invalid_client")
    assert tokens.identify(bearer(user_tok)).subject == "alice"  # another client's user: untouched
    assert set_disabled(store, "client", app_client, True)
    assert "revoked" in refused_401(tokens, user_tok)


def test_disabling_from_the_command_line_reaches_a_running_server(tmp_path):
    """`healthtwin users disable` in another process; the server's workers refuse the user's token within a
    second (they read revocations from the store)."""
    import subprocess
    import sys

    from starlette.testclient import TestClient

    from healthtwin.composition import create_app
    from healthtwin.security.clients import add_user
    from healthtwin.security.storage import open_store
    data = tmp_path / "data"
    store = open_store(None, data)
    add_user(store, "dr-who", "a long password 1", ["clinician"])
    app = create_app(store, data_dir=data, public_url=BASE, rate=None)
    with TestClient(app) as client:
        tokens = app.state.tokens  # FHIRFastPath passes the Starlette app's attributes on
        token, _ = tokens.mint("dr-who", "person", ["user/*.rs"], roles=["clinician"])
        headers = {"authorization": f"Bearer {token}"}
        assert client.get("/fhir/Patient", headers=headers).status_code == 200
        done = subprocess.run([sys.executable, "-m", "healthtwin.cli", "users", "disable", "dr-who", "--data-dir",
                               str(data)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        time.sleep(1.1)  # SYNC_SECONDS
        refused_resp = client.get("/fhir/Patient", headers=headers)
        assert refused_resp.status_code == 401 and "revoked" in refused_resp.text
    store.close()
