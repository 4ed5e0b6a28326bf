"""Signing in through an external OpenID Connect provider in headless Chromium, with both sides real: the
provider is a second `healthtwin serve`, with its own data folder, keys and accounts, on another port; the
pages are the demo's `healthtwin serve` configured with HEALTHTWIN_OIDC_ISSUER and HEALTHTWIN_OIDC_CLIENT_ID.
The citizen signs in at the provider's own login page and lands on their record, found by the FIN the
provider's id_token carries; a person the record does not know, and a forged answer, land on a page that says
what happened. Every page passes axe-core's WCAG 2.2 AA rules."""
from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

import orjson
import pytest

from .browser import Browser, cli_env, copy_to_docs, demo_server, free_port, requirements, serve

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PASSWORD = "a long provider password"
SECRET = "the pages' client secret at the provider (from the environment)"
FIN_SYSTEM = "https://health.gov.az/fhir/sid/fin"


def _cli(*args: str, stdin: str | None = None) -> None:
    done = subprocess.run([sys.executable, "-m", "healthtwin.cli", *args], env=cli_env(), input=stdin,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def _fhir(base: str, folder, method: str, path: str, body: dict | None = None) -> dict:
    from healthtwin.security.commands import mint
    token = mint(folder, base, "setup", "person", ["user/*.cruds"], ["administrator"])
    req = urllib.request.Request(f"{base}/fhir/{path}", orjson.dumps(body) if body else None, method=method,
                                 headers={"authorization": f"Bearer {token}", "content-type": "application/fhir+json"})
    return orjson.loads(urllib.request.urlopen(req, timeout=30).read())


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    requirements()
    provider_dir, pages_dir = tmp_path_factory.mktemp("provider"), tmp_path_factory.mktemp("pages")
    pages_port = free_port()
    pages_url = f"http://127.0.0.1:{pages_port}"
    data = ["--data-dir", str(provider_dir)]
    _cli("clients", "add", "Health Twin pages", *data, "--scopes", "openid profile", "--client-id", "pages",
         "--redirect-uri", pages_url + "/app/callback/external", "--secret-stdin", stdin=SECRET + "\n")
    for user, patient in (("eid-alice", "Patient/e1"), ("eid-nobody", "Patient/e2")):
        _cli("users", "add", user, *data, "--roles", "citizen", "--patient", patient, "--password-stdin",
             stdin=PASSWORD + "\n")
    with serve(provider_dir) as provider:
        env = {"HEALTHTWIN_OIDC_ISSUER": provider, "HEALTHTWIN_OIDC_CLIENT_ID": "pages",
               "HEALTHTWIN_OIDC_CLIENT_SECRET": SECRET, "HEALTHTWIN_OIDC_NAME": "e-Gov ID"}
        with demo_server(pages_dir, port=pages_port, env=env) as (pages, _passwords):
            alice = _fhir(pages, pages_dir, "GET", "Patient/pat-0")
            fin = next(i["value"] for i in alice["identifier"] if i.get("system") == FIN_SYSTEM)
            for _ in range(60):  # others' accesses enough for the access log to need a second page
                _fhir(pages, pages_dir, "GET", "Patient/pat-0")
            for pid, value in (("e1", fin), ("e2", "ZZ99ZZ9")):
                _fhir(provider, provider_dir, "PUT", f"Patient/{pid}", {
                    "resourceType": "Patient", "id": pid, "identifier": [{"system": FIN_SYSTEM, "value": value}]})
            yield provider, pages, alice


@pytest.fixture(scope="module")
def browser(sites):
    b = Browser()
    yield b
    b.close()


def _clean(record):
    assert record["violations"] == [], f"{record['name']}: {record['violations']}"
    assert record["overflow_px"] <= 0, f"{record['name']} scrolls sideways by {record['overflow_px']} px"


def _through_provider(page, pages, provider, user):
    page.goto(pages + "/app/")
    page.get_by_role("link", name=re.compile("e-Gov ID")).click()
    page.wait_for_url(re.compile("^" + re.escape(provider) + "/auth/authorize"))
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_a_citizen_signs_in_through_the_external_provider(sites, browser):
    provider, pages, alice = sites
    ctx = browser.context("phone")
    page = ctx.new_page()
    page.goto(pages + "/app/")
    assert page.get_by_role("link", name=re.compile("e-Gov ID ilə daxil ol")).count() == 1
    _clean(browser.check(page, "home-external"))
    _through_provider(page, pages, provider, "eid-alice")
    page.wait_for_url(re.compile(r"/app/me$"))
    family = alice["name"][0]["family"]
    assert family in page.locator("h1").inner_text()
    _clean(browser.check(page, "citizen-record-external"))
    # the session is an HttpOnly cookie; nothing in the URL or in the page's storage
    cookies = {c["name"]: c for c in ctx.cookies()}
    assert cookies["ht_session"]["httpOnly"] and cookies["ht_session"]["sameSite"] == "Strict"
    assert "ht_oidc" not in cookies  # the sign-in's binding is gone once used
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert "token" not in page.url and "code=" not in page.url
    # who looked at my record, a page at a time
    page.goto(pages + "/app/me/access")
    assert page.locator("ol.log > li").count() == 50
    _clean(browser.check(page, "citizen-access-paged"))
    page.get_by_role("link", name="Daha köhnə qeydlər").click()
    page.wait_for_url(re.compile(r"before=\d+"))
    assert page.locator("ol.log > li").count() >= 10
    _clean(browser.check(page, "citizen-access-older"))
    page.get_by_role("link", name="Ən yeni qeydlər").click()
    page.wait_for_url(re.compile(r"/app/me/access\?"))
    assert page.locator("ol.log > li").count() == 50
    assert ctx.csp_violations == []
    ctx.close()
    copy_to_docs(["home-external-360.png"])


def test_refused_sign_ins_say_why(sites, browser):
    provider, pages, _ = sites
    ctx = browser.context("phone")
    page = ctx.new_page()
    _through_provider(page, pages, provider, "eid-nobody")  # identified by the provider, unknown here
    page.wait_for_url(re.compile(r"/app/login/refused\?"))  # away from the spent code and state
    assert "FİN" in page.locator("[role=alert]").inner_text()
    _clean(browser.check(page, "signin-refused"))
    page.get_by_role("link", name="English").click()  # the same page, in another language
    assert "no health record here holds" in page.locator("[role=alert]").inner_text()
    page.goto(pages + "/app/callback/external?state=forged&code=forged&lang=ru")  # an answer nobody asked for
    assert "не распознан" in page.locator("[role=alert]").inner_text()
    _clean(browser.check(page, "signin-refused-ru"))
    assert "ht_session" not in {c["name"] for c in ctx.cookies()}
    page.get_by_role("link", name=re.compile("Вернуться ко входу")).click()
    page.wait_for_url(re.compile(r"/app/$"))
    assert ctx.csp_violations == []
    ctx.close()
    copy_to_docs(["signin-refused-1280.png"])
