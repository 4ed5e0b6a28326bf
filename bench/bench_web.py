"""Page timings of the web pages (docs/web.md): each persona's pages rendered through the real application
(SMART policy, audit, analytics) over a demo data folder, beside the floor measured in the same run: one FHIR
read of the same patient with the same token, through the same in-process path the pages use.

    PYTHONPATH=src python bench/bench_web.py [--patients 1000] [--rounds 20] [--data-dir /tmp/bench-web]

Prints p50 and p95 milliseconds and the HTML size of each page. A page makes 1 to 9 API calls (the record page
9, run concurrently), so its time is that of its slowest calls plus the template."""
from __future__ import annotations

import argparse
import html
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

PUBLIC = "http://127.0.0.1:8080"
PAGES = {
    "alice": ["/app/me", "/app/me/prescriptions", "/app/me/claims", "/app/me/access", "/app/me/consents"],
    "dr-demo": ["/app/clinic?name=a", "/app/clinic/patient/pat-0"],
    "analyst-demo": ["/app/ministry", "/app/ministry/indicator/encounter_rate",
                     "/app/ministry/indicator/encounter_rate?region=Bak%C4%B1&by=district",
                     "/app/ministry/indicator/vaccination_coverage?by=age",
                     "/app/ministry/indicator/syndrome_cases", "/app/ministry/indicator/bed_occupancy"],
}


def sign_in(client, user: str, password: str) -> None:
    start = client.get("/app/login", follow_redirects=False)
    page = client.get(start.headers["location"])
    form = {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                                                         page.text)}
    back = client.post("/auth/authorize", data={**form, "username": user, "password": password},
                       follow_redirects=False)
    client.get(back.headers["location"].removeprefix(PUBLIC), follow_redirects=False)


def timed(client, path: str, rounds: int) -> tuple[float, float, int]:
    times, size = [], 0
    for _ in range(rounds):
        t = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - t) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
        size = len(answer.content)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1 if len(times) > 1 else 0], size


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--data-dir", default="/tmp/bench-web")
    args = ap.parse_args()
    data = Path(args.data_dir)
    subprocess.run([sys.executable, "-m", "healthtwin.cli", "demo", "--data-dir", str(data), "--patients",
                    str(args.patients), "--no-serve", "--end-date", "2026-12-01"], check=True,
                   stdout=subprocess.DEVNULL)
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    from healthtwin.security.storage import open_store
    passwords = orjson.loads((data / "demo-users.json").read_bytes())
    store = open_store(None, data)
    app = build_app(store, AppSettings(data_dir=data, public_url=PUBLIC, rate=None, analytics_dir=data))
    print(f"{args.patients:,} citizens, {args.rounds} rounds per page (TestClient, one process)")
    print(f"{'page':62} {'p50 ms':>8} {'p95 ms':>8} {'HTML kB':>8}")
    with TestClient(app, base_url=PUBLIC) as client:
        for user, paths in PAGES.items():
            client.cookies.clear()
            sign_in(client, user, passwords[user])
            token = client.cookies.get("ht_session")
            if user == "alice":
                client.headers["authorization"] = f"Bearer {token}"
                p50, p95, _ = timed(client, "/fhir/Patient/pat-0", args.rounds)
                del client.headers["authorization"]
                print(f"{'floor: GET /fhir/Patient/pat-0 (same token, same app)':62} {p50:8.1f} {p95:8.1f}")
            for path in paths:
                p50, p95, size = timed(client, path, args.rounds)
                print(f"{user + ' ' + path:62} {p50:8.1f} {p95:8.1f} {size / 1024:8.1f}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
