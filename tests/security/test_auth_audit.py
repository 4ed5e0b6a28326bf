"""Sign-ins, tokens, revocations and account changes are in the audit chain, refusals included; no token is
released that could not be recorded (SQLite and PostgreSQL)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from healthtwin.security.audit import AuditError, AuditLog, decode_event
from healthtwin.security.clients import add_client, add_user

from .conftest import BASE, PASSWORD
from .test_smart import authorize_params, exchange, get_code, login, pkce, refused


def auth_events(store) -> list[dict]:
    rows = store.query("SELECT event FROM audit_log ORDER BY seq", [])
    events = [decode_event(bytes(r[0])) for r in rows]
    return [e for e in events if e["type"]["code"] in ("110113", "110114")]


def summary(event: dict) -> tuple[str, str, str, str]:
    """(subtype, outcome, who, description)"""
    return (event["subtype"][0]["display"], event["outcome"], event["agent"][0]["who"]["identifier"]["value"],
            event["outcomeDesc"])


@pytest.fixture
def http(smart, store):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from healthtwin.security.revocation import revocation_routes
    from healthtwin.security.smart import smart_routes
    log = AuditLog(store)
    log.ensure_schema()
    smart.audit = log
    with TestClient(Starlette(routes=smart_routes(smart) + revocation_routes(smart)), base_url=BASE,
                    follow_redirects=False) as c:
        yield c


def test_sign_ins_tokens_and_refusals_are_recorded(http, store, app_client, citizen, backend):
    assert http.post("/auth/token", data=backend.form()).status_code == 200
    refused(http.post("/auth/token", data=backend.form(assertion=backend.assertion(aud="https://elsewhere"))))
    assert login(http, authorize_params(app_client, pkce()[1]), password="wrong password!").status_code == 401
    verifier, challenge = pkce()
    token = exchange(http, app_client, get_code(http, app_client, challenge), verifier).json()["access_token"]
    assert http.post("/auth/revoke", data={"client_id": app_client, "token": token}).status_code == 200
    got = [summary(e) for e in auth_events(store)]
    assert got[0][:3] == ("Login", "0", backend.client_id) and "client_credentials" in got[0][3]
    assert got[1][:3] == ("Login", "4", backend.client_id) and "invalid_client" in got[1][3]
    assert got[2][:3] == ("Login", "4", "alice") and "refused" in got[2][3]
    assert got[3][:3] == ("Login", "0", "alice") and "signed in" in got[3][3]
    assert got[4][:3] == ("Login", "0", "alice") and "authorization_code" in got[4][3]
    assert got[5][:3] == ("Logout", "0", "alice") and "revoked" in got[5][3]
    assert len(got) == 6
    network = auth_events(store)[2]["agent"][0]["network"]
    assert network["address"] and auth_events(store)[4]["agent"][1]["who"]["identifier"]["value"] == app_client
    assert AuditLog(store).verify().ok


class BrokenAudit:
    def append(self, events):
        raise AuditError("the audit trail could not be written")


def test_no_token_leaves_unrecorded(http, smart, backend, app_client, citizen):
    smart.audit = BrokenAudit()
    resp = http.post("/auth/token", data=backend.form())
    assert resp.status_code == 503 and "access_token" not in resp.text
    assert resp.json()["error"] == "temporarily_unavailable"
    page = login(http, authorize_params(app_client, pkce()[1]))
    assert page.status_code == 400 and "cannot be recorded" in page.text and "location" not in page.headers


def test_account_and_key_changes_from_the_command_line_are_recorded(tmp_path):
    from healthtwin.security.storage import open_store
    data = tmp_path / "data"
    store = open_store(None, data)
    add_user(store, "dr-who", PASSWORD, ["clinician"])
    client_id = add_client(store, "app", scopes="patient/*.rs", redirect_uris=["https://app.example/cb"])

    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "healthtwin.cli", *args, "--data-dir", str(data)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    cli("users", "disable", "dr-who")
    cli("clients", "disable", client_id)
    cli("users", "enable", "dr-who")
    cli("keys", "rotate-signing")
    got = [summary(e) for e in auth_events(store)]
    assert [g[0] for g in got] == ["User Security Attributes Changed"] * 3 + ["Security Configuration"]
    assert [g[3] for g in got[:3]] == ["user dr-who disabled", f"client {client_id} disabled", "user dr-who enabled"]
    assert "token-signing key rotated" in got[3][3] and all(g[1] == "0" for g in got)
    assert AuditLog(store).verify().ok
    store.close()
