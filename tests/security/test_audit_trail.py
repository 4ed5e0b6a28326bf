"""$audit-trail: an auditor searches the whole trail by requestor, patient, date, outcome, interaction and action,
newest first and paged; nobody else may, and the search is itself audited (SQLite and PostgreSQL)."""
from __future__ import annotations

import base64
import time
from urllib.parse import urlsplit

import pytest

from healthtwin.security import audit_search


def trail(c, world, query="", role="auditor", status=200):
    r = c.get(f"/fhir/$audit-trail{'?' + query if query else ''}", headers=world.headers[role])
    assert r.status_code == status, r.text
    return r.json()


def events(bundle):
    return [e["resource"] for e in bundle.get("entry", [])]


def requestor(event):
    return next(a["who"]["identifier"]["value"] for a in event["agent"] if a["requestor"])


def follow(c, world, bundle):
    """Every event of a search, following its next links."""
    out = events(bundle)
    while (nxt := next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)):
        u = urlsplit(nxt)
        bundle = trail(c, world, u.query)
        out += events(bundle)
    return out


@pytest.fixture
def busy(app):
    """The world after a few requests by the citizen and the clinician, one of them refused."""
    c, world, store = app
    for path in ("/fhir/Patient/p1", "/fhir/Observation/o1", "/fhir/Observation?subject=Patient/p1"):
        assert c.get(path, headers=world.headers["citizen"]).status_code == 200
    assert c.get("/fhir/Patient/p1", headers=world.headers["clinician"]).status_code == 200
    assert c.get("/fhir/Patient/p2", headers=world.headers["citizen"]).status_code == 404  # refused, as absent
    return c, world, store


def test_by_requestor_newest_first(busy):
    c, world, _ = busy
    found = events(trail(c, world, "agent=alice"))
    assert found and {requestor(e) for e in found} == {"alice"}
    seqs = [int(e["id"]) for e in found]
    assert seqs == sorted(seqs, reverse=True) and len(found) == 4  # three answered, one refused
    assert [requestor(e) for e in events(trail(c, world, "agent=dr-a"))] == ["dr-a"]


def test_by_patient_outcome_interaction_and_action(busy):
    c, world, _ = busy
    about_p1 = events(trail(c, world, "patient=p1"))
    assert about_p1 and all(any(x.get("what", {}).get("reference") == "Patient/p1" for x in e["entity"])
                            for e in about_p1)
    assert {requestor(e) for e in about_p1} >= {"alice", "dr-a"}
    refused = events(trail(c, world, "outcome=4&agent=alice"))
    assert [e["entity"][0]["what"]["reference"] for e in refused] == ["Patient/p2"]
    reads = events(trail(c, world, "subtype=read&agent=alice"))
    assert len(reads) == 3 and {e["subtype"][0]["code"] for e in reads} == {"read"}
    searches = events(trail(c, world, "subtype=search-type,search&agent=alice"))
    assert len(searches) == 1 and searches[0]["action"] == "E"
    assert len(events(trail(c, world, "action=R&agent=alice"))) == 3


def test_by_date(busy):
    c, world, _ = busy
    everything = events(trail(c, world, "agent=alice"))
    recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
    assert events(trail(c, world, f"agent=alice&date=ge{recent}")) == everything
    assert events(trail(c, world, "agent=alice&date=lt2000-01-01")) == []
    assert events(trail(c, world, "agent=alice&date=ge2000-01-01&date=le2000-12-31")) == []


def test_paging_covers_every_entry_once(busy):
    c, world, _ = busy
    whole = events(trail(c, world, "agent=alice"))
    first = trail(c, world, "agent=alice&_count=2")
    assert len(events(first)) == 2
    assert [e["id"] for e in follow(c, world, first)] == [e["id"] for e in whole]


def test_a_page_scans_a_bounded_number_of_entries(busy, monkeypatch):
    """Filters read from the events (outcome) stop after SCAN_LIMIT entries and say where to go on; following
    the links finds what one unbounded scan finds."""
    c, world, _ = busy
    whole = events(trail(c, world, "outcome=4"))
    monkeypatch.setattr(audit_search, "SCAN_LIMIT", 2)
    monkeypatch.setattr(audit_search, "_CHUNK", 2)
    first = trail(c, world, "outcome=4")
    assert any(link["relation"] == "next" for link in first["link"])
    assert [e["id"] for e in follow(c, world, first)] == [e["id"] for e in whole] and whole


@pytest.mark.parametrize("role,status", [("citizen", 403), ("clinician", 403), ("analyst", 403),
                                         ("laboratory", 403), ("administrator", 200)])
def test_only_auditors_and_administrators(busy, role, status):
    c, world, _ = busy
    trail(c, world, "agent=alice", role=role, status=status)


def test_anonymous_gets_401(busy):
    c, _, _ = busy
    assert c.get("/fhir/$audit-trail").status_code == 401


@pytest.mark.parametrize("query", ["who=alice", "_count=0", "_count=5000", "date=yesterday", "date=sa2020-01-01",
                                   "outcome=", "_before=x"])
def test_bad_parameters_are_a_clear_400(busy, query):
    c, world, _ = busy
    body = trail(c, world, query, status=400)
    assert body["resourceType"] == "OperationOutcome" and "$audit-trail" in body["issue"][0]["diagnostics"]


def test_the_search_is_itself_audited(busy):
    c, world, _ = busy
    trail(c, world, "agent=alice")
    mine = events(trail(c, world, "agent=aud"))
    queries = {base64.b64decode(x["query"]).decode() for e in mine for x in e["entity"] if "query" in x}
    assert queries == {"$audit-trail?agent=alice"}
    # the entries it showed name patients, so it is in their access logs too (what the auditor saw of them)
    named = {x["what"]["reference"] for e in mine for x in e["entity"] if "what" in x}
    assert named == {"Patient/p1", "Patient/p2"}
