"""Requests refused before they reach an interaction: invalid tokens are rate-limited by address like anonymous
ones, and a request refused for its format is audited under the identity of its valid token."""
from __future__ import annotations

from healthtwin.security.audit import decode_event

from . import world as W


def _last_event(store) -> dict:
    row = store.query("SELECT event FROM audit_log ORDER BY seq DESC LIMIT 1", [])[0]
    return decode_event(bytes(row[0]))


def test_invalid_tokens_are_rate_limited_by_address_before_they_are_checked(store, tmp_path):
    client, world = W.build(store, tmp_path, rate=(0.5, 3))
    with client as c:
        forged = {"authorization": "Bearer forged.token.here"}
        codes = [c.get("/fhir/Patient/p1", headers=forged).status_code for _ in range(5)]
        assert codes[:3] == [401] * 3 and codes[3:] == [429, 429]
        r = c.get("/fhir/Patient/p1", headers=forged)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["resourceType"] == "OperationOutcome"
        assert c.get("/fhir/metadata").status_code == 429  # the address is spent, whatever it sends next


def test_valid_tokens_do_not_spend_their_address_bucket(store, tmp_path):
    client, world = W.build(store, tmp_path, rate=(0.5, 3))
    with client as c:
        for role in ("citizen", "clinician", "auditor"):
            assert [c.get("/fhir/metadata", headers=world.headers[role]).status_code
                    for _ in range(3)] == [200] * 3  # each client its own burst, one address
        assert c.get("/fhir/metadata").status_code == 200  # anonymous: the address's own burst is intact


def test_a_request_refused_for_its_format_is_audited_with_its_callers_identity(app):
    c, world, store = app
    r = c.get("/fhir/Patient/p1", headers={**world.headers["clinician"], "accept": "application/fhir+xml"})
    assert r.status_code == 406 and r.json()["resourceType"] == "OperationOutcome"
    event = _last_event(store)
    assert event["agent"][0]["who"]["identifier"]["value"] == "dr-a"
    assert event["outcome"] != "0"
    r = c.get("/fhir/Patient/p1", params={"_format": "xml"}, headers=world.headers["clinician"])
    assert r.status_code == 406
    assert _last_event(store)["agent"][0]["who"]["identifier"]["value"] == "dr-a"
