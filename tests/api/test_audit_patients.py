"""The fast scan that names the patients of a response (for audit) agrees with a full parse and walk."""
from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from healthtwin.api.auditing import _walk, patients_in

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "r4-examples.ndjson.gz"


def test_scan_agrees_with_walk_on_every_example():
    with gzip.open(EXAMPLES, "rb") as fp:
        lines = list(fp)
    assert sum(1 for line in lines if patients_in(line)) > 200
    for line in lines:
        assert patients_in(line) == _walk(line)
        pretty = orjson.dumps(orjson.loads(line), option=orjson.OPT_INDENT_2)
        assert patients_in(pretty) == _walk(pretty)


def test_patient_whose_id_comes_first_is_found():
    body = orjson.dumps({"id": "p9", "resourceType": "Patient", "link": [{"other": {"reference": "Patient/p8"}}]})
    assert patients_in(body) == ["Patient/p8", "Patient/p9"]
