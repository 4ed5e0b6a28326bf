"""The pages through the real application: sign-in, the session cookie, CSRF, CSP, each persona's main task,
and that the pages show only what the person's token may fetch."""
from __future__ import annotations

import re
import time

from .conftest import PUBLIC, csrf_of, sign_in


def test_sign_in_runs_smart_with_pkce_and_keeps_the_token_in_an_httponly_strict_cookie(site):
    c = site.client
    home = c.get("/app/")
    assert home.status_code == 200 and 'lang="az"' in home.text and "/app/login" in home.text
    start = c.get("/app/login", follow_redirects=False)
    location = start.headers["location"]
    assert "code_challenge_method=S256" in location and "ui_locales=az" in location
    login_cookie = start.headers["set-cookie"]
    assert "HttpOnly" in login_cookie and "Path=/app" in login_cookie
    page = c.get(location)
    # the sign-in page says what is asked in plain words, in Azerbaijani, and shows no raw scope string
    shown = re.sub(r'<input type="hidden"[^>]*>', "", page.text)
    assert "user/*.cruds" not in shown and "launch/patient" not in shown and "user/*.cruds" in page.text
    assert "kim olduğunuzu bilmək" in page.text and 'lang=az' in page.text
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    done = sign_in(c, "aysel")
    assert done.status_code == 303 and done.headers["location"] == "/app/me"
    cookie = next(h for h in done.headers.get_list("set-cookie") if h.startswith("ht_session="))
    assert cookie.startswith("ht_session=") and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace(
        "Strict", "strict") and "Max-Age" not in cookie and "expires" not in cookie.lower()
    token = c.cookies.get("ht_session")
    record = c.get("/app/me")
    assert record.status_code == 200 and "Aysel" in record.text
    assert token not in record.text and token not in done.headers["location"]


def test_security_headers_and_no_inline_code(site):
    c = site.client
    sign_in(c, "aysel")
    page = c.get("/app/me")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
    assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    assert "<style" not in page.text and " style=" not in page.text
    css = c.get("/app/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert c.get("/app/static/../plugin.py").status_code == 404


def test_forms_need_the_sessions_csrf_token_and_our_origin(site):
    c = site.client
    sign_in(c, "aysel")
    page = c.get("/app/me/consents")
    token = csrf_of(page.text)
    form = {"patient": "p1", "choice": "sensitive"}
    assert c.post("/app/me/consents", data=form, follow_redirects=False).status_code == 403
    assert c.post("/app/me/consents", data={**form, "csrf": "0" * 40}, follow_redirects=False).status_code == 403
    assert c.post("/app/me/consents", data={**form, "csrf": token}, headers={"origin": "https://evil.example"},
                  follow_redirects=False).status_code == 403
    assert not site.api("GET", "Consent?patient=p1").json().get("entry")
    ok = c.post("/app/me/consents", data={**form, "csrf": token}, headers={"origin": PUBLIC}, follow_redirects=False)
    assert ok.status_code == 303
    consents = site.api("GET", "Consent?patient=p1").json()["entry"]
    assert len(consents) == 1 and consents[0]["resource"]["provision"]["securityLabel"][0]["code"] == "PSY"
    # the page shows it in force, and withdrawing it makes it inactive
    page = c.get("/app/me/consents")
    assert "Psixi sağlamlıq" in page.text
    cid = consents[0]["resource"]["id"]
    c.post("/app/me/consents", data={"patient": "p1", "withdraw": cid, "csrf": csrf_of(page.text)})
    assert site.api("GET", f"Consent/{cid}").json()["status"] == "inactive"


def test_citizen_record_results_with_ranges_and_trend_and_only_their_own(site):
    c = site.client
    sign_in(c, "aysel", lang="en")
    page = c.get("/app/me?lang=en")
    assert "Type 2 diabetes mellitus" in page.text and "metformin" in page.text
    assert "Glucose" in page.text and "7.9 mmol/L" in page.text and "3.9 – 6.1" in page.text
    assert "<polyline" in page.text and ">high<" in page.text  # trend line and the flag of the latest value
    # $summary and $immds-forecast are on this server: both sections are filled, none says "not available"
    assert 'class="pending"' not in page.text and "Patient summary" in page.text
    other = c.get("/app/me?patient=p2")
    assert other.status_code in (403, 404) and "Orxan" not in other.text
    assert "AZN42.50" in c.get("/app/me/claims").text  # the amount in the locale's form for its currency
    assert "42,50\xa0₼" in c.get("/app/me/claims?lang=az").text  # with the manat's sign in Azerbaijani


def test_access_log_names_who_and_why(site):
    c = site.client
    sign_in(c, "dr")
    c.get("/app/clinic/patient/p1")
    c2 = type(c)(c.app, base_url=PUBLIC)
    sign_in(c2, "aysel", lang="en")
    page = c2.get("/app/me/access?lang=en")
    assert page.status_code == 200 and "doctor or nurse" in page.text and "Who looked at my record" in page.text
    assert "test results and observations" in page.text or "laboratory results" in page.text


def test_renewal_request_and_error_report_are_recorded_in_the_record(site):
    c = site.client
    sign_in(c, "aysel")
    page = c.get("/app/me/prescriptions")
    answer = c.post("/app/me/prescriptions/renew", data={"patient": "p1", "prescription": "rx1", "note": "running out",
                                                          "csrf": csrf_of(page.text)}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    sent = site.api("GET", "Communication?subject=p1").json().get("entry") or []
    assert [m["resource"]["about"][0]["reference"] for m in sent] == ["MedicationRequest/rx1"]
    assert "Yeniləmə" in c.get("/app/me/prescriptions").text and "rx.renew" not in page.text
    good = c.post("/app/me/report", data={"patient": "p1", "what": "Condition/c1", "text": "diagnosed in 2020",
                                          "csrf": csrf_of(page.text)})
    assert good.status_code == 200 and 'role="status"' in good.text
    sent = site.api("GET", "Communication?subject=p1&category=https://health.gov.az/fhir/CodeSystem/citizen-request|correction").json()
    assert sent["entry"][0]["resource"]["payload"][0]["contentString"] == "diagnosed in 2020"
    # a message about someone the citizen does not represent is refused by the API, whatever the page sends
    other = c.post("/app/me/report", data={"patient": "p2", "what": "Condition", "text": "not mine",
                                           "csrf": csrf_of(page.text)})
    assert other.status_code == 403
    assert not site.api("GET", "Communication?subject=p2").json().get("entry")
    report = c.post("/app/me/report", data={"patient": "p1", "what": "Condition", "text": "",
                                            "csrf": csrf_of(page.text)})
    assert report.status_code == 400 and 'aria-invalid="true"' in report.text


def test_clinician_finds_their_patient_and_breaks_the_glass_for_another(site):
    c = site.client
    assert sign_in(c, "dr").headers["location"] == "/app/clinic"
    found = c.get("/app/clinic?name=Əliyeva")
    assert "/app/clinic/patient/p1" in found.text
    by_fin = c.get("/app/clinic?fin=AB12CD3&birthdate=1980-04-02")  # through Patient/$match, the patient index
    assert "/app/clinic/patient/p1" in by_fin.text and "/app/clinic/patient/p2" not in by_fin.text
    assert "/app/clinic/patient/p2" not in c.get("/app/clinic?name=Məmmədov").text  # not in their care
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p1"},
               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                              "allergyintolerance-clinical", "code": "active"}]},
               "code": {"text": "Penicillin allergy"}}
    assert site.api("POST", "AllergyIntolerance", allergy).status_code == 201
    page = c.get("/app/clinic/patient/p1")
    assert page.status_code == 200 and "Type 2 diabetes mellitus" in page.text
    assert "Penicillin allergy" in page.text  # the patient's documented allergies, in the header
    assert 'class="pending"' not in page.text and "Glucose" in page.text  # the twin ($twin) and CDS are there
    refused = c.get("/app/clinic/patient/p2")
    assert refused.status_code in (403, 404) and "break-glass" in refused.text and "Orxan" not in refused.text
    token = csrf_of(refused.text)
    short = c.post("/app/clinic/patient/p2/break-glass", data={"reason": "short", "csrf": token})
    assert short.status_code == 400
    opened = c.post("/app/clinic/patient/p2/break-glass", data={"reason": "unconscious in the emergency room",
                                                                 "csrf": token}, follow_redirects=False)
    assert opened.status_code == 303
    assert "Orxan" in c.get(opened.headers["location"]).text
    review = site.api("GET", "$break-glass-review").json()
    assert "unconscious in the emergency room" in str(review)


def test_clinician_prescribes(site):
    c = site.client
    sign_in(c, "dr")
    page = c.get("/app/clinic/patient/p1")
    bad = c.post("/app/clinic/patient/p1/prescribe", data={"medicine": "x", "quantity": "0", "csrf": csrf_of(page.text)})
    assert bad.status_code == 400
    done = c.post("/app/clinic/patient/p1/prescribe", data={"medicine": "atorvastatin", "atc": "C10AA05",
                                                             "quantity": "30", "csrf": csrf_of(page.text)},
                  follow_redirects=False)
    assert done.status_code == 303, done.text
    names = [e["resource"]["medicationCodeableConcept"]["text"]
             for e in site.api("GET", "MedicationRequest?patient=p1").json()["entry"]]
    assert "atorvastatin" in names


def test_prescribing_shows_the_cds_cards_and_signs_only_when_confirmed(site):
    c = site.client
    sign_in(c, "dr", lang="en")
    page = c.get("/app/clinic/patient/p1?lang=en")
    form = {"medicine": "metformin", "atc": "A10BA02", "quantity": "60", "csrf": csrf_of(page.text)}
    cards = c.post("/app/clinic/patient/p1/prescribe", data=form, follow_redirects=False)
    assert cards.status_code == 200 and "Warnings before signing" in cards.text, cards.text[-2000:]
    assert len(site.api("GET", "MedicationRequest?patient=p1").json()["entry"]) == 1  # nothing signed yet
    import re
    chosen = {m[0]: m[1] for m in re.findall(r'<select id="(override-[0-9a-f-]+)"[^>]*>.*?<option value="([^"]+)"',
                                              re.sub(r'<option value="">[^<]*</option>', "", cards.text), re.S)}
    hidden = dict(re.findall(r'<input type="hidden" name="(service-[0-9a-f-]+)" value="([^"]+)"', cards.text))
    assert chosen and len(hidden) == len(chosen)
    signed = c.post("/app/clinic/patient/p1/prescribe", data={**form, "confirmed": "1", **chosen, **hidden},
                    follow_redirects=False)
    assert signed.status_code == 303
    assert len(site.api("GET", "MedicationRequest?patient=p1").json()["entry"]) == 2
    issues = site.api("GET", "DetectedIssue?patient=p1").json().get("entry") or []
    assert len(issues) == len(chosen)  # each warning signed past is recorded with its reason


def test_ministry_dashboard_from_the_materialised_analytics(site):
    c = site.client
    assert site.client.post("/analytics/refresh", headers={"authorization": f"Bearer {site.admin}"}).status_code == 200
    assert sign_in(c, "analyst").headers["location"] == "/app/ministry"
    overview = c.get("/app/ministry")
    assert overview.status_code == 200 and "/app/ministry/indicator/population" in overview.text
    page = c.get("/app/ministry/indicator/population?by=sex")
    assert page.status_code == 200 and "<svg" in page.text
    csv = c.get("/app/ministry/indicator/population/export.csv?by=sex")
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("period,sex,numerator")
    svg = c.get("/app/ministry/indicator/population/export.svg?by=region&chart=map")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml") and "Bakı" in svg.text
    # a citizen is not the ministry
    c2 = type(c)(c.app, base_url=PUBLIC)
    sign_in(c2, "aysel")
    assert c2.get("/app/ministry").status_code == 403


def test_sign_out_revokes_the_token_and_an_expired_session_asks_to_sign_in_again(site):
    c = site.client
    sign_in(c, "aysel")
    token = c.cookies.get("ht_session")
    page = c.get("/app/me")
    out = c.post("/app/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303 and any(h.startswith('ht_session=""') for h in out.headers.get_list("set-cookie"))
    assert c.get("/fhir/Patient/p1", headers={"authorization": f"Bearer {token}"}).status_code == 401
    from healthtwin.security.commands import mint
    stale = mint(site.data_dir, PUBLIC, "aysel", "person", ["user/*.cruds"], ["citizen"], patient="Patient/p1",
                 lifetime=1)
    time.sleep(1.1)
    c.cookies.set("ht_session", stale, path="/app")
    answer = c.get("/app/me", follow_redirects=False)
    assert answer.status_code == 303 and "expired=1" in answer.headers["location"]


def _alert(site, now):
    """One stored detection alert addressed to the epidemiologist Practitioner/prac-epi (as the weekly run
    writes them: twin/surveillance/job.py), with a small count that must show as "<5"."""
    import datetime as dt

    from healthtwin.twin.surveillance.job import Group, Signal, communication
    week = dt.date(2026, 11, 23)
    weeks = [(week - dt.timedelta(weeks=k)).isoformat() for k in range(5, -1, -1)]
    lead = Signal(("Abşeron-Xızı", "Sumqayıt"), "measles", week, 3.0, 0.2, 1e-5, True,
                  {"weeks": weeks, "observed": [0, 0, 1, 0, 0, 3], "expected": [None] * 5 + [0.2]})
    alert = communication(Group("measles", "Abşeron-Xızı", week, [lead]), {"reference": "Practitioner/prac-epi"}, now)
    alert["id"] = "alert-1"
    answer = site.api("PUT", "Communication/alert-1", alert)
    assert answer.status_code in (200, 201), answer.text


def test_the_alerts_page_shows_the_evidence_and_the_epidemiologist_acknowledges(site):
    import datetime as dt

    assert site.api("PUT", "Practitioner/prac-epi", {"resourceType": "Practitioner", "id": "prac-epi"}).status_code \
        in (200, 201)
    _alert(site, dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    c = site.client
    assert sign_in(c, "epi").headers["location"] == "/app/ministry/alerts"
    page = c.get("/app/ministry/alerts")
    assert page.status_code == 200, page.text
    assert "Sumqayıt" in page.text and "&lt;5" in page.text and "<svg" in page.text
    assert c.get("/app/ministry").status_code == 403  # the indicators stay the analysts'
    # the acknowledgement needs the page's CSRF token
    assert c.post("/app/ministry/alerts/alert-1/acknowledge", data={"note": "x"}).status_code == 403
    done = c.post("/app/ministry/alerts/alert-1/acknowledge", data={"csrf": csrf_of(page.text), "note": "on it"},
                  follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/app/ministry/alerts?done=1"
    stored = site.api("GET", "Communication/alert-1").json()
    assert stored["status"] == "completed" and "on it" in stored["note"][-1]["text"]
    assert "alert-1" not in c.get("/app/ministry/alerts").text  # unread ones only, by default
    assert "alert-1" in c.get("/app/ministry/alerts?status=completed").text
    # an analyst reads the alerts but has no acknowledge form; a clinician is not let in
    c2 = type(c)(c.app, base_url=PUBLIC)
    sign_in(c2, "analyst")
    listed = c2.get("/app/ministry/alerts?status=all")
    assert listed.status_code == 200 and "Sumqayıt" in listed.text and "/acknowledge" not in listed.text
    c3 = type(c)(c.app, base_url=PUBLIC)
    sign_in(c3, "dr")
    assert c3.get("/app/ministry/alerts").status_code == 403


def test_the_forecasts_page_draws_bands_beside_what_happened(site):
    import datetime as dt
    today = dt.date.today()
    visit = {"resourceType": "Encounter", "id": "e-ili", "status": "finished", "subject": {"reference": "Patient/p2"},
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}
    assert site.api("PUT", "Encounter/e-ili", visit).status_code in (200, 201)
    for k in range(30):  # influenza in the unknown region, week after week, growing
        for j in range(1 + k // 3):
            day = today - dt.timedelta(weeks=30 - k, days=j % 5)
            cid = f"ili-{k}-{j}"
            answer = site.api("PUT", f"Condition/{cid}", {
                "resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p2"},
                "encounter": {"reference": "Encounter/e-ili"}, "onsetDateTime": day.isoformat(), "recordedDate": day.isoformat(),
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J10.1"}]}})
            assert answer.status_code in (200, 201), answer.text
    assert site.client.post("/analytics/refresh", headers={"authorization": f"Bearer {site.admin}"}).status_code == 200
    c = site.client
    sign_in(c, "analyst")
    assert "/app/ministry/forecasts" in c.get("/app/ministry").text
    curve = c.get("/app/ministry/indicator/syndrome_cases?x_syndrome=ili&interval=week")
    assert curve.status_code == 200 and "/app/ministry/forecasts?syndrome=ili" in curve.text  # beside the curve
    page = c.get("/app/ministry/forecasts?syndrome=ili&lang=en")
    assert page.status_code == 200, page.text
    assert "ensemble" in page.text
    assert page.text.count("<polygon") >= 2  # the 95% and the 50% band
    assert "95% interval" in page.text and "What happened" in page.text
    c2 = type(c)(c.app, base_url=PUBLIC)
    sign_in(c2, "dr")
    assert c2.get("/app/ministry/forecasts").status_code == 403
