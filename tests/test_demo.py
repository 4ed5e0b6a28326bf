"""`healthtwin demo --no-serve`: builds the embedded store, analytics and tokens' prerequisites, and leaves no
citizen identifier in clear anywhere in the data folder."""
from __future__ import annotations

import argparse
from pathlib import Path

import orjson


def test_demo_leaves_no_identifier_in_clear(tmp_path: Path) -> None:
    from healthtwin import demo
    from healthtwin.security.storage import open_store
    data = tmp_path / "data"
    args = argparse.Namespace(data_dir=str(data), database=None, patients=40, seed=3, no_serve=True)
    assert demo.run(args) == 0
    store = open_store(None, data)
    patients = [orjson.loads(store.open_content("Patient", i, c))
                for i, c in store.query("SELECT id, content FROM resources WHERE type = 'Patient'", [])]
    store.close()
    assert len(patients) >= 40
    fins = {ident["value"] for p in patients for ident in p.get("identifier", []) if len(ident.get("value", "")) == 7}
    families = {n["family"] for p in patients for n in p.get("name", []) if len(n.get("family", "")) >= 6}
    assert len(fins) >= 40 and families
    population = data / "population"
    assert (population / "manifest.json").exists() and (population / "ground_truth").is_dir()
    assert not list(population.glob("*.ndjson"))
    blobs = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert len(blobs) > 1_000_000  # the store, the analytics database and Parquet files were all read
    leaked = [f for f in fins if f.encode() in blobs] + [n for n in families if n.encode() in blobs]
    assert not leaked, leaked
    # A second run finds the population loaded and does nothing.
    assert demo.run(args) == 0
