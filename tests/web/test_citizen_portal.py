"""The citizen portal's tasks beyond seeing the record: the access log paged newest first (every entry once,
the citizen's own visits left out unless asked for), the children a parent represents, and a privacy choice
whose effect on a clinician is the one the page explains, until it is withdrawn."""
from __future__ import annotations

import re

from .conftest import ORG, PUBLIC, csrf_of, sign_in


def _log_page(client, path):
    page = client.get(path)
    assert page.status_code == 200, page.text
    rows = page.text.count('<li class="')
    older = re.search(r'<a href="(/app/me/access\?[^"]*before=\d+[^"]*)">Older entries</a>', page.text)
    return page, rows, (older.group(1).replace("&amp;", "&") if older else None)


def _api_pages(client, token, pid, count, others=True):
    """Every entry id the paged $access-log answers, following its next links."""
    url = f"/fhir/Patient/{pid}/$access-log?_count={count}" + ("&others=true" if others else "")
    seen = []
    while url:
        bundle = client.get(url, headers={"authorization": f"Bearer {token}"}).json()
        seen += [e["resource"]["id"] for e in bundle.get("entry") or []]
        url = next(("/fhir/" + link["url"] for link in bundle.get("link") or [] if link["relation"] == "next"), None)
    return seen


def test_the_access_log_pages_through_every_entry_newest_first(site):
    for _ in range(115):  # an administrator reads the record: 115 accesses by someone else
        assert site.api("GET", "Patient/p1").status_code == 200
    c = site.client
    sign_in(c, "aysel", lang="en")
    page, rows, older = _log_page(c, "/app/me/access?lang=en")
    assert rows == 50 and older and "Newest entries" not in page.text
    assert ">You<" not in page.text and "Your own visits are not shown." in page.text
    pages, shown = 1, rows
    while older:  # to the oldest page, each with a link back to the newest
        last, rows, older = _log_page(c, older + "&lang=en")
        pages, shown = pages + 1, shown + rows
        assert "Newest entries" in last.text and (rows == 50 or older is None)
    assert pages >= 3 and shown >= 115
    # the pages hold every entry once, newest first: the same entries as the whole log, less the citizen's
    token = c.cookies.get("ht_session")
    paged = _api_pages(c, token, "p1", 40)
    whole = c.get("/fhir/Patient/p1/$access-log", headers={"authorization": f"Bearer {token}"}).json()
    others = [e["resource"]["id"] for e in whole["entry"] if e["resource"]["agent"][0]["who"].get("display") != "you"]
    assert len(paged) == len(set(paged)) and sorted(map(int, paged), reverse=True) == list(map(int, paged))
    assert set(paged) == set(others) and len(paged) >= 115 and len(paged) == shown
    # with the citizen's own visits, there are more
    assert len(_api_pages(c, token, "p1", 200, others=False)) > len(paged)
    mine = c.get("/app/me/access?mine=1&lang=en")
    assert ">You<" in mine.text
    # bad paging is a clear OperationOutcome, not a 500
    for query in ("_count=0", "_count=5000", "_before=abc", "others=maybe", "_before=-3"):
        bad = c.get(f"/fhir/Patient/p1/$access-log?{query}", headers={"authorization": f"Bearer {token}"})
        assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome", query


def test_a_parent_sees_the_child_they_represent_and_no_one_else(site):
    child = {"resourceType": "Patient", "id": "child1", "name": [{"family": "Əliyev", "given": ["Tural"]}],
             "birthDate": "2019-03-03", "gender": "male"}
    mother = {"resourceType": "RelatedPerson", "id": "rp-mother", "active": True, "patient": {"reference": "Patient/child1"},
              "identifier": [{"system": "https://health.gov.az/fhir/sid/fin", "value": "AB12CD3"}],
              "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                            "code": "MTH"}]}]}
    rx = {"resourceType": "MedicationRequest", "id": "rx-child", "status": "active", "intent": "order",
          "subject": {"reference": "Patient/child1"}, "authoredOn": "2026-11-20",
          "medicationCodeableConcept": {"text": "amoxicillin"}}
    for res in (child, mother, rx):
        assert site.api("PUT", f"{res['resourceType']}/{res['id']}", res).status_code in (200, 201)
    c = site.client
    sign_in(c, "aysel", lang="en")
    family = c.get("/app/me/family?lang=en")
    assert "Tural" in family.text and "patient=child1" in family.text and "Məmmədov" not in family.text
    assert "Tural" in c.get("/app/me?patient=child1&lang=en").text
    assert "amoxicillin" in c.get("/app/me/prescriptions?patient=child1&lang=en").text
    assert "Orxan" not in c.get("/app/me?patient=p2&lang=en").text  # a stranger's record stays closed
    # a renewal for the child's prescription, sent by the parent
    page = c.get("/app/me/prescriptions?patient=child1")
    sent = c.post("/app/me/prescriptions/renew", data={"csrf": csrf_of(page.text), "patient": "child1",
                                                        "prescription": "rx-child"}, headers={"origin": PUBLIC},
                  follow_redirects=False)
    assert sent.status_code == 303 and "patient=child1" in sent.headers["location"]


def test_refusing_an_organisation_hides_the_record_from_its_clinician_until_withdrawn(site):
    doctor = type(site.client)(site.client.app, base_url=PUBLIC)
    sign_in(doctor, "dr", lang="en")
    assert "Type 2 diabetes" in doctor.get("/app/clinic/patient/p1?lang=en").text
    c = site.client
    sign_in(c, "aysel", lang="en")
    page = c.get("/app/me/consents?lang=en")
    assert "The organisation named cannot see your record; others still can." in page.text  # said before choosing
    done = c.post("/app/me/consents", data={"csrf": csrf_of(page.text), "patient": "p1", "choice": "organization",
                                             "organization": f"Organization/{ORG}"}, headers={"origin": PUBLIC})
    assert done.status_code == 200 and "Withdraw" in done.text
    assert "Type 2 diabetes" not in doctor.get("/app/clinic/patient/p1?lang=en").text
    consent_id = re.search(r'name="withdraw" value="([^"]+)"', done.text).group(1)
    back = c.post("/app/me/consents", data={"csrf": csrf_of(done.text), "patient": "p1", "withdraw": consent_id},
                  headers={"origin": PUBLIC})
    assert back.status_code == 200 and 'name="withdraw"' not in back.text
    assert "Type 2 diabetes" in doctor.get("/app/clinic/patient/p1?lang=en").text
