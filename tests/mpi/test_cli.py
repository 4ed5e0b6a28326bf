"""`healthtwin mpi index` keys the Patients a bulk load wrote (no write rules ran) for `$match`."""
from __future__ import annotations

from healthtwin.cli import main
from healthtwin.mpi import keys
from healthtwin.security.storage import open_store


def test_mpi_index_keys_bulk_loaded_patients(tmp_path, capsys):
    store = open_store(None, tmp_path)
    patient = {"resourceType": "Patient", "id": "loaded-1", "gender": "male", "birthDate": "1970-01-02",
               "name": [{"family": "Rzayev", "given": ["Anar", "Tofiq oğlu"]}]}
    with store.transaction() as tx:
        tx.put_many([(patient, store.index_rows_for(patient))])
    store.close()
    assert main(["mpi", "index", "--data-dir", str(tmp_path)]) == 0
    assert "keyed 1 Patients" in capsys.readouterr().err
    store = open_store(None, tmp_path)
    try:
        rows = store.query(f"SELECT DISTINCT patient FROM {keys.TABLE}", ())
        assert rows == [("loaded-1",)]
    finally:
        store.close()


def test_cli_dedupe_refuses_a_file_that_is_not_patients(tmp_path, capsys):
    bad = tmp_path / "x.ndjson"
    bad.write_text('{"resourceType": "Observation", "id": "o1"}\n')
    assert main(["mpi", "dedupe", str(bad)]) == 2
    assert "not a Patient" in capsys.readouterr().err
