"""Apps that authenticate with a client secret (client_secret_basic or client_secret_post) at the token
endpoint, as a relying party such as another Health Twin's pages does: the secret is required once
registered, checked against its scrypt hash, and sent one way only (SQLite and PostgreSQL)."""
from __future__ import annotations

import base64

import pytest

from healthtwin.security.clients import add_client, get_client

from .test_smart import get_code, pkce, post_token, refused

SECRET = "a client secret of more than thirty-two characters"


@pytest.fixture
def secret_app(store) -> str:
    return add_client(store, "Confidential web app", scopes="openid fhirUser launch/patient patient/*.rs",
                      redirect_uris=["https://app.example/cb"], secret=SECRET)


def _form(code, verifier, **extra):
    return {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": "https://app.example/cb", **extra}


def _basic(client_id, secret):
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def test_basic_and_post_give_a_token_and_the_secret_is_kept_hashed(http, store, secret_app, citizen):
    verifier, challenge = pkce()
    answer = http.post("/auth/token", data=_form(get_code(http, secret_app, challenge), verifier),
                       headers={"authorization": _basic(secret_app, SECRET)})
    assert answer.status_code == 200 and answer.json()["access_token"], answer.text
    verifier, challenge = pkce()
    answer = post_token(http, _form(get_code(http, secret_app, challenge), verifier, client_id=secret_app,
                                    client_secret=SECRET))
    assert answer.status_code == 200 and answer.json()["access_token"], answer.text
    stored = get_client(store, secret_app).secret_hash
    assert stored.startswith("scrypt$") and SECRET not in stored


def test_a_wrong_missing_or_doubled_secret_is_refused(http, secret_app, citizen):
    for form_extra, headers in (({"client_id": secret_app, "client_secret": SECRET[:-1]}, {}),
                                ({"client_id": secret_app}, {}),
                                ({}, {"authorization": _basic(secret_app, "wrong")}),
                                ({}, {"authorization": "Basic not-base64!"})):
        verifier, challenge = pkce()
        code = get_code(http, secret_app, challenge)
        refused(http.post("/auth/token", data=_form(code, verifier, **form_extra), headers=headers))
    verifier, challenge = pkce()
    code = get_code(http, secret_app, challenge)
    refused(http.post("/auth/token", data=_form(code, verifier, client_secret=SECRET),
                      headers={"authorization": _basic(secret_app, SECRET)}), "invalid_request")
    refused(http.post("/auth/token", data=_form(code, verifier, client_id="another"),
                      headers={"authorization": _basic(secret_app, SECRET)}))


def test_a_secret_is_long_and_for_apps_only(store):
    with pytest.raises(ValueError, match="at least 32"):
        add_client(store, "short", scopes="openid", redirect_uris=["https://app.example/cb"], secret="short")
    with pytest.raises(ValueError):
        add_client(store, "no redirect", scopes="system/*.rs", secret=SECRET)
