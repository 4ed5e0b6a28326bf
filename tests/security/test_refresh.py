"""Refresh tokens: rotated on each use, a reused one ends its sign-in, bound to client and person, never wider
than the sign-in, and bounded in time (SQLite and PostgreSQL)."""
from __future__ import annotations

import threading

import pytest

from healthtwin.security import clients as clients_module
from healthtwin.security.clients import add_client, set_disabled

from .test_revocation import bearer, refused_401
from .test_smart import exchange, get_code, pkce, refused

SCOPES = "openid launch/patient patient/*.rs offline_access"


@pytest.fixture(autouse=True)
def _sync_at_once(monkeypatch):
    monkeypatch.setattr(clients_module, "SYNC_SECONDS", 0.0)


@pytest.fixture
def http(smart):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from healthtwin.security.revocation import revocation_routes
    from healthtwin.security.smart import smart_routes

    from .conftest import BASE
    with TestClient(Starlette(routes=smart_routes(smart) + revocation_routes(smart)), base_url=BASE,
                    follow_redirects=False) as c:
        yield c


@pytest.fixture
def phone_app(store) -> str:
    return add_client(store, "Citizen phone app", scopes="openid fhirUser launch/patient patient/*.rs offline_access "
                      "online_access", redirect_uris=["https://app.example/cb"])


def sign_in(http, client_id, scope=SCOPES) -> dict:
    verifier, challenge = pkce()
    resp = exchange(http, client_id, get_code(http, client_id, challenge, scope=scope), verifier)
    assert resp.status_code == 200, resp.text
    return resp.json()


def refresh(http, client_id, token, **form):
    return http.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                          "client_id": client_id, **form})


def test_offline_access_gets_a_refresh_token_that_rotates(http, phone_app, citizen, tokens):
    assert "refresh_token" not in sign_in(http, phone_app, "launch/patient patient/*.rs")
    first = sign_in(http, phone_app)
    second = refresh(http, phone_app, first["refresh_token"])
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"] and body["patient"] == "123"
    assert "offline_access" in body["scope"] and tokens.identify(bearer(body["access_token"])).subject == "alice"
    third = refresh(http, phone_app, body["refresh_token"])
    assert third.status_code == 200
    doc = http.get("/.well-known/smart-configuration").json()
    assert "refresh_token" in doc["grant_types_supported"] and "permission-offline" in doc["capabilities"]


def test_a_reused_refresh_token_ends_the_sign_in(http, phone_app, citizen, tokens):
    first = sign_in(http, phone_app)
    second = refresh(http, phone_app, first["refresh_token"]).json()
    # the first token comes back (a copy, say): the whole family ends, the thief's and the owner's alike
    assert "copied" in refused(refresh(http, phone_app, first["refresh_token"]), "invalid_grant")
    refused(refresh(http, phone_app, second["refresh_token"]), "invalid_grant")
    assert "revoked" in refused_401(tokens, second["access_token"])
    assert "revoked" in refused_401(tokens, first["access_token"])


def test_concurrent_redemptions_of_one_token_let_one_through(http, phone_app, citizen):
    token = sign_in(http, phone_app)["refresh_token"]
    results, start = [], threading.Barrier(8)

    def attempt():
        start.wait()
        results.append(refresh(http, phone_app, token).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(200) == 1 and results.count(400) == 7


def test_scopes_can_narrow_not_widen(http, phone_app, citizen):
    first = sign_in(http, phone_app, "launch/patient patient/Observation.rs offline_access")
    narrowed = refresh(http, phone_app, first["refresh_token"], scope="patient/Observation.rs")
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "patient/Observation.rs"
    # the next one still carries the sign-in's grant, and no more
    again = refresh(http, phone_app, narrowed.json()["refresh_token"])
    assert "offline_access" in again.json()["scope"]
    refused(refresh(http, phone_app, again.json()["refresh_token"], scope="patient/*.rs"), "invalid_scope")


def test_bound_to_the_client_and_to_an_enabled_person(http, phone_app, citizen, app_client, store):
    stolen = sign_in(http, phone_app)["refresh_token"]
    refused(refresh(http, app_client, stolen), "invalid_grant")  # another app
    refused(refresh(http, phone_app, stolen), "invalid_grant")  # and that ended the sign-in
    token = sign_in(http, phone_app)["refresh_token"]
    set_disabled(store, "user", "alice", True)
    refused(refresh(http, phone_app, token), "invalid_grant")


def test_the_sign_in_expires_whatever_the_refreshes(http, phone_app, citizen, store):
    token = sign_in(http, phone_app)["refresh_token"]
    with store.write_cursor() as cur:
        cur.execute(store.sql("UPDATE security_refresh SET expires = ?"), (1.0,))
    assert "expired" in refused(refresh(http, phone_app, token), "invalid_grant")


def test_revoking_a_refresh_token_ends_the_sign_in(http, phone_app, citizen, tokens):
    first = sign_in(http, phone_app)
    assert http.post("/auth/revoke", data={"client_id": phone_app, "token": first["refresh_token"],
                                           "token_type_hint": "refresh_token"}).status_code == 200
    refused(refresh(http, phone_app, first["refresh_token"]), "invalid_grant")
    assert "revoked" in refused_401(tokens, first["access_token"])


# -- a person's own sessions -------------------------------------------------------------------------------------
@pytest.fixture
def http_sessions(smart):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from healthtwin.security.refresh import session_routes
    from healthtwin.security.revocation import revocation_routes
    from healthtwin.security.smart import smart_routes

    from .conftest import BASE
    routes = smart_routes(smart) + revocation_routes(smart) + session_routes(smart)
    with TestClient(Starlette(routes=routes), base_url=BASE, follow_redirects=False) as c:
        yield c


def test_a_person_sees_and_ends_their_app_sessions(http_sessions, phone_app, app_client, citizen, tokens, store):
    http = http_sessions
    first = sign_in(http, phone_app)
    sign_in(http, phone_app, "launch/patient patient/*.rs online_access")  # a second sign-in, shorter-lived
    me = {"authorization": f"Bearer {first['access_token']}"}
    listed = http.get("/auth/sessions", headers=me)
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    sessions = listed.json()["sessions"]
    assert [s["client_name"] for s in sessions] == ["Citizen phone app"] * 2
    assert sessions[0]["expires"] > sessions[1]["expires"]  # offline: 30 days; online: 12 hours
    # another person sees none of them, and cannot end them (absent and foreign answer alike)
    from healthtwin.security.clients import add_user

    from .conftest import PASSWORD
    add_user(store, "bob", PASSWORD, ["citizen"], patient="Patient/456")
    bob, _ = tokens.mint("bob", "person", ["patient/*.rs"], patient="Patient/456")
    other = {"authorization": f"Bearer {bob}"}
    assert http.get("/auth/sessions", headers=other).json() == {"sessions": []}
    assert http.delete(f"/auth/sessions/{sessions[0]['id']}", headers=other).status_code == 404
    assert http.delete("/auth/sessions/made-up", headers=me).status_code == 404
    # ending one: its refresh token stops working, and the access tokens it issued are revoked
    assert http.delete(f"/auth/sessions/{sessions[0]['id']}", headers=me).status_code == 204
    refused(refresh(http, phone_app, first["refresh_token"]), "invalid_grant")
    assert "revoked" in refused_401(tokens, first["access_token"])
    # a system token, or none, gets no sessions
    system, _ = tokens.mint("lab", "system", ["system/*.rs"], client_id="lab")
    assert http.get("/auth/sessions", headers={"authorization": f"Bearer {system}"}).status_code == 403
    anonymous = http.get("/auth/sessions")
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["www-authenticate"]
    assert http.get("/auth/sessions", headers={"authorization": "Bearer nonsense"}).status_code == 401
