"""SMART EHR launch through the real application: a hospital's EHR asks for a launch value, its clinician signs
an app in with it, and the app's token carries the patient and encounter, never more rights than the
clinician's own (SQLite and PostgreSQL)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from healthtwin.security.clients import add_client, add_user
from healthtwin.security.keys import public_jwk

from .conftest import PASSWORD, BackendClient
from .test_smart import authorize_params, exchange, pkce, refused

SCOPES = "openid fhirUser launch patient/*.rs offline_access"


@pytest.fixture
def hospital(app, client_keys):
    """(test client, world, store, EHR of org-a, the app it opens): the role-play world with an EHR, an app and
    two clinicians, one of org-a (treating p1 through the in-progress encounter e1) and one of org-b."""
    client, world, store = app
    jwks = {"keys": [public_jwk(k.public_key()) for k, _ in client_keys.values()]}
    ehr = BackendClient(add_client(store, "Hospital A EHR", jwks=jwks, scopes="launch",
                                   organization="Organization/org-a"), client_keys)
    chart = add_client(store, "Charting app", scopes=SCOPES + " user/*.rs", redirect_uris=["https://app.example/cb"])
    add_user(store, "dr-a", PASSWORD, ["clinician"], practitioner="Practitioner/doc-a",
             organization="Organization/org-a")
    add_user(store, "dr-b", PASSWORD, ["clinician"], practitioner="Practitioner/doc-b",
             organization="Organization/org-b")
    return client, world, store, ehr, chart


def new_launch(client, ehr: BackendClient, **form) -> dict:
    resp = client.post("/auth/launch", data={"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:"
                                             "jwt-bearer", "client_assertion": ehr.assertion(), **form})
    return resp


def launch_value(client, ehr, **form) -> str:
    resp = new_launch(client, ehr, **form)
    assert resp.status_code == 200, resp.text
    assert resp.json()["expires_in"] == 300 and resp.headers["cache-control"] == "no-store"
    return resp.json()["launch"]


def sign_in(client, chart, launch, user="dr-a", scope=SCOPES):
    """(redirect query, PKCE verifier) of an authorization with the launch value."""
    verifier, challenge = pkce()
    resp = client.post("/auth/authorize", data={**authorize_params(chart, challenge, scope=scope, launch=launch),
                                                "username": user, "password": PASSWORD}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    return parse_qs(urlsplit(resp.headers["location"]).query), verifier


def token_for(client, chart, launch, user="dr-a", scope=SCOPES) -> dict:
    query, verifier = sign_in(client, chart, launch, user, scope)
    assert "code" in query, query
    resp = exchange(client, chart, query["code"][0], verifier)
    assert resp.status_code == 200, resp.text
    return resp.json()


def bearer(body: dict) -> dict[str, str]:
    return {"authorization": f"Bearer {body['access_token']}"}


def test_discovery_declares_ehr_launch(hospital):
    client = hospital[0]
    doc = client.get("/.well-known/smart-configuration").json()
    assert {"launch-ehr", "context-ehr-patient", "context-ehr-encounter"} <= set(doc["capabilities"])
    assert "launch" in doc["scopes_supported"]


def test_ehr_launch_gives_the_app_its_patient_and_encounter(hospital):
    client, world, _, ehr, chart = hospital
    launch = launch_value(client, ehr, patient="p1", encounter="Encounter/e1", app_client_id=chart)
    _, challenge = pkce()
    page = client.get("/auth/authorize", params=authorize_params(chart, challenge, scope=SCOPES, launch=launch))
    assert page.status_code == 200 and "Patient/p1" in page.text and "Encounter/e1" in page.text
    body = token_for(client, chart, launch)
    assert body["patient"] == "p1" and body["encounter"] == "e1" and body["need_patient_banner"] is True
    assert set(body["scope"].split()) == set(SCOPES.split())
    caller = world.tokens.caller(body["access_token"])
    assert caller.patient == "Patient/p1" and caller.fhir_user == "Practitioner/doc-a"
    assert caller.roles == {"clinician"} and caller.organization == "Organization/org-a"
    # patient/ scopes: the launch patient only, and of it only what the clinician may see (no labelled rows).
    assert client.get("/fhir/Observation/o1", headers=bearer(body)).status_code == 200
    assert client.get("/fhir/Observation/o2", headers=bearer(body)).status_code == 404
    found = client.get("/fhir/Observation", headers=bearer(body)).json()
    assert sorted(e["resource"]["id"] for e in found.get("entry", [])) == ["o1"] and found["total"] == 1


def test_a_launch_adds_context_not_rights(hospital):
    """p2's only encounter at org-a is finished: no treating relationship, so the launch opens nothing."""
    client, _, _, ehr, chart = hospital
    body = token_for(client, chart, launch_value(client, ehr, patient="Patient/p2"))
    assert body["patient"] == "p2" and "encounter" not in body
    for path in ("/fhir/Patient/p2", "/fhir/Observation/o2", "/fhir/Observation/o1"):
        assert client.get(path, headers=bearer(body)).status_code == 404, path
    assert client.get("/fhir/Observation", headers=bearer(body)).json()["total"] == 0


def test_a_launch_opens_one_sign_in(hospital):
    client, _, _, ehr, chart = hospital
    launch = launch_value(client, ehr, patient="p1")
    token_for(client, chart, launch)
    query, _ = sign_in(client, chart, launch)
    assert query["error"] == ["invalid_request"] and "code" not in query


def test_a_launch_is_bound_to_the_app_it_was_made_for(hospital):
    client, _, store, ehr, chart = hospital
    other = add_client(store, "Other app", scopes=SCOPES, redirect_uris=["https://app.example/cb"])
    launch = launch_value(client, ehr, patient="p1", app_client_id=chart)
    query, _ = sign_in(client, other, launch)
    assert query["error"] == ["invalid_request"]
    assert "code" in sign_in(client, chart, launch)[0]  # still good for its own app


def test_only_the_launching_organizations_staff_may_use_it(hospital):
    client, _, _, ehr, chart = hospital
    launch = launch_value(client, ehr, patient="p1")
    query, _ = sign_in(client, chart, launch, user="dr-b")
    assert query["error"] == ["access_denied"] and "code" not in query
    assert "code" in sign_in(client, chart, launch)[0]  # the refusal did not use it up


def test_a_launch_expires(hospital):
    client, _, store, ehr, chart = hospital
    launch = launch_value(client, ehr, patient="p1")
    with store.write_cursor() as cur:
        cur.execute("UPDATE security_launch SET expires = 0")
    assert sign_in(client, chart, launch)[0]["error"] == ["invalid_request"]


def test_the_launch_scope_and_parameter_go_together(hospital):
    client, _, _, ehr, chart = hospital
    assert sign_in(client, chart, None, scope=SCOPES)[0]["error"] == ["invalid_request"]
    launch = launch_value(client, ehr, patient="p1")
    assert sign_in(client, chart, launch, scope="openid patient/*.rs")[0]["error"] == ["invalid_request"]
    assert sign_in(client, chart, "made-up-value")[0]["error"] == ["invalid_request"]


def test_who_may_make_a_launch(hospital, backend):
    client, _, store, ehr, chart = hospital
    refused(client.post("/auth/launch", data={"client_id": chart, "patient": "p1"}), "invalid_client")
    # A system registered without the launch scope (a laboratory's) cannot make launches.
    assert "launch" in refused(new_launch(client, backend, patient="p1"), "unauthorized_client")
    refused(new_launch(client, ehr, patient="nobody"), "invalid_request")
    refused(new_launch(client, ehr, patient="p1", encounter="e2"), "invalid_request")  # e2 is p2's
    refused(new_launch(client, ehr, patient="p1", app_client_id="no-such-app"), "invalid_request")
    assertion = ehr.assertion()
    assert new_launch(client, ehr, client_assertion=assertion, patient="p1").status_code == 200
    refused(new_launch(client, ehr, client_assertion=assertion, patient="p1"))  # replayed assertion
    assert store.query("SELECT count(*) FROM security_launch", [])[0][0] == 1


def test_the_context_survives_a_refresh(hospital):
    client, world, _, ehr, chart = hospital
    body = token_for(client, chart, launch_value(client, ehr, patient="p1", encounter="e1"))
    again = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                             "client_id": chart})
    assert again.status_code == 200, again.text
    assert again.json()["patient"] == "p1" and again.json()["encounter"] == "e1"
    assert world.tokens.caller(again.json()["access_token"]).patient == "Patient/p1"


def test_the_citizen_sees_the_launch_in_their_access_log(hospital):
    client, world, _, ehr, chart = hospital
    launch_value(client, ehr, patient="p1", app_client_id=chart)
    log = client.get("/fhir/Patient/p1/$access-log", headers=world.headers["citizen"]).json()
    launches = [e["resource"] for e in log["entry"] if e["resource"]["subtype"][0]["code"] == "110120"]
    assert len(launches) == 1
    agents = {a["who"]["identifier"]["value"] for a in launches[0]["agent"]}
    assert agents == {ehr.client_id, chart}
