"""Research extracts: no direct identifier leaves, pseudonyms join within a project and not across, and the
extract is audited."""
from __future__ import annotations

import datetime as dt

import subprocess
import sys
from pathlib import Path

import orjson

from healthtwin.api.services import Services
from healthtwin.loading import load
from healthtwin.population.generator import generate
from healthtwin.security.audit import decode_event
from healthtwin.security.storage import open_store


def _cli(data: Path, *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "healthtwin", *args, "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def _read(folder: Path) -> dict[str, list[dict]]:
    return {p.stem: [orjson.loads(line) for line in p.read_bytes().splitlines()] for p in folder.glob("*.ndjson")}


def test_research_extract(tmp_path):
    population, data = tmp_path / "population", tmp_path / "data"
    generate(population, 12, seed=4, end_date=dt.date(2024, 12, 31))
    store = open_store(None, data)
    assert not load(Services.build(store), [str(population)], workers=1).errors
    store.close()
    secrets: set[str] = set()
    for rtype in ("Patient", "Practitioner", "RelatedPerson"):
        for line in (population / f"{rtype}.ndjson").read_bytes().splitlines():
            person = orjson.loads(line)
            secrets |= {i["value"] for i in person.get("identifier", [])}
            secrets |= {n["family"] for n in person.get("name", []) if len(n.get("family", "")) > 3}
            secrets |= {t["value"] for t in person.get("telecom", [])}
            secrets |= {e["valueString"] for e in person.get("extension", []) if "valueString" in e}
    assert len(secrets) > 20

    _cli(data, "extract", "--project", "diabetes-2026", "--out", str(tmp_path / "a"))
    _cli(data, "extract", "--project", "diabetes-2026", "--out", str(tmp_path / "b"), "--types", "Patient")
    _cli(data, "extract", "--project", "cardio-2026", "--out", str(tmp_path / "c"), "--types", "Patient")
    a, b, c = _read(tmp_path / "a"), _read(tmp_path / "b"), _read(tmp_path / "c")

    dump = b"".join(p.read_bytes() for p in (tmp_path / "a").glob("*.ndjson"))
    leaked = sorted(s for s in secrets if s.encode() in dump)
    assert not leaked, leaked[:5]
    manifest = orjson.loads((tmp_path / "a" / "manifest.json").read_bytes())
    store = open_store(None, data)
    assert {o["type"]: o["count"] for o in manifest["output"]} == store.count_resources()
    patients = {p["id"] for p in a["Patient"]}
    subjects = {o["subject"]["reference"] for o in a["Observation"]}
    assert subjects and {s.split("/", 1)[1] for s in subjects} <= patients  # linkable inside the extract
    assert {p["id"] for p in b["Patient"]} == patients  # stable within a project
    assert not {p["id"] for p in c["Patient"]} & patients  # unlinkable across projects
    events = [decode_event(bytes(r[0])) for r in store.query("SELECT event FROM audit_log", [])]
    exports = [e for e in events if e.get("action") == "E" and "research extract" in str(e.get("entity"))]
    assert len(exports) == 3 and "diabetes-2026" in str(exports[0]["entity"])
    store.close()
