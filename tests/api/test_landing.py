"""`GET /` is a small HTML page for a person who opens the server in a browser: what this is and where to
go, with a Content-Security-Policy that lets nothing run or load from elsewhere."""
from __future__ import annotations

import base64
import hashlib
import re


def test_root_is_a_landing_page_with_links_not_a_redirect(client) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert len(r.content) < 10_000  # not the CapabilityStatement
    text = r.text
    assert "<title>Health Twin</title>" in text and "FHIR R4" in text
    links = re.findall(r'href="([^"]+)"', text)
    assert {"/fhir/metadata", "/openapi.json", "/analytics/indicators"} <= set(links)
    assert "<script" not in text.lower()
    for path in ("/fhir/metadata", "/openapi.json", "/health"):
        assert client.get(path).status_code == 200, path


def test_the_landing_page_carries_a_safe_content_security_policy(client) -> None:
    r = client.get("/")
    csp = {d.split()[0]: d.split()[1:] for d in r.headers["content-security-policy"].split("; ")}
    assert csp["default-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"] and csp["form-action"] == ["'none'"]
    assert "script-src" not in csp and not any("unsafe" in v for vs in csp.values() for v in vs)
    # the one inline stylesheet is allowed by its hash, and is the one the page holds
    (style,) = re.findall(r"<style>(.*?)</style>", r.text, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert csp["style-src"] == [f"'sha256-{digest}'"]
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
