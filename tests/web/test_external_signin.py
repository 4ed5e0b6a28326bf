"""Signing a citizen in through an external OpenID Connect provider, against a real one: a second Health Twin
application, with its own store, keys and accounts, served by uvicorn on a loopback port, is the provider
(its /.well-known/openid-configuration, /auth/jwks, login page and token endpoint over HTTP); the pages'
application is the relying party. The person is found by the FIN the provider's id_token carries."""
from __future__ import annotations

import html
import re
import socket
import threading
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from .conftest import PASSWORD, PUBLIC

FIN = "AB12CD3"  # Patient/p1's FIN in the pages' record (conftest._resources)
SECRET = "the pages' client secret at the provider, 32+ characters"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Issuer:
    """The provider: a Health Twin application served on a loopback port, with a citizen account whose record
    there holds `fin`, one whose record holds a FIN the pages do not know, and the pages registered as an app."""

    def __init__(self, tmp_path, store) -> None:
        import uvicorn

        from healthtwin.composition import AppSettings, build_app
        from healthtwin.security.clients import add_client, add_user, ensure_security_schema
        from healthtwin.security.commands import mint
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = tmp_path / "issuer-data"
        app = build_app(store, AppSettings(data_dir=data, public_url=self.url, rate=None))
        ensure_security_schema(store)
        self.client_id = add_client(store, "Health Twin pages", scopes="openid profile",
                                    redirect_uris=[PUBLIC + "/app/callback/external"], secret=SECRET)
        add_user(store, "eid-aysel", PASSWORD, "citizen", patient="Patient/e1")
        add_user(store, "eid-stranger", PASSWORD, "citizen", patient="Patient/e2")
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        admin = mint(data, self.url, "admin", "person", ["user/*.cruds"], ["administrator"])
        for pid, fin in (("e1", FIN), ("e2", "ZZ99ZZ9")):
            body = orjson.dumps({"resourceType": "Patient", "id": pid, "name": [{"family": "Eid"}], "identifier": [
                {"system": "https://health.gov.az/fhir/sid/fin", "value": fin}]})
            req = urllib.request.Request(f"{self.url}/fhir/Patient/{pid}", body, method="PUT", headers={
                "authorization": f"Bearer {admin}", "content-type": "application/fhir+json"})
            urllib.request.urlopen(req, timeout=10).read()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def sign_in(self, location: str, username: str) -> str:
        """Through the provider's own login page (a real form post); the URL it sends the browser back to."""
        page = urllib.request.urlopen(location, timeout=10).read().decode()
        form = {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}
        form.update(username=username, password=PASSWORD)

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(self.url + "/auth/authorize", data=urllib.parse.urlencode(form).encode(), timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 303, exc.read()
            return exc.headers["location"]
        raise AssertionError("the provider did not redirect back")


@pytest.fixture
def issuer(tmp_path):
    from tests.conftest import make_store
    (tmp_path / "issuer").mkdir()
    store = make_store("sqlite", tmp_path / "issuer")
    found = Issuer(tmp_path, store)
    yield found
    found.stop()
    store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def rp(request, tmp_path, issuer):
    """The pages (the conftest's record and accounts) with the issuer as their external provider, over SQLite
    and PostgreSQL (skipped where no server runs)."""
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    from healthtwin.security.oidc_login import OidcSettings
    from tests.conftest import make_store
    from .conftest import Site, _resources
    from healthtwin.security.commands import mint
    (tmp_path / "rp").mkdir()
    store = make_store(request.param, tmp_path / "rp")
    data = tmp_path / "rp-data"
    secret = getattr(request, "secret", SECRET)
    oidc = OidcSettings(issuer.url, issuer.client_id, secret, name="e-Gov ID")
    app = build_app(store, AppSettings(data_dir=data, public_url=PUBLIC, rate=None, oidc_login=oidc))
    with TestClient(app, base_url=PUBLIC) as client:
        site = Site(client, data, mint(data, PUBLIC, "admin", "person", ["user/*.cruds"], ["administrator"]))
        for resource in _resources():
            assert site.api("PUT", f"{resource['resourceType']}/{resource['id']}", resource).status_code in (200, 201)
        site.store = store
        site.external = app.state.services.external_login
        yield site
    store.close()


def _start(client) -> str:
    start = client.get("/app/login/external", follow_redirects=False)
    assert start.status_code == 303, start.text
    return start.headers["location"]


def _refusals(store) -> list[str]:
    from healthtwin.security.audit import stored_event
    with store.cursor() as cur:
        cur.execute("SELECT seq, event FROM audit_log ORDER BY seq")
        events = [stored_event(seq, body) for seq, body in cur.fetchall()]
    return [e.get("outcomeDesc") or "" for e in events if e.get("outcome") == "4"
            and "external sign-in" in (e.get("outcomeDesc") or "")]


def test_a_citizen_signs_in_through_the_provider_and_gets_the_built_in_logins_access(issuer, rp):
    client = rp.client
    # the provider is this project's own server: OpenID discovery beside the SMART document
    doc = orjson.loads(urllib.request.urlopen(issuer.url + "/.well-known/openid-configuration", timeout=10).read())
    assert doc["issuer"] == issuer.url and doc["jwks_uri"] == issuer.url + "/auth/jwks"
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"] and "fin" in doc["claims_supported"]
    home = client.get("/app/")
    assert "/app/login/external" in home.text and "e-Gov ID" in home.text
    location = _start(client)
    # the provider is asked for a code with PKCE, a state and a nonce; no secret or token travels in the URL
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(issuer.url + "/auth/authorize?")
    assert query["code_challenge_method"] == ["S256"] and query["state"][0] and query["nonce"][0]
    assert query["scope"] == ["openid profile"] and query["client_id"] == [issuer.client_id]
    cookie = client.cookies.get("ht_oidc")
    assert cookie and cookie not in location  # the browser's binding value stays in its HttpOnly cookie
    back = issuer.sign_in(location, "eid-aysel")
    assert back.startswith(PUBLIC + "/app/callback/external?")
    done = client.get(back.removeprefix(PUBLIC), follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/app/me", done.text
    assert "session" not in back and "token" not in done.headers["location"]
    session = done.headers.get("set-cookie", "")
    assert "ht_session=" in session and "httponly" in session.lower() and "samesite=strict" in session.lower()
    from healthtwin.web.session import claims_of
    claims = claims_of(client.cookies.get("ht_session"))
    assert claims["iss"] == PUBLIC and claims["patient"] == "Patient/p1" and claims["roles"] == ["citizen"]
    record = client.get("/app/me?lang=en")
    assert record.status_code == 200 and "Əliyeva" in record.text and "Type 2 diabetes" in record.text
    # the same access rules as the built-in login: another citizen's record is not there
    other = client.get("/app/me?patient=p2&lang=en")
    assert other.status_code != 200 and "Məmmədov" not in other.text
    # the sign-in is in the trail, naming the provider and the person
    from healthtwin.security.audit import stored_event
    with rp.store.cursor() as cur:
        cur.execute("SELECT seq, event FROM audit_log ORDER BY seq")
        descs = [stored_event(s, b).get("outcomeDesc") or "" for s, b in cur.fetchall()]
    assert any(d.startswith(f"signed in through {issuer.url}") and "Patient/p1" in d for d in descs)
    # the answer cannot be used twice: the state is gone
    again = client.get(back.removeprefix(PUBLIC) + "&lang=en")
    assert again.status_code == 400 and "was used before" in again.text


def test_a_replayed_or_forged_answer_gets_a_clear_page_and_is_audited(issuer, rp):
    client = rp.client
    back = issuer.sign_in(_start(client), "eid-aysel")
    from starlette.testclient import TestClient
    # another browser (without the cookie of the one that began) presenting the answer
    with TestClient(client.app, base_url=PUBLIC) as stranger:
        page = stranger.get(back.removeprefix(PUBLIC) + "&lang=en")
        assert page.status_code == 400 and "another browser" in page.text and "ht_session" not in stranger.cookies
    # the state was used up by that attempt: the real browser's answer is refused too (nothing half-done)
    page = client.get(back.removeprefix(PUBLIC) + "&lang=ru")
    assert page.status_code == 400 and "Ответ на вход не распознан" in page.text
    # a made-up state
    page = client.get("/app/callback/external?state=forged&code=x&lang=az")
    assert page.status_code == 400 and "tanınmadı" in page.text
    # the provider's own refusal (the person cancelled)
    location = _start(client)
    state = parse_qs(urlsplit(location).query)["state"][0]
    page = client.get(f"/app/callback/external?state={state}&error=access_denied&lang=en")
    assert page.status_code == 400 and "did not confirm who you are" in page.text
    refusals = _refusals(rp.store)
    assert len(refusals) == 4 and all(r.startswith("external sign-in refused") for r in refusals), refusals
    assert "state:" in refusals[0] and "access_denied" in refusals[-1]


def test_a_person_with_no_record_here_is_told_so_and_it_is_audited(issuer, rp):
    client = rp.client
    back = issuer.sign_in(_start(client), "eid-stranger")
    page = client.get(back.removeprefix(PUBLIC) + "&lang=en")
    assert page.status_code == 403 and "no health record here holds" in page.text
    assert page.url.path == "/app/login/refused" and "ht_session" not in client.cookies
    refusals = _refusals(rp.store)
    assert len(refusals) == 1 and "unknown_subject" in refusals[0]


def test_a_disabled_account_cannot_sign_in_again(issuer, rp):
    from healthtwin.security.clients import set_disabled
    client = rp.client
    done = client.get(issuer.sign_in(_start(client), "eid-aysel").removeprefix(PUBLIC), follow_redirects=False)
    assert done.status_code == 303
    with rp.store.cursor() as cur:
        cur.execute("SELECT username FROM security_users WHERE username LIKE 'ext-%'")
        (username,) = cur.fetchone()
    assert set_disabled(rp.store, "user", username, True)
    page = client.get(issuer.sign_in(_start(client), "eid-aysel").removeprefix(PUBLIC) + "&lang=en")
    assert page.status_code == 403 and "disabled" in page.text


def test_a_provider_that_cannot_be_reached_gets_a_clear_page(tmp_path):
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    from healthtwin.security.oidc_login import OidcSettings
    from tests.conftest import make_store
    store = make_store("sqlite", tmp_path)
    oidc = OidcSettings(f"http://127.0.0.1:{_free_port()}", "pages")
    app = build_app(store, AppSettings(data_dir=tmp_path / "d", public_url=PUBLIC, rate=None, oidc_login=oidc))
    with TestClient(app, base_url=PUBLIC) as client:
        page = client.get("/app/login/external?lang=en", follow_redirects=False)
        assert page.status_code == 503 and "could not be reached" in page.text
    store.close()


def test_the_client_secret_goes_by_basic_or_in_the_form_and_a_wrong_one_is_refused(issuer, rp):
    from healthtwin.security.oidc_provider import ProviderError
    external = rp.external
    assert external is not None and external.provider.client_secret == SECRET
    provider = external.provider
    client = rp.client
    # by the form (client_secret_post), where the provider's discovery names only that method
    provider.document()["token_endpoint_auth_methods_supported"] = ["client_secret_post"]
    done = client.get(issuer.sign_in(_start(client), "eid-aysel").removeprefix(PUBLIC), follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/app/me"
    # a wrong secret: the provider refuses the code, and the page says so
    provider.document()["token_endpoint_auth_methods_supported"] = ["client_secret_basic"]
    provider.client_secret = "not the secret, though long enough to look like one"
    page = client.get(issuer.sign_in(_start(client), "eid-aysel").removeprefix(PUBLIC) + "&lang=en")
    assert page.status_code == 400 and "did not confirm who you are" in page.text
    assert "invalid_client" in _refusals(rp.store)[-1]
    # and none at all, for a client registered with one
    provider.client_secret = None
    with pytest.raises(ProviderError, match="invalid_client"):
        location = _start(client)
        back = issuer.sign_in(location, "eid-aysel")
        state = parse_qs(urlsplit(back).query)
        pending = external._take(state["state"][0], client.cookies.get("ht_oidc"))
        provider.redeem(state["code"][0], PUBLIC + "/app/callback/external", pending[1])


def test_starting_sign_ins_in_a_flood_is_slowed(issuer, rp):
    answers = [rp.client.get("/app/login/external?lang=en", follow_redirects=False) for _ in range(45)]
    assert answers[0].status_code == 303
    slowed = [a for a in answers if a.status_code == 429]
    assert slowed and "Too many sign-in attempts" in slowed[-1].text
    with rp.store.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM security_oidc_logins")
        assert cur.fetchone()[0] == 45 - len(slowed)  # a slowed start keeps nothing


def test_provider_urls_must_be_https_except_on_loopback():
    from healthtwin.security.oidc_provider import check_url
    assert check_url("https://eid.example", "issuer")
    assert check_url("http://127.0.0.1:9000", "issuer") and check_url("http://localhost:9000", "issuer")
    for bad in ("http://eid.example", "http://10.0.0.1", "file:///etc/passwd", "ftp://x"):
        with pytest.raises(ValueError):
            check_url(bad, "issuer")
