"""Direct identifiers encrypted at rest in the real store: what a thief gets from a dump, what searches still
find, what rotation does, and that the audit trail does not leak searched identifiers."""
from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from healthtwin.composition import create_app
from healthtwin.request import OpenPolicy
from healthtwin.fhir.outcome import FHIRError
from healthtwin.security.at_rest import AtRest
from healthtwin.security.audit import decode_event
from healthtwin.security.keys import KeySet

from .test_crypto import FIN, PATIENT, SECRETS

COVERAGE = {"resourceType": "Coverage", "id": "c1", "status": "active", "subscriberId": FIN,
            "identifier": [{"system": "https://health.gov.az/fhir/sid/its-policy", "value": "ITS-" + FIN,
                            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                 "code": "SN"}]}}],
            "beneficiary": {"reference": "Patient/p1"}, "payor": [{"reference": "Organization/hus"}]}
RELATED = {"resourceType": "RelatedPerson", "id": "rp1", "patient": {"reference": "Patient/p1"},
           "name": [{"family": "Korhonen", "given": ["Liisa"]}], "telecom": [{"system": "phone",
                                                                            "value": "+358409999999"}]}
OBSERVATION = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "weight"},
               "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Organization/hus"}]}


def _dump(store) -> bytes:
    """Every byte of the database, as someone who copied its files (SQLite) or tables (PostgreSQL) holds."""
    if store.dialect == "sqlite":
        store.close()
        path = Path(store.path)
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    raw: list[bytes] = []  # joined once: appending to one bytes object was quadratic in a population's rows
    tables = [r[0] for r in store.query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()", [])]
    for table in tables:
        for row in store.query(f"SELECT * FROM {table}", []):
            raw.append(repr(row).encode() + b"".join(bytes(v) for v in row if isinstance(v, (bytes, memoryview))))
    return b"".join(raw)


def _fill(store) -> None:
    with store.transaction() as tx:
        for resource in (PATIENT, COVERAGE, RELATED, OBSERVATION):
            tx.create(resource["resourceType"], orjson.loads(orjson.dumps(resource)), resource["id"])
    with store.transaction() as tx:  # an update puts version 1 into history: it must be sealed there too
        tx.update("Patient", "p1", dict(orjson.loads(orjson.dumps(PATIENT)), active=False))


def test_database_dump_holds_no_identifiers(store):
    _fill(store)
    assert store.read("Patient", "p1").content.count(FIN.encode()) == 1  # the API still sees everything
    raw = _dump(store)
    assert b"Organization/hus" in raw and b"weight" in raw  # clinical data stays clear: the checks mean something
    for secret in SECRETS:
        assert secret.encode() not in raw, secret


def test_searches_on_encrypted_identifiers(store):
    from healthtwin.fhir.search_params import SearchRegistry
    from healthtwin.fhir.search_query import SearchParser
    from healthtwin.store.search import run_search

    _fill(store)
    registry = SearchRegistry.default()
    parser = SearchParser(registry)

    def ids(rtype: str, query: str) -> list[str]:
        q = parser.parse([rtype], [tuple(p.split("=", 1)) for p in query.split("&")])
        return sorted(s.id for s in run_search(store, registry, q).matches)

    assert ids("Patient", f"identifier=urn:oid:1.2.246.21|{FIN}") == ["p1"]
    assert ids("Patient", f"identifier={FIN}") == ["p1"]
    assert ids("Patient", f"identifier=urn:other|{FIN}") == []
    assert ids("Patient", "family=virt") == ids("Patient", "family=VIRTANEN") == ["p1"]
    assert ids("Patient", "family=virtanen-x") == []
    assert ids("Patient", "name:exact=Aino") == ["p1"] and ids("Patient", "name:exact=aino") == []
    assert ids("Patient", "address-city=hels") == ["p1"]
    assert ids("Patient", "telecom=+358401234567") == ["p1"]
    assert ids("Coverage", f"identifier=ITS-{FIN}") == ["c1"]
    assert ids("Coverage", f"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|SN|ITS-{FIN}") == ["c1"]
    assert ids("RelatedPerson", "name=korh") == ["rp1"]
    assert ids("Observation", f"subject:Patient.identifier={FIN}") == ["o1"]  # chains blind their inner value
    assert ids("Patient", "_has:Observation:subject:code:text=weight&family=vir") == ["p1"]
    # The index tables hold digests, not the normalised names.
    values = [r[0] for r in store.query("SELECT value FROM idx_string", [])]
    assert values and not any("virtanen" in v or "helsinki" in v for v in values)


def test_a_store_with_other_keys_cannot_read(store, tmp_path):
    _fill(store)
    if store.dialect == "sqlite":
        other = type(store)(store.path)
    else:
        other = type(store)(store.dsn, min_size=1, max_size=2)
    try:
        other.protect(AtRest.from_keys(KeySet.generate()))
        with pytest.raises(FHIRError) as err:
            other.read("Patient", "p1")
        assert err.value.status == 500 and "cannot be decrypted" in str(err.value)
        assert orjson.loads(other.read("Observation", "o1").content)["id"] == "o1"
    finally:
        other.close()


def test_a_blob_moved_to_another_row_does_not_open(store):
    _fill(store)
    with store.transaction() as tx:
        tx.create("Patient", {"resourceType": "Patient", "gender": "male"}, "p2")
    blob = store.query("SELECT content FROM resources WHERE type = 'Patient' AND id = 'p1'", [])[0][0]
    with store.write_cursor() as cur:
        cur.execute(store.sql("UPDATE resources SET content = ? WHERE type = 'Patient' AND id = 'p2'"), (blob,))
    with pytest.raises(FHIRError):
        store.read("Patient", "p2")


def _cli(data: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "healthtwin", *args, "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _database(store) -> str:
    """The URL `open_store` and the CLI take for the fixture's database (its own schema on PostgreSQL)."""
    return f"sqlite:///{store.path}" if store.dialect == "sqlite" else store.dsn


def test_rotation_rewraps_everything_and_retires_the_old_master(store, tmp_path):
    from healthtwin.security.storage import open_store
    data, db = tmp_path / "data", _database(store)
    live = open_store(db, data)
    _fill(live)
    old_master = (data / "keys" / "master.key").read_bytes()
    kid = lambda blob: bytes(blob)[3:19]  # noqa: E731 — the master-key id in the blob header
    patient_blobs = ("SELECT content FROM resources WHERE type = 'Patient' UNION ALL "
                     "SELECT content FROM history WHERE type = 'Patient'")
    before = {kid(r[0]) for r in live.query(patient_blobs, [])}
    live.close()

    out = _cli(data, "keys", "rotate", "--database", db)
    assert "re-wrapped 4 blobs" in out  # Patient, its history version, Coverage, RelatedPerson; not Observation
    assert (data / "keys" / "master.key").read_bytes() != old_master
    assert (data / "keys" / "master.key.1").read_bytes() == old_master
    live = open_store(db, data)
    after = {kid(r[0]) for r in live.query(patient_blobs, [])}
    assert len(before) == len(after) == 1 and before != after
    assert orjson.loads(live.read("Patient", "p1").content)["identifier"][0]["value"] == FIN
    assert [v.id for v in [live.vread("Patient", "p1", 1)]] == ["p1"]
    live.close()

    out = _cli(data, "keys", "retire", "--database", db)
    assert "re-wrapped 0 blobs" in out and not list((data / "keys").glob("master.key.*"))
    live = open_store(db, data)  # the retired master is gone, and nothing needed it
    assert orjson.loads(live.vread("Patient", "p1", 1).content)["name"][0]["family"] == "Virtanen"
    live.close()


def test_configured_master_key_and_its_rotation(tmp_path, monkeypatch):
    from healthtwin.security.storage import open_store
    data = tmp_path / "data"
    first = base64.b64encode(b"1" * 32).decode()
    monkeypatch.setenv("HEALTHTWIN_MASTER_KEY", first)
    store = open_store(None, data)
    _fill(store)
    store.close()
    monkeypatch.setenv("HEALTHTWIN_MASTER_KEY", base64.b64encode(b"2" * 32).decode())
    with pytest.raises(FHIRError):  # the file key cannot open what the configured key sealed
        open_store(None, data).read("Patient", "p1")
    monkeypatch.setenv("HEALTHTWIN_MASTER_KEY_PREVIOUS", first)
    store = open_store(None, data)
    assert store.read("Patient", "p1") is not None
    monkeypatch.setenv("HEALTHTWIN_MASTER_KEY", "not base64!")
    with pytest.raises(ValueError, match="32-byte keys"):
        open_store(None, data)


def test_audit_trail_records_searched_identifiers_only_as_keyed_indexes(store, tmp_path):
    app = create_app(store, policy=OpenPolicy(), data_dir=tmp_path / "data", public_url="http://testserver",
                     rate=None)
    with TestClient(app) as client:
        org = {"resourceType": "Organization", "id": "hus", "name": "HUS"}  # the Patient's managingOrganization
        assert client.put("/fhir/Organization/hus", json=org).status_code == 201
        assert client.put("/fhir/Patient/p1", json=PATIENT).status_code == 201
        r = client.get(f"/fhir/Patient?identifier=urn:oid:1.2.246.21|{FIN}&name=Virtanen&gender=female")
        assert r.status_code == 200 and r.json()["total"] == 1
    events = [decode_event(bytes(r[0])) for r in store.query("SELECT event FROM audit_log", [])]
    queries = [base64.b64decode(e["query"]).decode() for ev in events for e in ev.get("entity", []) if "query" in e]
    assert queries, "the search was audited with its query"
    text = " ".join(queries)
    assert FIN not in text and "Virtanen" not in text and "gender=female" in text
    assert store.at_rest.audit_index(f"urn:oid:1.2.246.21|{FIN}") in text


@pytest.mark.parametrize("workers", [1, 2])
def test_bulk_load_blinds_in_workers_like_the_store(store, tmp_path, workers):
    """Loaders compute index rows in worker processes; they must blind them exactly as the store does."""
    from healthtwin.api.services import Services
    from healthtwin.loading import load

    folder = tmp_path / "ndjson"
    folder.mkdir()
    (folder / "Patient.ndjson").write_bytes(orjson.dumps(PATIENT) + b"\n")
    (folder / "Coverage.ndjson").write_bytes(orjson.dumps(COVERAGE) + b"\n")
    services = Services.build(store)
    report = load(services, [str(folder)], workers=workers)
    assert report.created == 2 and not report.errors
    for query in (f"identifier={FIN}", "family=virta", "name:exact=Aino", "address-city=helsinki"):
        q = services.parser.parse(["Patient"], [tuple(query.split("=", 1))])
        from healthtwin.store.search import run_search
        assert [s.id for s in run_search(store, services.registry, q).matches] == ["p1"], query
    raw = _dump(store)
    for secret in SECRETS:
        assert secret.encode() not in raw, secret


def test_a_store_from_before_encryption_is_sealed_on_first_open(store, tmp_path):
    """Upgrading: resources and index rows written in clear are sealed and blinded once, when the store is
    first opened with keys; searches then work as on a new store, and later opens do nothing."""
    from healthtwin.fhir.search_params import SearchRegistry
    from healthtwin.fhir.search_query import SearchParser
    from healthtwin.security.rotation import ensure_sealed
    from healthtwin.security.storage import open_store
    from healthtwin.store.search import run_search
    data, db = tmp_path / "data", _database(store)
    old = type(store)(store.path) if store.dialect == "sqlite" else type(store)(store.dsn, min_size=1)
    _fill(old)  # no keys: how earlier versions wrote
    with old.transaction() as tx:
        tx.create("Observation", orjson.loads(orjson.dumps(CLINICAL)), "o2")
    with old.transaction() as tx:
        tx.update("Observation", "o2", dict(orjson.loads(orjson.dumps(CLINICAL)), status="amended"))
    assert FIN.encode() in _dump(old)
    upgraded = open_store(db, data)
    registry = SearchRegistry.default()
    query = SearchParser(registry).parse(["Patient"], [("identifier", FIN), ("family", "virt")])
    assert [s.id for s in run_search(upgraded, registry, query).matches] == ["p1"]
    for crit in (("subject:identifier", FIN), ("identifier", f"urn:oid:1.2.246.21|{FIN}")):
        query = SearchParser(registry).parse(["Observation"], [crit])
        assert [s.id for s in run_search(upgraded, registry, query).matches] == ["o2"], crit
    assert orjson.loads(upgraded.vread("Observation", "o2", 1).content)["subject"]["display"] == "Aino Virtanen"
    assert orjson.loads(upgraded.vread("Patient", "p1", 1).content)["name"][0]["family"] == "Virtanen"
    assert ensure_sealed(upgraded) == 0  # done once
    raw = _dump(upgraded)
    assert b"weight" in raw
    for secret in SECRETS:
        assert secret.encode() not in raw, secret


# A clinical resource that names its people the ways FHIR allows: logical references with the FIN, displays,
# a contained Patient, a contact person's name and phone, and a FIN-system identifier of its own.
CLINICAL = {"resourceType": "Observation", "id": "o2", "status": "final",
            "identifier": [{"system": "urn:oid:1.2.246.21", "value": FIN}, {"system": "urn:lab", "value": "L-5"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}],
                     "text": "body weight measured at home"},
            "subject": {"reference": "Patient/p1", "display": "Aino Virtanen",
                        "identifier": {"system": "urn:oid:1.2.246.21", "value": FIN}},
            "performer": [{"display": "Liisa Korhonen"}, {"reference": "#pt"}],
            "contained": [{"resourceType": "Patient", "id": "pt", "name": [{"family": "Korhonen", "given": ["Liisa"]}],
                           "telecom": [{"system": "phone", "value": "+358409999999"}]}],
            "extension": [{"url": "urn:x-contact", "valueContactDetail": {
                "name": "Aino Virtanen", "telecom": [{"system": "email", "value": "aino@example.fi"}]}}],
            "valueQuantity": {"value": 61.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}


def test_identifiers_inside_references_of_any_resource_are_sealed(store):
    """Names, FINs and phones carried by a clinical resource (references, displays, contained resources) are
    sealed in its row and its history, its index rows hold digests, and it reads back exactly as written."""
    from healthtwin.fhir.search_params import SearchRegistry
    from healthtwin.fhir.search_query import SearchParser
    from healthtwin.store.search import run_search

    _fill(store)
    with store.transaction() as tx:
        tx.create("Observation", orjson.loads(orjson.dumps(CLINICAL)), "o2")
    with store.transaction() as tx:  # version 1 goes to history: sealed there too
        tx.update("Observation", "o2", dict(orjson.loads(orjson.dumps(CLINICAL)), status="amended"))
    read = orjson.loads(store.read("Observation", "o2").content)
    expected = dict(orjson.loads(orjson.dumps(CLINICAL)), status="amended")
    assert {k: v for k, v in read.items() if k != "meta"} == {k: v for k, v in expected.items() if k != "meta"}
    assert list(read) == [*CLINICAL, "meta"]  # members back in their order
    assert list(read["subject"]) == ["reference", "display", "identifier"]
    old = orjson.loads(store.vread("Observation", "o2", 1).content)
    assert old["subject"]["identifier"]["value"] == FIN and old["status"] == "final"

    registry = SearchRegistry.default()
    parser = SearchParser(registry)

    def ids(rtype: str, query: str) -> list[str]:
        q = parser.parse([rtype], [tuple(p.split("=", 1)) for p in query.split("&")])
        return sorted(s.id for s in run_search(store, registry, q).matches)

    assert ids("Observation", f"subject:identifier=urn:oid:1.2.246.21|{FIN}") == ["o2"]
    assert ids("Observation", f"subject:identifier={FIN}") == ["o2"]
    assert ids("Observation", f"subject:identifier=urn:other|{FIN}") == []
    assert ids("Observation", f"identifier={FIN}") == ["o2"] and ids("Observation", "identifier=urn:lab|L-5") == ["o2"]
    assert ids("Observation", "_content=measured at home") == ["o2"]  # clinical text stays searchable
    assert ids("Observation", "_content=Virtanen") == []  # …but the names are not in clear
    assert ids("Observation", "code=http://loinc.org|29463-7&subject=Patient/p1") == ["o2"]

    raw = _dump(store)
    assert b"measured at home" in raw and b"29463-7" in raw and b"L-5" in raw
    for secret in SECRETS:
        assert secret.encode() not in raw, secret


def test_rotation_rewraps_partial_seals_of_clinical_resources(store):
    """A clinical resource's sealed parts are re-wrapped under the new master like whole blobs are: after the
    old master is gone, the resource still reads back whole."""
    from healthtwin.security.crypto import Envelope
    from healthtwin.security.rotation import rewrap_store

    old_keys = KeySet.generate()
    store.protect(AtRest.from_keys(old_keys))
    with store.transaction() as tx:
        tx.create("Observation", orjson.loads(orjson.dumps(CLINICAL)), "o2")
    new_master = KeySet.generate().master_key
    rotated = AtRest(Envelope(new_master, previous=[old_keys.master_key]), old_keys.index_key)
    report = rewrap_store(store, rotated)
    assert report.rewrapped == 1 and report.clear == 0
    store.protect(AtRest(Envelope(new_master), old_keys.index_key))  # the old master retired
    assert orjson.loads(store.read("Observation", "o2").content)["subject"]["identifier"]["value"] == FIN
    assert rewrap_store(store, AtRest(Envelope(new_master), old_keys.index_key)).current == 1
