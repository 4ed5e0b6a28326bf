"""Search semantics on both databases: types, modifiers, prefixes, chains, _has, includes, paging, sort."""
from __future__ import annotations

import pytest


V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _ids(bundle):
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match")


@pytest.fixture
def data(client):
    def put(resource):
        r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code in (200, 201), r.text
    put({"resourceType": "Organization", "id": "org1", "name": "Bakı Şəhər Klinik Xəstəxanası",
         "identifier": [{"type": {"coding": [{"system": V2_0203, "code": "PRN"}]}, "value": "AZ-123"}]})
    put({"resourceType": "Organization", "id": "org2", "name": "Əmək Klinikası",
         "text": {"status": "generated",
                  "div": '<div xmlns="http://www.w3.org/1999/xhtml">Poliklinika for the workers of Sumqayıt</div>'}})
    put({"resourceType": "Organization", "id": "org3", "name": "Həyat Tibb Mərkəzi"})
    put({"resourceType": "Patient", "id": "p1", "name": [{"family": "Əliyev", "given": ["Murad"]}],
         "gender": "male", "birthDate": "1970-05-20", "managingOrganization": {"reference": "Organization/org1"},
         "identifier": [{"system": "https://health.gov.az/fhir/sid/fin", "value": "1AB2CD3",
                         "type": {"coding": [{"system": V2_0203, "code": "NI"}]}}]})
    put({"resourceType": "Patient", "id": "p2", "name": [{"family": "Hüseynova", "given": ["Leyla"]}],
         "gender": "female", "birthDate": "1990", "active": True})
    obs = [("o1", "p1", "8480-6", 150, "mm[Hg]", "2024-01-10T08:00:00Z"),
           ("o2", "p1", "8480-6", 118, "mm[Hg]", "2024-03-05T09:30:00+04:00"),
           ("o3", "p2", "8480-6", 125, "mm[Hg]", "2023-12-31"),
           ("o4", "p2", "2339-0", 5.4, "mmol/L", "2024-02-01T10:00:00Z"),
           ("o5", "p1", "2339-0", 110, "mg/dL", "2024-02-02T10:00:00Z")]
    for oid, pid, code, value, unit, when in obs:
        put({"resourceType": "Observation", "id": oid, "status": "final",
             "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                       "code": "vital-signs" if code == "8480-6" else "laboratory"}]}],
             "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": "measurement"},
             "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
             "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
    return client


@pytest.mark.parametrize("query,expected", [
    ("Patient?name=əli", ["p1"]),
    ("Patient?name=ALIYEV", []),  # Ə is its own letter, not A with an accent
    ("Patient?name=huseyn", ["p2"]),  # ü folds to u
    ("Patient?name:exact=Əliyev", ["p1"]),
    ("Patient?name:exact=əliyev", []),
    ("Organization?name:contains=xəstə", ["org1"]),
    ("Organization?name=həyat", ["org3"]),
    ("Patient?family=Əliyev,Hüseynova", ["p1", "p2"]),
    ("Patient?gender=female", ["p2"]),
    ("Patient?gender:not=female", ["p1"]),
    ("Patient?identifier=https://health.gov.az/fhir/sid/fin|1AB2CD3", ["p1"]),
    ("Patient?identifier=1AB2CD3", ["p1"]),
    ("Patient?identifier=http://other|1AB2CD3", []),
    (f"Patient?identifier:of-type={V2_0203}|NI|1AB2CD3", ["p1"]),  # blinded like the identifier itself
    (f"Patient?identifier:of-type={V2_0203}|MR|1AB2CD3", []),
    (f"Organization?identifier:of-type={V2_0203}|PRN|AZ-123", ["org1"]),
    (f"Organization?identifier:of-type={V2_0203}|PRN|AZ-124", []),
    ("Patient?active:missing=true", ["p1"]),
    ("Patient?active:missing=false", ["p2"]),
    ("Patient?birthdate=1970", ["p1"]),
    ("Patient?birthdate=1970-05", ["p1"]),
    ("Patient?birthdate=ge1985", ["p2"]),
    ("Patient?birthdate=lt1985-01-01", ["p1"]),
    ("Patient?birthdate=1990-06-01", []),  # 1990 (a year) is not within one day
    ("Patient?birthdate=sa1970-05-20", ["p2"]),
    ("Patient?birthdate=eb1990", ["p1"]),
    ("Patient?_id=p1,p2", ["p1", "p2"]),
    ("Observation?code=http://loinc.org|8480-6", ["o1", "o2", "o3"]),
    ("Observation?code=http://loinc.org|", ["o1", "o2", "o3", "o4", "o5"]),
    ("Observation?code:text=measure", ["o1", "o2", "o3", "o4", "o5"]),
    ("Observation?subject=Patient/p1", ["o1", "o2", "o5"]),
    ("Observation?subject:Patient=p2", ["o3", "o4"]),
    ("Observation?patient=p2&code=2339-0", ["o4"]),
    ("Observation?date=2024-01", ["o1"]),
    ("Observation?date=ge2024-02-01&date=lt2024-03", ["o4", "o5"]),
    ("Observation?date=2024-03-05T05:30:00Z", ["o2"]),  # the same instant in another time zone
    ("Observation?value-quantity=gt120", ["o1", "o3"]),
    ("Observation?value-quantity=118", ["o2"]),
    ("Observation?value-quantity=le118|http://unitsofmeasure.org|mm[Hg]", ["o2"]),
    # UCUM: 5.4 mmol/L is not comparable to mg/dL without a molar mass; 110 mg/dL = 1.1 g/L
    ("Observation?value-quantity=1.1|http://unitsofmeasure.org|g/L", ["o5"]),
    ("Observation?code-value-quantity=http://loinc.org|8480-6$gt140", ["o1"]),
    ("Observation?code-value-quantity=8480-6$lt100", []),
    ("Observation?subject:Patient.name=leyla", ["o3", "o4"]),
    ("Observation?subject:Patient.organization.name=bakı", ["o1", "o2", "o5"]),
    ("Patient?_has:Observation:subject:value-quantity=gt140", ["p1"]),
    ("Patient?_has:Observation:patient:code=2339-0", ["p1", "p2"]),
    ("Observation?category=laboratory&_lastUpdated=gt2000-01-01", ["o4", "o5"]),
    ("Observation?_content=measurement&code=2339-0", ["o4", "o5"]),
    ("Organization?_text=poliklinika", ["org2"]),  # the narrative
    ("Organization?_text=workers,nothing-like-it", ["org2"]),
    ("Organization?_text=Əmək", []),  # in org2's name, not in its narrative
    ("Organization?_content=Əmək", ["org2"]),  # anywhere in the resource
    ("Organization?_content=Klinik", ["org1", "org2"]),
    # alias parameters (not indexed themselves) answer from the parameters they repeat
    ("Observation?combo-code=http://loinc.org|2339-0", ["o4", "o5"]),
    ("Observation?combo-code-value-quantity=8480-6$gt140", ["o1"]),
    ("Observation?combo-value-quantity=lt6", ["o4"]),
    ("Observation?patient:Patient=p2", ["o3", "o4"]),
    ("Observation?patient.gender=female", ["o3", "o4"]),
])
def test_search_semantics(data, query, expected):
    r = data.get(f"/fhir/{query}")
    assert r.status_code == 200, r.text
    assert _ids(r.json()) == expected


def test_include_revinclude_iterate(data):
    b = data.get("/fhir/Observation?code=2339-0&_include=Observation:subject").json()
    assert sorted((e["resource"]["id"], e["search"]["mode"]) for e in b["entry"]) == [
        ("o4", "match"), ("o5", "match"), ("p1", "include"), ("p2", "include")]
    b = data.get("/fhir/Patient?_id=p1&_revinclude=Observation:subject").json()
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["o1", "o2", "o5", "p1"]
    b = data.get("/fhir/Observation?_id=o1&_include=Observation:subject"
                 "&_include:iterate=Patient:organization").json()
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["o1", "org1", "p1"]
    b = data.get("/fhir/Observation?_id=o1&_include=*").json()
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["o1", "p1"]


def test_sort_and_paging(data):
    b = data.get("/fhir/Observation?_sort=-date&_count=2").json()
    assert [e["resource"]["id"] for e in b["entry"]] == ["o2", "o5"]
    seen = []
    url = "/fhir/Observation?_count=2"
    while url:
        page = data.get(url).json()
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
    assert sorted(seen) == ["o1", "o2", "o3", "o4", "o5"] and len(seen) == 5
    b = data.get("/fhir/Observation?_sort=value-quantity,_id").json()
    assert [e["resource"]["id"] for e in b["entry"]][0] == "o4"
    # Strings sort by the code-point order of their normalised form on both databases ('h' before 'ə').
    b = data.get("/fhir/Organization?_sort=name").json()
    assert [e["resource"]["id"] for e in b["entry"]] == ["org1", "org3", "org2"]
    b = data.get("/fhir/Organization?_sort=-name").json()
    assert [e["resource"]["id"] for e in b["entry"]] == ["org2", "org3", "org1"]


def test_reference_above_and_below_follow_part_of(client):
    """Region → district → polyclinic: :below finds what happened anywhere inside, :above what is around."""
    def put(resource):
        assert client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource).status_code in (200, 201)
    # loop-a is written twice: a reference must name a stored resource, so the loop closes last
    for lid, parent in (("aran", None), ("yevlax", "aran"), ("yevlax-pk1", "yevlax"), ("baku", None),
                        ("loop-a", None), ("loop-b", "loop-a"), ("loop-a", "loop-b")):
        put({"resourceType": "Location", "id": lid, "name": lid,
             **({"partOf": {"reference": f"Location/{parent}"}} if parent else {})})
    for eid, where in (("e1", "yevlax-pk1"), ("e2", "yevlax"), ("e3", "baku"), ("e4", "loop-a")):
        put({"resourceType": "Encounter", "id": eid, "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
             "location": [{"location": {"reference": f"Location/{where}"}}]})

    def ids(query):
        r = client.get(f"/fhir/{query}")
        assert r.status_code == 200, r.text
        return _ids(r.json())
    assert ids("Encounter?location:below=Location/aran") == ["e1", "e2"]
    assert ids("Encounter?location:below=yevlax") == ["e1", "e2"]  # the only target type is implied
    assert ids("Encounter?location:below=Location/yevlax-pk1") == ["e1"]
    assert ids("Encounter?location:above=Location/yevlax-pk1") == ["e1", "e2"]  # pk1, and around it yevlax
    assert ids("Encounter?location:above=Location/aran") == []
    assert ids("Location?partof:below=aran") == ["yevlax", "yevlax-pk1"]
    assert ids("Location?partof:above=Location/yevlax-pk1") == ["yevlax", "yevlax-pk1"]
    assert ids("Encounter?location:below=Location/loop-a") == ["e4"]  # a cycle ends, it does not spin
    r = client.get("/fhir/Observation?subject:below=Patient/p1")
    assert r.status_code == 400 and "hierarchy" in r.json()["issue"][0]["diagnostics"]


def test_token_below_and_above_follow_is_a_hierarchies(client):
    """The spec's own hierarchies (v3 ActCode: AMB and EMER are kinds of _ActEncounterCode) and one a
    CodeSystem stored at run time defines (polyclinics are kinds of outpatient facilities)."""
    act = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    kinds = "https://health.gov.az/fhir/CodeSystem/facility-kind"
    assert client.post("/fhir/CodeSystem", json={
        "resourceType": "CodeSystem", "url": kinds, "status": "active", "content": "complete",
        "hierarchyMeaning": "is-a", "concept": [
            {"code": "outpatient", "concept": [{"code": "polyclinic", "concept": [{"code": "child-polyclinic"}]},
                                               {"code": "dental"}]},
            {"code": "hospital"}]}).status_code == 201
    for n, (cls, kind) in enumerate((("AMB", "polyclinic"), ("EMER", "child-polyclinic"), ("IMP", "hospital"))):
        assert client.put(f"/fhir/Encounter/e{n}", json={
            "resourceType": "Encounter", "id": f"e{n}", "status": "finished",
            "class": {"system": act, "code": cls}}).status_code == 201
        assert client.put(f"/fhir/Organization/o{n}", json={
            "resourceType": "Organization", "id": f"o{n}", "name": kind,
            "type": [{"coding": [{"system": kinds, "code": kind}]}]}).status_code == 201

    def ids(query):
        r = client.get(f"/fhir/{query}")
        assert r.status_code == 200, r.text
        return _ids(r.json())
    assert ids(f"Encounter?class:below={act}|_ActEncounterCode") == ["e0", "e1", "e2"]
    assert ids(f"Encounter?class:below={act}|AMB") == ["e0"]
    assert ids(f"Encounter?class:above={act}|AMB") == ["e0"]
    assert ids(f"Organization?type:below={kinds}|outpatient") == ["o0", "o1"]
    assert ids(f"Organization?type:below={kinds}|polyclinic") == ["o0", "o1"]
    assert ids(f"Organization?type:above={kinds}|child-polyclinic") == ["o0", "o1"]  # itself and its ancestors
    assert ids(f"Organization?type:below={kinds}|dental") == []
    r = client.get("/fhir/Observation?code:below=http://loinc.org|8480-6")
    assert r.status_code == 400 and "no is-a hierarchy" in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Encounter?class:below=AMB").status_code == 400


def test_sorting_by_encrypted_names_decrypts_a_bounded_set(data, monkeypatch):
    """Blind digests carry no order: Patient?_sort=family is sorted after decryption, like the SQL sort
    (code-point order of the normalised value, missing last), and refused when too many resources match."""
    for pid, family, born in (("p3", "Abbasov", "1980"), ("p4", None, "1975"), ("p5", "Əliyeva", "1960")):
        r = data.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "birthDate": born,
                                                   **({"name": [{"family": family}]} if family else {})})
        assert r.status_code == 201, r.text

    def order(query):
        r = data.get(f"/fhir/Patient?{query}")
        assert r.status_code == 200, r.text
        return [e["resource"]["id"] for e in r.json().get("entry", [])]
    assert order("_sort=family") == ["p3", "p2", "p1", "p5", "p4"]  # a, h, ə, ə-l-i-y-e-v-a; none last
    assert order("_sort=-family") == ["p5", "p1", "p2", "p3", "p4"]
    assert order("_sort=family&_count=2") == ["p3", "p2"]
    assert order("_sort=family&_count=2&_offset=2") == ["p1", "p5"]
    assert order("_sort=-birthdate,family&_count=3") == ["p2", "p3", "p4"]
    assert order("family=əli&_sort=-family") == ["p5", "p1"]
    import healthtwin.store.search as search_module
    monkeypatch.setattr(search_module, "SORT_IN_MEMORY_MAX", 3)
    r = data.get("/fhir/Patient?_sort=family")
    assert r.status_code == 400 and "narrow the search" in r.json()["issue"][0]["diagnostics"]


def test_of_type_needs_three_parts(data):
    r = data.get("/fhir/Patient?identifier:of-type=NI|1AB2CD3")
    assert r.status_code == 400 and "system|code|value" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("query", [
    "Patient?name:contains=seyn",  # blind indexes answer equality and prefixes, nothing else
    "Patient?identifier:text=FIN",
    "Patient?_content=Murad",
    "Practitioner?telecom:in=http://example.org/vs",
])
def test_encrypted_identifiers_refuse_what_blind_indexes_cannot_answer(data, query):
    r = data.get(f"/fhir/{query}")
    assert r.status_code == 400, r.text
    assert "encrypted at rest" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("query", ["Observation?_count=0", "Observation?_count=0&_summary=true",
                                   "Observation?_count=0&_include=Observation:subject", "Observation?_count=0&_sort=-date"])
def test_count_zero_is_summary_count(data, query):
    # search.html: _count=0 is read as _summary=count (fhirpy's count() sends it): the total, and no entries.
    b = data.get(f"/fhir/{query}").json()
    assert b["total"] == 5 and "entry" not in b, b
    assert data.get("/fhir/Observation?_count=0&code=8480-6").json()["total"] == 3
    assert data.post("/fhir/Observation/_search", data={"_count": "0"}).json()["total"] == 5


def test_total_and_summary(data):
    assert data.get("/fhir/Observation?_summary=count").json()["total"] == 5
    b = data.get("/fhir/Observation?_count=1&_total=accurate").json()
    assert b["total"] == 5 and len(b["entry"]) == 1
    b = data.get("/fhir/Observation?_count=1&_total=none").json()
    assert "total" not in b
    b = data.get("/fhir/Patient?_id=p1&_elements=gender").json()
    res = b["entry"][0]["resource"]
    assert res["gender"] == "male" and "name" not in res
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    b = data.get("/fhir/Patient?_id=p1&_summary=true").json()
    assert "name" in b["entry"][0]["resource"]


def test_compartment_and_everything(data):
    b = data.get("/fhir/Patient/p1/Observation?code=8480-6").json()
    assert _ids(b) == ["o1", "o2"]
    b = data.get("/fhir/Patient/p1/$everything").json()
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["o1", "o2", "o5", "org1", "p1"]
    b = data.get("/fhir/Patient/p1/$everything?_type=Observation&_count=2").json()
    assert b["total"] == 3 and len(b["entry"]) == 2
    assert data.get("/fhir/Patient/nobody/$everything").status_code == 404


def test_system_search_and_post_search(data):
    b = data.get("/fhir/?_type=Patient,Organization").json()
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["org1", "org2", "org3", "p1", "p2"]
    r = data.post("/fhir/Patient/_search", data={"gender": "male"})
    assert _ids(r.json()) == ["p1"]


def test_search_errors(data):
    assert data.get("/fhir/Patient?birthdate=notadate").status_code == 400
    assert data.get("/fhir/Patient?gender:exact=male").status_code == 400
    assert data.get("/fhir/Patient?_sort=nonsense").status_code == 400
    strict = data.get("/fhir/Patient?nonsense=1", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400 and strict.json()["resourceType"] == "OperationOutcome"
    lenient = data.get("/fhir/Patient?nonsense=1").json()
    assert any(e["search"]["mode"] == "outcome" for e in lenient["entry"])
    assert data.get("/fhir/Patient?_count=abc").status_code == 400


def test_in_and_not_in_valuesets(data, client):
    vs = "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert _ids(data.get(f"/fhir/Patient?gender:in={vs}").json()) == ["p1", "p2"]
    assert _ids(data.get(f"/fhir/Patient?gender:not-in={vs}").json()) == []
    local = {"resourceType": "ValueSet", "url": "https://health.gov.az/fhir/ValueSet/bp", "status": "active",
             "compose": {"include": [{"system": "http://loinc.org", "concept": [{"code": "8480-6"}]}]}}
    assert client.post("/fhir/ValueSet", json=local).status_code == 201
    assert _ids(data.get("/fhir/Observation?code:in=https://health.gov.az/fhir/ValueSet/bp").json()) == \
        ["o1", "o2", "o3"]
    assert _ids(data.get("/fhir/Observation?code:not-in=https://health.gov.az/fhir/ValueSet/bp").json()) == \
        ["o4", "o5"]
    r = data.get("/fhir/Observation?code:in=https://unknown/vs")
    assert r.status_code == 400 and "not known" in r.text


def test_alias_parameters_are_not_indexed_but_searchable(data, store):
    pids = [r[0] for r in store.query("SELECT pid FROM search_params WHERE type = 'Observation' AND code IN "
                                      "('patient', 'combo-code', 'combo-code-value-quantity')", [])]
    for table in ("idx_reference", "idx_token", "idx_composite"):
        if pids:
            rows = store.query(f"SELECT COUNT(*) FROM {table} WHERE pid IN ({','.join('?' * len(pids))})", pids)
            assert rows[0][0] == 0
    b = data.get("/fhir/Observation?_id=o1&_include=Observation:patient").json()
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["o1", "p1"]
    b = data.get("/fhir/Patient?_id=p2&_revinclude=Observation:patient").json()
    assert sorted(e["resource"]["id"] for e in b["entry"]) == ["o3", "o4", "p2"]


def test_list_selects_the_resources_a_list_holds(data):
    c = data
    for lid, items in (("watch", ["Observation/o1", "Observation/o4", "Patient/p2"]), ("other", ["Observation/o3"])):
        r = c.put(f"/fhir/List/{lid}", json={"resourceType": "List", "id": lid, "status": "current",
                                             "mode": "working", "entry": [{"item": {"reference": i}} for i in items]})
        assert r.status_code == 201, r.text
    assert _ids(c.get("/fhir/Observation?_list=watch").json()) == ["o1", "o4"]
    assert _ids(c.get("/fhir/Patient?_list=watch").json()) == ["p2"]
    assert _ids(c.get("/fhir/Observation?_list=watch,other").json()) == ["o1", "o3", "o4"]
    assert _ids(c.get("/fhir/Observation?_list=watch&code=2339-0").json()) == ["o4"]
    assert _ids(c.get("/fhir/Observation?_list=absent").json()) == []
    for bad in ("_list=$current-problems", "_list:missing=true"):
        r = c.get(f"/fhir/Observation?{bad}")
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_a_composite_with_a_bad_date_component_is_a_400(client):
    # schemathesis found code-value-date with an unreadable date answering 500: the composite's date part skipped
    # the check that a plain date criterion has.
    for value in ("http://loinc.org|1234-5$notadate", "x$2024-13-45", "x$ge"):
        r = client.get("/fhir/Observation", params={"code-value-date": value})
        assert r.status_code == 400, (value, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Observation", params={"code-value-date": "x$ge2024-01-01"}).status_code == 200


def test_numbers_past_a_floats_range_are_a_400(client):
    # schemathesis found value-quantity=le…E5541 answering 500: the precision 10**exponent overflowed.
    for param, value in (("value-quantity", "le-472914500038E5541"), ("value-quantity", "88.830e522|x|y"),
                         ("value-quantity", "1e999")):
        r = client.get("/fhir/Observation", params={param: value})
        assert r.status_code == 400, (value, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Observation", params={"value-quantity": "1e301"}).status_code == 200
