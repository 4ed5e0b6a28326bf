"""Forwarded headers are believed only from configured proxies (`serve --forwarded-allow-ips`, default none):
a forged X-Forwarded-For cannot reset a rate limit, a forged Host or X-Forwarded-Host cannot change the links
the server hands out."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from starlette.testclient import TestClient

from healthtwin.composition import create_app
from healthtwin.api.proxies import TrustedProxies, parse_trusted
from healthtwin.request import OpenPolicy

PUBLIC = "https://twin.example"
FORGED = {"host": "evil.example", "x-forwarded-host": "evil.example", "x-forwarded-proto": "http"}


def _client(store, tmp_path, trusted=None, peer=("203.0.113.9", 4000), rate=None):
    app = create_app(store, policy=OpenPolicy(), data_dir=tmp_path / "data", public_url=PUBLIC, rate=rate)
    return TestClient(TrustedProxies(app, PUBLIC, trusted), base_url="http://evil.example", client=peer)


def _status(port: int, headers: dict) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/fhir/Patient?_count=1", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_served_api_ignores_forged_forwarded_for_from_localhost(tmp_path):
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default; the server must not."""
    from ..conftest import serving
    with serving(tmp_path, "--data-dir", str(tmp_path / "data"), "--insecure-open",
                 "--rate-limit", "0.01,3") as (_, port):
        statuses = [_status(port, {"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(6)]
    assert statuses == [200] * 3 + [429] * 3, statuses
    with serving(tmp_path, "--data-dir", str(tmp_path / "data"), "--insecure-open") as (_, port):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/fhir/Patient", method="POST",
                                         data=b'{"resourceType": "Patient"}', headers={
                                             "Content-Type": "application/fhir+json", "Host": "evil.example",
                                             "X-Forwarded-Host": "evil.example"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.headers["Location"].startswith(f"http://127.0.0.1:{port}/fhir/Patient/")


def test_without_a_trusted_proxy_links_use_the_public_url(store, tmp_path):
    with _client(store, tmp_path) as c:
        r = c.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}, headers=FORGED)
        assert r.status_code == 201 and r.headers["location"].startswith(PUBLIC + "/fhir/Patient/")
        bundle = c.get("/fhir/Patient", params={"_count": "1"}, headers=FORGED).json()
        assert bundle["link"] and all(link["url"].startswith(PUBLIC + "/fhir") for link in bundle["link"])
        assert all(e["fullUrl"].startswith(PUBLIC + "/fhir") for e in bundle["entry"])


def test_without_a_trusted_proxy_forwarded_for_does_not_reset_the_rate_limit(store, tmp_path):
    with _client(store, tmp_path, rate=(0.01, 3)) as c:
        codes = [c.get("/fhir/Patient", headers={"x-forwarded-for": f"198.51.100.{i}"}).status_code
                 for i in range(5)]
    assert codes == [200] * 3 + [429] * 2


def test_a_trusted_proxy_forwards_client_scheme_and_host(store, tmp_path):
    with _client(store, tmp_path, trusted="10.0.0.0/8", peer=("10.0.0.5", 4000), rate=(0.01, 2)) as c:
        proxied = {"x-forwarded-proto": "https", "x-forwarded-host": "twin.example:8443"}
        r = c.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=proxied)
        assert r.headers["location"].startswith("https://twin.example:8443/fhir/Patient/")
        # The client is the right-most address the trusted proxies did not add: each gets its own bucket.
        one = {"x-forwarded-for": "192.0.2.1, 10.0.0.7"}
        other = {"x-forwarded-for": "forged, 192.0.2.2"}
        assert [c.get("/fhir/metadata", headers=one).status_code for _ in range(3)] == [200, 200, 429]
        assert [c.get("/fhir/metadata", headers=other).status_code for _ in range(2)] == [200, 200]


@pytest.mark.parametrize("text,expected", [("", (False, ())), ("*", (True, ()))])
def test_forwarded_allow_ips_parsing(text, expected):
    assert parse_trusted(text) == expected
    assert len(parse_trusted("127.0.0.1, 10.0.0.0/8,::1")[1]) == 3
    with pytest.raises(ValueError, match="--forwarded-allow-ips"):
        parse_trusted("proxy.example")
