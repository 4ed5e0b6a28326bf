"""The citizen's access log as it grows (docs/web.md, "Who looked at my record"): `$access-log` whole (the
oldest 1,000 entries, what the page read before paging) and paged (the newest 50 of others' accesses, what the
page reads now), the access page itself, and the floor measured in the same run: one FHIR read of the patient
with the same token, through the same application.

    PYTHONPATH=src python bench/bench_access_log.py [--entries 2000 20000] [--rounds 20]

A fresh SQLite store per size; the trail is grown by real audited reads of the record (an administrator's,
and a fifth of them the citizen's own). Prints p50 and p95 milliseconds per call."""
from __future__ import annotations

import argparse
import html
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

PUBLIC = "http://127.0.0.1:8080"
PASSWORD = "a long bench password"


def _timed(call, rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        answer = call()
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, answer.text[:300]
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]


def _sign_in(client) -> None:
    start = client.get("/app/login", follow_redirects=False)
    page = client.get(start.headers["location"])
    form = {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                                                         page.text)}
    back = client.post("/auth/authorize", data={**form, "username": "citizen", "password": PASSWORD},
                       follow_redirects=False)
    client.get(back.headers["location"].removeprefix(PUBLIC), follow_redirects=False)


def run(entries: int, rounds: int, folder: Path) -> list[tuple[str, float, float]]:
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    from healthtwin.security.clients import add_user, ensure_security_schema
    from healthtwin.security.commands import mint
    from healthtwin.security.storage import open_store
    data = folder / "data"
    data.mkdir(parents=True)
    store = open_store(f"sqlite:///{data / 'twin.sqlite'}", data)
    app = build_app(store, AppSettings(data_dir=data, public_url=PUBLIC, rate=None))
    ensure_security_schema(store)
    add_user(store, "citizen", PASSWORD, "citizen", patient="Patient/p1")
    out = []
    with TestClient(app, base_url=PUBLIC) as client:
        admin = {"authorization": "Bearer " + mint(data, PUBLIC, "admin", "person", ["user/*.cruds"],
                                                   ["administrator"])}
        patient = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Əliyeva", "given": ["Aysel"]}]}
        assert client.put("/fhir/Patient/p1", json=patient, headers=admin).status_code in (200, 201)
        _sign_in(client)
        mine = {"authorization": "Bearer " + client.cookies.get("ht_session")}
        for i in range(entries):  # every read is one audit entry naming the patient
            client.get("/fhir/Patient/p1", headers=mine if i % 5 == 0 else admin)
        out.append(("floor: GET /fhir/Patient/p1 (same token)", *_timed(
            lambda: client.get("/fhir/Patient/p1", headers=mine), rounds)))
        out.append(("$access-log whole (oldest 1,000)", *_timed(
            lambda: client.get("/fhir/Patient/p1/$access-log", headers=mine), rounds)))
        out.append(("$access-log?_count=50&others=true", *_timed(
            lambda: client.get("/fhir/Patient/p1/$access-log?_count=50&others=true", headers=mine), rounds)))
        out.append(("/app/me/access (first page)", *_timed(lambda: client.get("/app/me/access"), rounds)))
    store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    for entries in args.entries:
        with tempfile.TemporaryDirectory(prefix="bench-access-log-") as tmp:
            rows = run(entries, args.rounds, Path(tmp))
        print(f"\n{entries:,} entries naming the patient (a fifth the citizen's own), {args.rounds} rounds")
        print(f"{'call':48} {'p50 ms':>8} {'p95 ms':>8}")
        for name, p50, p95 in rows:
            print(f"{name:48} {p50:8.1f} {p95:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
