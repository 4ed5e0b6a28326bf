"""`healthtwin demo`: builds the embedded store, analytics and tokens, leaves no citizen identifier in clear
anywhere in the data folder, leaves the analytics current, and prints commands that work pasted into bash:
every printed role does its typical task on the demo data, against a served demo."""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

END = dt.date(2024, 12, 31)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(data: Path, port: int, **kw) -> argparse.Namespace:
    return argparse.Namespace(data_dir=str(data), database=None, patients=40, seed=3, end_date=END, no_serve=True,
                              host="127.0.0.1", port=port, public_url=None, insecure_open=False, **kw)


@pytest.fixture(scope="module")
def demo_built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """A small demo (40 citizens, a fixed end date) built once: (data folder, port, what it printed)."""
    from healthtwin import demo
    data = tmp_path_factory.mktemp("demo") / "data"
    port = _free_port()
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        assert demo.run(_args(data, port)) == 0
    return data, port, printed.getvalue()


def test_demo_leaves_no_identifier_in_clear(demo_built: tuple[Path, int, str]) -> None:
    from healthtwin import demo
    from healthtwin.security.storage import open_store
    data, port, _ = demo_built
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
    again = io.StringIO()
    with contextlib.redirect_stderr(again):
        assert demo.run(_args(data, port)) == 0
    assert "already loaded" in again.getvalue()


def test_the_demo_leaves_the_analytics_current(demo_built: tuple[Path, int, str]) -> None:
    """The first refresh after the demo (the server's, on its schedule) reads nothing again: the views'
    watermarks are the store's after the load, not the time the NDJSON was written."""
    from healthtwin.analytics.indicators import indicator_views
    from healthtwin.analytics.materialize import Materializer, StoreSource
    from healthtwin.security.storage import open_store
    data, _, _ = demo_built
    store = open_store(None, data)
    materializer = Materializer(StoreSource(store), data, indicator_views())
    try:
        report = materializer.refresh()
    finally:
        materializer.close()
        store.close()
    assert report.views and not report.failed
    assert [v.name for v in report.views if v.mode == "full"] == []
    assert sum(v.read for v in report.views) == 0, [(v.name, v.mode, v.read) for v in report.views]


@contextlib.contextmanager
def _serving(data: Path, port: int, log: Path):
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "healthtwin.cli", "serve", "--data-dir", str(data),
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        try:
            deadline = time.time() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except OSError:
                    assert proc.poll() is None and time.time() < deadline, log.read_text()
                    time.sleep(0.2)
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def _tasks(guide: str) -> list[tuple[str, str]]:
    """(title, command) for each printed curl command (the comment line above it is its title)."""
    out, title = [], ""
    for line in guide.splitlines():
        if line.startswith("# "):
            title = line[2:]
        elif line.startswith("curl "):
            out.append((title, line))
    return out


def test_every_printed_command_works_pasted_into_bash(demo_built: tuple[Path, int, str], tmp_path: Path) -> None:
    """The printed block run by bash as printed (a `curl` function records each answer): every role's task
    succeeds on the demo data — the citizen reads their record, the clinician a patient in their care, the
    laboratory finds its order and posts the result, the pharmacy finds the prescription by its number and
    dispenses it, the insurer reads its claims, the analyst an indicator, the auditor the trail. The commands
    write (a result, a dispense), so they run against a copy of the demo's folder: the other tests here read
    the demo as it was built, in whatever order they run."""
    built, port, printed = demo_built
    data = tmp_path / "data"
    shutil.copytree(built, data)
    guide = printed[printed.index("# Paste into a shell"):]
    tasks = _tasks(guide)
    assert len(tasks) >= 12
    for _, command in tasks:
        words = shlex.split(command)  # well-formed for a POSIX shell; the URL is always the last word
        assert words[-1].startswith(f"http://127.0.0.1:{port}/") and command.endswith("'")
        assert all(ord(c) < 128 for c in words[-1]), words[-1]  # Bakı percent-encoded
    assert "'http://127.0.0.1:%d/fhir/Patient/pat-0/$everything'" % port in guide
    answers = tmp_path / "answers"
    answers.mkdir()
    script = ('set -eu\nn=0\ncurl() { n=$((n+1)); command curl -sS -o "%s/$n.json" -w "%%{http_code}\\n" "$@" '
              '>> "%s/codes"; }\n' % (answers, answers)) + guide
    with _serving(data, port, tmp_path / "serve.log"):
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    codes = (answers / "codes").read_text().split()
    assert len(codes) == len(tasks)
    bodies = {title: orjson.loads((answers / f"{i + 1}.json").read_bytes()) for i, (title, _) in enumerate(tasks)}
    failed = {title: (code, bodies[title]) for (title, _), code in zip(tasks, codes) if code not in ("200", "201")}
    assert not failed, failed

    def answer(prefix: str) -> dict:
        (body,) = [b for t, b in bodies.items() if t.startswith(prefix)]
        return body

    def ids(bundle: dict, rtype: str) -> set[str]:
        return {e["resource"]["id"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == rtype}

    assert "pat-0" in ids(answer("citizen: my whole record"), "Patient")
    assert len(answer("citizen: my whole record")["entry"]) > 5
    clinician = next(t for t in bodies if t.startswith("clinician at Organization/org-poly-"))
    assert bodies[clinician]["resourceType"] == "Patient" and bodies[clinician]["id"] == "pat-0"
    assert ids(answer("laboratory Organization/org-lab-"), "ServiceRequest") == {"demo-sr-0"}
    result = answer("laboratory: the result")
    assert result["resourceType"] == "Observation" and result["basedOn"] == [{"reference": "ServiceRequest/demo-sr-0"}]
    worklist = answer("laboratory: its worklist")
    assert ids(worklist, "Task") and all(e["resource"]["owner"] == {"reference": worklist["entry"][0]["resource"][
        "owner"]["reference"]} for e in worklist["entry"] if e["resource"]["resourceType"] == "Task")
    assert answer("clinician: the patient's International Patient Summary")["type"] == "document"
    assert answer("citizen: my twin")["resourceType"] == "Parameters"
    assert ids(answer("pharmacy Organization/org-pharm-"), "MedicationRequest") == {"demo-mrq-0"}
    dispensed = answer("pharmacy: dispense it")
    assert dispensed["resourceType"] == "MedicationDispense" and dispensed["id"]
    claims = answer("insurer")
    assert ids(claims, "Claim") and all(e["resource"]["insurer"]["reference"] == "Organization/org-itsda"
                                        for e in claims["entry"])
    assert answer("public-health analyst")
    trail = answer("auditor")
    assert trail.get("entry"), trail  # the clinician's read above is in it
    assert answer("administrator: women living in Bak")["total"] > 0


def test_demo_refuses_a_busy_port_before_building(tmp_path: Path) -> None:
    from healthtwin import demo
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ValueError, match=f"port {port} on 127.0.0.1 is already in use"):
            demo.run(argparse.Namespace(**{**vars(_args(tmp_path / "data", port)), "no_serve": False}))
    assert not (tmp_path / "data").exists()  # nothing generated, no key written


def test_the_demo_tokens_organisations_exist_in_the_demo_data(demo_built: tuple[Path, int, str]) -> None:
    """Each printed token acting for an organisation names one the demo data holds, of the right kind."""
    import base64

    from healthtwin.security.storage import open_store
    data, _, printed = demo_built
    claims = {}
    for var, token in re.findall(r"^export ([A-Z]+)=(\S+)$", printed, re.M):
        payload = token.split(".")[1]
        claims[var] = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    orgs = {var: c["organization"] for var, c in claims.items() if c.get("organization")}
    assert set(orgs) == {"CLINICIAN", "LAB", "PHARMACY", "INSURER"}
    assert orgs["CLINICIAN"].startswith("Organization/org-poly-") and orgs["LAB"].startswith("Organization/org-lab-")
    assert orgs["PHARMACY"].startswith("Organization/org-pharm-") and orgs["INSURER"] == "Organization/org-itsda"
    store = open_store(None, data)
    try:
        missing = [o for o in orgs.values() if store.read("Organization", o.split("/")[1]) is None]
        patient = orjson.loads(store.open_content("Patient", "pat-0", store.read("Patient", "pat-0").content))
    finally:
        store.close()
    assert not missing
    # the clinician works where the citizen is registered; lab and pharmacy serve the same district
    assert patient["managingOrganization"]["reference"] == orgs["CLINICIAN"]
    district = orgs["LAB"].removeprefix("Organization/org-lab-")
    assert orgs["PHARMACY"] == f"Organization/org-pharm-{district}" and f"-{district}-" in orgs["CLINICIAN"]


def test_the_insecure_demo_prints_commands_without_tokens(demo_built: tuple[Path, int, str]) -> None:
    from healthtwin import demo
    from healthtwin.config import Settings
    data, port, _ = demo_built
    text = demo.guide(Settings(data, None), f"http://127.0.0.1:{port}", insecure=True)
    assert text.startswith("# INSECURE") and "export " not in text and "Authorization" not in text
    for _, command in _tasks(text):
        words = shlex.split(command)
        assert words[0] == "curl" and words[-1].startswith(f"http://127.0.0.1:{port}/")
