"""The SMART token and authorize endpoints, attacked through HTTP (SQLite and PostgreSQL)."""
from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from healthtwin.security.smart import JWT_BEARER, OAuthError, token_exchange

from .conftest import BASE, FHIR, PASSWORD, TOKEN_URL, hand_made_jwt


def post_token(http, form):
    return http.post("/auth/token", data=form)


def refused(resp, error="invalid_client", status=None):
    assert resp.status_code == (status or (401 if error == "invalid_client" else 400)), resp.text
    assert resp.json()["error"] == error, resp.json()
    assert "access_token" not in resp.json()
    return resp.json()["error_description"]


def test_discovery(http):
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        doc = http.get(path).json()
        assert doc["token_endpoint"] == TOKEN_URL and doc["jwks_uri"] == BASE + "/auth/jwks"
        assert doc["token_endpoint_auth_methods_supported"] == ["private_key_jwt", "client_secret_basic",
                                                              "client_secret_post"]
        assert set(doc["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384", "RS256", "ES256"}
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert {"launch-standalone", "client-confidential-asymmetric", "permission-v2", "permission-v1",
                "sso-openid-connect", "context-standalone-patient"} <= set(doc["capabilities"])


def test_jwks_is_public_only(http, tokens):
    jwks = http.get("/auth/jwks").json()
    assert [k["kid"] for k in jwks["keys"]] == [tokens.keys.kid]
    assert not any(m in jwks["keys"][0] for m in ("d", "p", "q"))


# -- backend services ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["ES384", "RS384", "ES256"])
def test_backend_services_happy_path(http, backend, tokens, alg):
    kid = next(k for k, (_, a) in backend.keys.items() if a == alg)
    resp = post_token(http, backend.form(backend.assertion(kid)))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "bearer" and 0 < body["expires_in"] <= 3600
    assert body["scope"] == "system/Observation.rs" and resp.headers["cache-control"] == "no-store"
    caller = tokens.caller(body["access_token"])
    assert caller.kind == "system" and caller.subject == backend.client_id == caller.client_id
    assert caller.scopes == {"system/Observation.rs"} and caller.organization == "Organization/lab"


def test_forged_assertion_signature(http, backend):
    kid = next(k for k, (_, a) in backend.keys.items() if a == "ES384")
    attacker = ec.generate_private_key(ec.SECP384R1())
    assert "signature" in refused(post_token(http, backend.form(backend.assertion(kid, key=attacker))))


def test_expired_assertion(http, backend):
    now = int(time.time())
    assert "expired" in refused(post_token(http, backend.form(backend.assertion(exp=now - 120, iat=now - 400))))


def test_not_yet_valid_assertion(http, backend):
    refused(post_token(http, backend.form(backend.assertion(nbf=int(time.time()) + 200))))


@pytest.mark.parametrize("aud", [FHIR, BASE, "https://evil.example/auth/token", TOKEN_URL + "/", None])
def test_wrong_audience(http, backend, aud):
    refused(post_token(http, backend.form(backend.assertion(aud=aud))))


def test_issuer_and_subject_must_be_the_client(http, backend, store):
    from healthtwin.security.clients import add_client
    refused(post_token(http, backend.form(backend.assertion(sub="someone-else"))))
    refused(post_token(http, backend.form(backend.assertion(iss="someone-else"))))
    refused(post_token(http, backend.form(backend.assertion(iss="unknown", sub="unknown"))))
    refused(post_token(http, backend.form(backend.assertion(), client_id="another-client")))
    # A public app (no keys) cannot be impersonated with any assertion.
    public = add_client(store, "pub", scopes="patient/*.rs", redirect_uris=["https://a.example/cb"])
    refused(post_token(http, backend.form(backend.assertion(iss=public, sub=public))))


def test_alg_none_assertion(http, backend):
    kid = next(iter(backend.keys))
    now = int(time.time())
    c = {"iss": backend.client_id, "sub": backend.client_id, "aud": TOKEN_URL, "exp": now + 60, "jti": "n1"}
    refused(post_token(http, backend.form(hand_made_jwt({"alg": "none", "kid": kid}, c))))


def test_hs256_with_client_public_key(http, backend):
    now = int(time.time())
    c = {"iss": backend.client_id, "sub": backend.client_id, "aud": TOKEN_URL, "exp": now + 60, "jti": "h1"}
    for kid, (key, _) in backend.keys.items():
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        assert "algorithm" in refused(post_token(http, backend.form(hand_made_jwt({"alg": "HS256", "kid": kid},
                                                                                  c, pem))))


def test_unknown_kid(http, backend):
    assert "kid" in refused(post_token(http, backend.form(backend.assertion(header_kid="not-registered"))))


def test_alg_must_fit_registered_key(http, backend):
    kid = next(k for k, (_, a) in backend.keys.items() if a == "ES256")
    p384 = ec.generate_private_key(ec.SECP384R1())  # ES384 header against the client's P-256 key
    refused(post_token(http, backend.form(backend.assertion(kid, alg="ES384", key=p384))))


def test_replayed_jti_sequential(http, backend):
    assertion = backend.assertion()
    assert post_token(http, backend.form(assertion)).status_code == 200
    assert "jti" in refused(post_token(http, backend.form(assertion)))
    # Same jti in a freshly signed assertion: still a replay.
    jti = jwt.decode(assertion, options={"verify_signature": False})["jti"]
    assert "jti" in refused(post_token(http, backend.form(backend.assertion(jti=jti))))


def test_replayed_jti_concurrent(smart, backend):
    """Twenty copies of one assertion at the same instant: the database's primary key lets exactly one win."""
    form = backend.form(backend.assertion())
    barrier = threading.Barrier(20)
    results: list[str] = []

    def attempt():
        barrier.wait()
        try:
            token_exchange(smart, dict(form))
            results.append("ok")
        except OAuthError as exc:
            results.append(exc.error)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1 and results.count("invalid_client") == 19


def test_forged_assertion_does_not_burn_jti(http, backend):
    kid = next(k for k, (_, a) in backend.keys.items() if a == "ES384")
    jti = uuid.uuid4().hex
    attacker = ec.generate_private_key(ec.SECP384R1())
    refused(post_token(http, backend.form(backend.assertion(kid, key=attacker, jti=jti))))
    assert post_token(http, backend.form(backend.assertion(kid, jti=jti))).status_code == 200


@pytest.mark.parametrize("ahead", [301 + 15, 600, 86400])
def test_exp_more_than_five_minutes_ahead(http, backend, ahead):
    assert "5 minutes" in refused(post_token(http, backend.form(backend.assertion(exp=int(time.time()) + ahead))))


@pytest.mark.parametrize("missing", ["exp", "jti", "sub", "iss", "aud"])
def test_required_assertion_claims(http, backend, missing):
    refused(post_token(http, backend.form(backend.assertion(**{missing: None}))))


@pytest.mark.parametrize("scope", ["system/Observation.cruds", "system/Observation.write", "system/*.rs",
                                   "system/Condition.rs", "patient/Observation.rs", "user/Observation.rs",
                                   "system/Observation.rs system/Encounter.r", "openid", "system/Patient.rs",
                                   "system/Observation.rs?category=x&x=1 system/*.*", ""])
def test_scope_escalation(http, backend, scope):
    refused(post_token(http, backend.form(scope=scope)), "invalid_scope")


def test_narrower_scopes_are_granted(http, backend):
    resp = post_token(http, backend.form(scope="system/Observation.r system/Observation.rs?category=laboratory "
                                               "system/Patient.r"))
    assert resp.status_code == 200, resp.text


def test_a_backend_service_role_is_carried_into_its_token(http, store, client_keys, tokens):
    """A laboratory system must be held to the laboratory's row rules, not only to its scopes."""
    from healthtwin.security.clients import add_client
    from healthtwin.security.keys import public_jwk

    from .conftest import BackendClient
    jwks = {"keys": [public_jwk(k.public_key()) for k, _ in client_keys.values()]}
    lab = BackendClient(add_client(store, "Lab", jwks=jwks, scopes="system/Observation.rs",
                                   organization="Organization/lab", roles="laboratory"), client_keys)
    resp = post_token(http, lab.form(scope="system/Observation.rs"))
    assert resp.status_code == 200, resp.text
    caller = tokens.caller(resp.json()["access_token"])
    assert caller.roles == frozenset({"laboratory"}) and caller.organization == "Organization/lab"
    with pytest.raises(ValueError, match="not roles a system client can hold"):
        add_client(store, "x", jwks=jwks, scopes="system/*.rs", roles="clinician")


def test_protocol_errors(http, backend):
    refused(post_token(http, backend.form(grant_type="password")), "unsupported_grant_type")
    refused(post_token(http, backend.form(client_assertion_type="urn:x")))
    refused(post_token(http, {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
                              "scope": "system/Observation.rs"}))
    resp = http.post("/auth/token", content=b"grant_type=client_credentials&grant_type=authorization_code",
                     headers={"content-type": "application/x-www-form-urlencoded"})
    refused(resp, "invalid_request")
    refused(http.post("/auth/token", json=backend.form()), "invalid_request")


# -- authorization code + PKCE ----------------------------------------------------------------------------
def pkce():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(client_id, challenge, **over):
    p = {"response_type": "code", "client_id": client_id, "redirect_uri": "https://app.example/cb",
         "scope": "openid fhirUser launch/patient patient/*.rs", "state": "st-1", "code_challenge": challenge,
         "code_challenge_method": "S256", "aud": FHIR}
    p.update(over)
    return {k: v for k, v in p.items() if v is not None}


def login(http, params, username="alice", password=PASSWORD):
    return http.post("/auth/authorize", data={**params, "username": username, "password": password})


def get_code(http, app_client, challenge, **over):
    resp = login(http, authorize_params(app_client, challenge, **over))
    assert resp.status_code == 303, resp.text
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    return query["code"][0]


def exchange(http, client_id, code, verifier, redirect_uri="https://app.example/cb"):
    return post_token(http, {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                             "redirect_uri": redirect_uri, "client_id": client_id})


def test_authorization_code_happy_path(http, app_client, citizen, tokens):
    verifier, challenge = pkce()
    page = http.get("/auth/authorize", params=authorize_params(app_client, challenge))
    assert page.status_code == 200 and "<form" in page.text and page.headers["x-frame-options"] == "DENY"
    resp = login(http, authorize_params(app_client, challenge))
    assert resp.status_code == 303
    loc = urlsplit(resp.headers["location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == "https://app.example/cb"
    q = parse_qs(loc.query)
    assert q["state"] == ["st-1"]
    body = exchange(http, app_client, q["code"][0], verifier).json()
    assert body["patient"] == "123" and body["token_type"] == "bearer"
    caller = tokens.caller(body["access_token"])
    assert caller.patient == "Patient/123" and caller.kind == "person" and caller.roles == {"citizen"}
    assert caller.fhir_user == "Patient/123" and caller.client_id == app_client
    idt = jwt.decode(body["id_token"], tokens.keys.signing_key.public_key(), algorithms=["ES256"],
                     audience=app_client, issuer=BASE)
    assert idt["sub"] == "alice" and idt["fhirUser"] == "Patient/123"


def test_wrong_verifier_fails_and_burns_the_code(http, app_client, citizen):
    verifier, challenge = pkce()
    code = get_code(http, app_client, challenge)
    refused(exchange(http, app_client, code, pkce()[0]), "invalid_grant")
    refused(exchange(http, app_client, code, verifier), "invalid_grant")  # no second try


def test_missing_or_short_verifier(http, app_client, citizen):
    _, challenge = pkce()
    refused(exchange(http, app_client, get_code(http, app_client, challenge), ""), "invalid_grant")
    refused(exchange(http, app_client, get_code(http, app_client, challenge), "short"), "invalid_grant")


def test_code_reuse(http, app_client, citizen):
    verifier, challenge = pkce()
    code = get_code(http, app_client, challenge)
    assert exchange(http, app_client, code, verifier).status_code == 200
    refused(exchange(http, app_client, code, verifier), "invalid_grant")


def test_code_bound_to_client_and_redirect(http, app_client, citizen, store):
    from healthtwin.security.clients import add_client
    other = add_client(store, "other", scopes="patient/*.rs", redirect_uris=["https://app.example/cb"])
    verifier, challenge = pkce()
    refused(exchange(http, other, get_code(http, app_client, challenge), verifier), "invalid_grant")
    refused(exchange(http, app_client, get_code(http, app_client, challenge), verifier,
                     "http://localhost:8765/callback"), "invalid_grant")
    refused(exchange(http, app_client, "made-up-code", verifier), "invalid_grant")


def test_code_expires(http, app_client, citizen, smart):
    smart.code_lifetime = -1
    verifier, challenge = pkce()
    refused(exchange(http, app_client, get_code(http, app_client, challenge), verifier), "invalid_grant")


@pytest.mark.parametrize("uri", [
    "https://app.example/cb/", "https://app.example/cbx", "https://app.example/c", "https://app.example/cb.evil.com",
    "https://app.example/cb?next=https://evil.example", "https://app.example/cb#x", "https://APP.example/cb",
    "https://app.example.evil.com/cb", "https://evil.example/https://app.example/cb", "https://app.example/cb/../x",
    "http://app.example/cb", "https://app.example:443/cb", "https://app.example/%63b", " https://app.example/cb",
    "https://app.example/cb%00", "", None])
def test_redirect_uri_must_match_exactly(http, app_client, citizen, uri):
    _, challenge = pkce()
    for method in ("get", "post"):
        params = authorize_params(app_client, challenge, redirect_uri=uri)
        resp = (http.get("/auth/authorize", params=params) if method == "get" else login(http, params))
        assert resp.status_code == 400 and "location" not in resp.headers
        assert "redirect_uri" in resp.text


def test_authorize_errors_go_back_to_the_app(http, app_client, citizen):
    _, challenge = pkce()
    for over, error in (({"code_challenge": None}, "invalid_request"),
                        ({"code_challenge_method": "plain"}, "invalid_request"),
                        ({"code_challenge": "short"}, "invalid_request"),
                        ({"response_type": "token"}, "unsupported_response_type"),
                        ({"aud": "https://evil.example/fhir"}, "invalid_request"),
                        ({"scope": "system/*.cruds"}, "invalid_scope")):
        resp = http.get("/auth/authorize", params=authorize_params(app_client, challenge, **over))
        assert resp.status_code == 303, over
        assert resp.headers["location"].startswith("https://app.example/cb?")
        assert parse_qs(urlsplit(resp.headers["location"]).query)["error"] == [error]


def test_unknown_client_shows_error_page(http):
    _, challenge = pkce()
    resp = http.get("/auth/authorize", params=authorize_params("nope", challenge))
    assert resp.status_code == 400 and "location" not in resp.headers


def test_wrong_password_and_unknown_user(http, app_client, citizen):
    _, challenge = pkce()
    params = authorize_params(app_client, challenge)
    for user, pw in (("alice", "wrong password!!"), ("mallory", PASSWORD)):
        resp = login(http, params, user, pw)
        assert resp.status_code == 401 and "location" not in resp.headers


def test_login_is_rate_limited(http, app_client, citizen):
    _, challenge = pkce()
    params = authorize_params(app_client, challenge)
    statuses = [login(http, params, "alice", f"guess number {i}").status_code for i in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
    assert login(http, params).status_code == 429  # even the right password waits


def test_login_page_escapes_reflected_parameters(http, app_client):
    _, challenge = pkce()
    evil = '"><script>alert(1)</script>'
    page = http.get("/auth/authorize", params=authorize_params(app_client, challenge, state=evil))
    assert page.status_code == 200 and "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_patient_scopes_need_a_patient(http, app_client, store):
    from healthtwin.security.clients import add_user
    add_user(store, "drbob", PASSWORD, ["practitioner"], practitioner="Practitioner/9")
    verifier, challenge = pkce()
    resp = login(http, authorize_params(app_client, challenge, scope="openid patient/*.rs user/*.rs"), "drbob")
    code = parse_qs(urlsplit(resp.headers["location"]).query)["code"][0]
    body = exchange(http, app_client, code, verifier).json()
    assert body["scope"] == "openid user/*.rs" and "patient" not in body


def test_confidential_app_must_authenticate(http, store, backend, citizen):
    """An app with registered keys cannot redeem its codes as if it were public."""
    from healthtwin.security.clients import add_client, get_client
    jwks = get_client(store, backend.client_id).jwks
    app = add_client(store, "conf", jwks=jwks, scopes="patient/*.rs launch/patient",
                     redirect_uris=["https://app.example/cb"])
    verifier, challenge = pkce()
    code = get_code(http, app, challenge, scope="patient/*.rs")
    refused(exchange(http, app, code, verifier), "invalid_client")
    code = get_code(http, app, challenge, scope="patient/*.rs")
    assertion = backend.assertion(iss=app, sub=app)
    resp = post_token(http, {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                             "redirect_uri": "https://app.example/cb", "client_assertion_type": JWT_BEARER,
                             "client_assertion": assertion})
    assert resp.status_code == 200, resp.text
