"""The REST interactions of FHIR R4 http.html on both databases: CRUD, versioning, conditional reads, errors."""
from __future__ import annotations

import itertools

import orjson

FHIR = "application/fhir+json"
_FINS = itertools.count(1)  # a FIN belongs to one active Patient (mpi/fin.py): each test patient has its own


def patient(**extra):
    body = {"resourceType": "Patient", "name": [{"family": "Məmmədov", "given": ["Rəşad"]}], "gender": "male",
            "birthDate": "1980-02-11", "identifier": [{"system": "https://health.gov.az/fhir/sid/fin",
                                                         "value": f"5AB{next(_FINS):04d}"}]}
    body.update(extra)
    return body


def test_create_assigns_id_and_version(client):
    r = client.post("/fhir/Patient", json=patient(id="client-chosen"))
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "client-chosen"  # ids are assigned by the server on create
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert "last-modified" in r.headers


def test_read_vread_update_delete_cycle(client):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    r = client.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 200 and r.json()["name"][0]["family"] == "Məmmədov"
    upd = patient(id=pid, gender="female")
    r = client.put(f"/fhir/Patient/{pid}", json=upd, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"
    # a stale If-Match is refused and nothing changes
    r = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid, gender="other"), headers={"If-Match": 'W/"1"'})
    assert r.status_code == 412 and r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{pid}/_history/1").json()["gender"] == "male"
    assert client.get(f"/fhir/Patient/{pid}/_history/2").json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{pid}/_history/9").status_code == 404
    r = client.delete(f"/fhir/Patient/{pid}")
    assert r.status_code in (200, 204)
    r = client.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 410 and r.json()["issue"][0]["code"] == "deleted"
    hist = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert hist["total"] == 3
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "PUT", "POST"]
    assert "resource" not in hist["entry"][0]
    # deleting again is not an error; update after delete brings it back as a new version
    assert client.delete(f"/fhir/Patient/{pid}").status_code in (200, 204)
    r = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid))
    assert r.status_code == 201 and r.json()["meta"]["versionId"] == "4"


def test_update_creates_with_client_id(client):
    r = client.put("/fhir/Patient/fin-5ABCD7K", json=patient(id="fin-5ABCD7K"))
    assert r.status_code == 201
    assert client.get("/fhir/Patient/fin-5ABCD7K").json()["meta"]["versionId"] == "1"
    r = client.put("/fhir/Patient/fin-5ABCD7K", json=patient(id="fin-5ABCD7K", gender="female"))
    assert r.status_code == 200


def test_conditional_read(client):
    r = client.post("/fhir/Patient", json=patient())
    pid, etag = r.json()["id"], r.headers["etag"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"7"'}).status_code == 200
    lm = r.headers["last-modified"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": lm}).status_code == 304
    assert client.get(f"/fhir/Patient/{pid}",
                      headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200


def test_prefer_return(client):
    r = client.post("/fhir/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and r.headers["location"]
    r = client.post("/fhir/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201 and r.json()["resourceType"] == "OperationOutcome"


def test_format_and_pretty(client):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    pretty = client.get(f"/fhir/Patient/{pid}?_pretty=true")
    assert b"\n  " in pretty.content
    assert client.get(f"/fhir/Patient/{pid}?_format=json").status_code == 200
    # Asking to receive XML is 406 Not Acceptable (nothing here writes XML); sending an XML body is 415.
    for req, status in ((client.get(f"/fhir/Patient/{pid}?_format=xml"), 406),
                        (client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/fhir+xml"}), 406),
                        (client.get("/fhir/Patient", headers={"Accept": "application/xml"}), 406),
                        (client.get(f"/fhir/Patient/{pid}?_format=turtle"), 406),
                        (client.post("/fhir/Patient", content=b"<Patient/>",
                                     headers={"Content-Type": "application/fhir+xml"}), 415)):
        assert req.status_code == status, req.text
        assert req.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/fhir+xml, application/fhir+json;q=0.5"}
                      ).status_code == 200
    assert client.post("/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
                       ).status_code == 415 and client.get("/fhir/Patient?_summary=count").json()["total"] == 1


def test_errors_are_operation_outcomes_and_store_nothing(client):
    cases = [
        (client.post("/fhir/Patient", content=b"{not json", headers={"Content-Type": FHIR}), 400),
        (client.post("/fhir/Patient", json={"resourceType": "Observation", "status": "final",
                                            "code": {"text": "x"}}), 400),
        (client.post("/fhir/Patient", json={"resourceType": "Nonsense"}), 400),
        (client.post("/fhir/Patient", json=[1, 2]), 400),
        (client.put("/fhir/Patient/abc", json=patient(id="xyz")), 400),
        (client.put("/fhir/Patient/abc", json=patient()), 400),
        (client.get("/fhir/Nonsense/1"), 404),
        (client.get("/fhir/Patient/does-not-exist"), 404),
        (client.patch("/fhir/Patient", json=[]), 405),
        (client.post("/fhir/Patient", content=b"[" * 200 + b"]" * 200, headers={"Content-Type": FHIR}), 400),
        (client.post("/fhir/Patient", json=patient(gender="robot")), 422),
        (client.post("/fhir/Patient", json=patient(unknownElement=1)), 422),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_oversized_body_is_413(client):
    big = orjson.dumps(patient(text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">"
                                     + "x" * (17 * 1024 * 1024) + "</div>"}))
    r = client.post("/fhir/Patient", content=big, headers={"Content-Type": FHIR})
    assert r.status_code == 413 and r.json()["issue"][0]["code"] == "too-costly"


def test_validation_failure_is_422_with_location(client):
    r = client.post("/fhir/Observation", json={"resourceType": "Observation", "code": {"text": "x"}})
    assert r.status_code == 422
    issues = r.json()["issue"]
    assert any("Observation.status" in (i.get("expression") or [""])[0] for i in issues)


def test_history_type_and_system_with_since(client):
    a = client.post("/fhir/Patient", json=patient()).json()
    b = client.post("/fhir/Patient", json=patient()).json()
    client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "Mərkəzi Xəstəxana"})
    assert client.get("/fhir/Patient/_history").json()["total"] == 2
    assert client.get("/fhir/_history").json()["total"] == 3
    since = b["meta"]["lastUpdated"]
    ids = [e["resource"]["id"] for e in client.get(f"/fhir/Patient/_history?_since={since}").json()["entry"]]
    assert ids == [b["id"]]
    paged = client.get("/fhir/_history?_count=2").json()
    assert len(paged["entry"]) == 2 and any(link["relation"] == "next" for link in paged["link"])
    assert a["id"] not in [e["resource"]["id"] for e in paged["entry"]]  # newest first


def test_metadata_lists_what_is_implemented(client):
    cs = client.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    obs = next(r for r in rest["resource"] if r["type"] == "Observation")
    names = {p["name"] for p in obs["searchParam"]}
    assert {"code", "subject", "date", "value-quantity", "code-value-quantity", "_id", "_lastUpdated"} <= names
    total = sum(len(r["searchParam"]) for r in rest["resource"])
    assert total > 1500
    patient_ops = {o["name"] for o in next(r for r in rest["resource"] if r["type"] == "Patient")["operation"]}
    assert {"everything", "validate"} <= patient_ops
    # SMART: the service, and the authorization server's endpoints as SMART v1 clients look for them
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    (oauth,) = [e for e in rest["security"]["extension"] if e["url"].endswith("/oauth-uris")]
    uris = {e["url"]: e["valueUri"] for e in oauth["extension"]}
    smart = client.get("/.well-known/smart-configuration").json()
    assert uris == {"authorize": smart["authorization_endpoint"], "token": smart["token_endpoint"],
                    "revoke": smart["revocation_endpoint"], "introspect": smart["introspection_endpoint"]}


def test_openapi_describes_the_authorization_server_too(client):
    paths = client.get("/openapi.json?types=Patient").json()["paths"]
    assert {"/auth/token", "/auth/revoke", "/auth/introspect", "/auth/sessions", "/auth/sessions/{id}",
            "/auth/jwks", "/.well-known/smart-configuration", "/fhir/Patient"} <= set(paths)
    form = paths["/auth/token"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert set(form["properties"]["grant_type"]["enum"]) == {"client_credentials", "authorization_code",
                                                              "refresh_token"}
    assert paths["/auth/sessions"]["get"]["security"] == [{"bearer": []}]


def test_unknown_method_is_405(client):
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    assert client.post(f"/fhir/Patient/{pid}", json=patient()).status_code == 405


def test_base_url_without_trailing_slash_is_not_redirected(client):
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": []}
    r = client.post("/fhir", json=bundle, follow_redirects=False)
    assert r.status_code == 200 and r.json()["type"] == "batch-response"


def test_base_url_follows_each_callers_host(client):
    """The base URL is cached per Host header: each caller still gets links under the host it addressed, and
    an invalid Host falls back to the server's own address rather than being echoed."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    for host in ("hospital-a.example:8080", "ministry.example", "hospital-a.example:8080"):
        r = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid), headers={"host": host})
        assert r.status_code == 200
        assert r.headers["location"].startswith(f"http://{host}/fhir/Patient/{pid}/_history/")
    r = client.get("/fhir/Patient", params={"_id": pid}, headers={"host": "bad host/evil"})
    assert r.status_code == 200
    assert all("evil" not in link["url"] for link in r.json()["link"])


def test_query_string_that_is_not_utf8_is_not_a_500(client):
    r = client.get("/fhir/Patient", params={"family": "x"})
    assert r.status_code == 200
    # Raw bytes that are not UTF-8 (the HTTP client would percent-encode them; a raw client need not).
    from healthtwin.api.http import query_of

    class Raw:
        scope = {"query_string": b"family=\xff\xfe"}
    assert query_of(Raw()) == "family=\ufffd\ufffd"


def test_history_pages_are_the_whole_history_in_order(client):
    """Pages of a type's and the system's history, whichever table each version is in and however many share
    one stamp (a transaction stamps all its entries alike), join up to the whole history, newest first."""
    def bundle(n, method):
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": f"h{i}", "gender": method},
             "request": {"method": "PUT", "url": f"Patient/h{i}"}} for i in range(n)]}
    assert client.post("/fhir", json=bundle(7, "male")).status_code == 200
    assert client.post("/fhir", json=bundle(5, "female")).status_code == 200  # h0-h4 again: versions in history
    assert client.delete("/fhir/Patient/h6").status_code in (200, 204)
    for url in ("/fhir/Patient/_history", "/fhir/_history"):
        whole = client.get(f"{url}?_count=100").json()
        assert whole["total"] == 13 and len(whole["entry"]) == 13
        expected = [(e["request"]["url"], e["response"]["etag"]) for e in whole["entry"]]
        stamps = [e["response"]["lastModified"] for e in whole["entry"]]
        assert stamps == sorted(stamps, reverse=True)
        for size in (1, 3, 4):
            paged = []
            for offset in range(0, 13, size):
                page = client.get(f"{url}?_count={size}&_offset={offset}").json()
                assert page["total"] == 13
                paged += [(e["request"]["url"], e["response"]["etag"]) for e in page["entry"]]
            assert paged == expected, (url, size)
