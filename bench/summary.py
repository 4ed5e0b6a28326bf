"""Patient/{id}/$summary and Patient/{id}/$twin latency for citizens with ten years of history, in a store of
about one million resources, beside floors measured in the same run.

Generates a population with ten years of history (`--patients`, default 6,000 with `--start-year 2015`: about
one million resources), loads it with `healthtwin load`, starts `healthtwin serve` and measures over HTTP with
an administrator's token (every request authorised and audited, the rate limit off), one request at a time:
  * $summary and $twin (asOf the population's last day) for adults aged 40 or more: p50 / p95 / max;
  * floor 1, through the same server: GET Patient/{id} of the same citizens (HTTP, token, audit, one row);
  * floor 2, on the database: the citizen's rows of the types both operations read (Observation, Condition,
    MedicationRequest, Immunization, Procedure, AllergyIntolerance), found through the patient index and
    fetched and parsed: a plain read of the same resources, without search, policy or assembly.

    .venv/bin/python bench/summary.py [--patients 6000] [--start-year 2015] [--database postgresql://…]
                                      [--keep DIR] [--queries 200] [--port 8187]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))
from bench_load import fresh_database  # noqa: E402
from bench_read import wait  # noqa: E402

PORT = 8187
READ_TYPES = ("Observation", "Condition", "MedicationRequest", "Immunization", "Procedure", "AllergyIntolerance")
END = "2024-12-31"


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))]


def line(label: str, samples: list[float]) -> str:
    return (f"{label:<46} p50 {statistics.median(samples):7.1f} ms  p95 {pct(samples, 0.95):7.1f} ms  "
            f"max {max(samples):7.1f} ms  (n={len(samples)})")


def timed_get(client: httpx.Client, url: str, **params: str) -> tuple[float, httpx.Response]:
    t = time.perf_counter()
    r = client.get(url, params=params)
    elapsed = (time.perf_counter() - t) * 1000
    r.raise_for_status()
    return elapsed, r


def prepare(args: argparse.Namespace, data: Path, db_args: list[str]) -> None:
    if (data / "loaded").exists():
        return
    if args.database:
        fresh_database(args.database)
    if not (data / "population" / "manifest.json").exists():
        subprocess.run([BIN / "healthtwin", "generate", "--patients", str(args.patients), "--seed", "7",
                        "--end-date", END, "--start-year", str(args.start_year), "--out", str(data / "population")],
                       check=True, stderr=subprocess.DEVNULL)
    t = time.perf_counter()
    subprocess.run([BIN / "healthtwin", "load", *db_args, "--workers", "2", str(data / "population")], check=True,
                   stderr=subprocess.DEVNULL)
    print(f"load: {time.perf_counter() - t:.0f} s")
    (data / "loaded").touch()


def adults(store, n: int, rng: random.Random) -> list[str]:
    """Citizens aged 40 or more at the end of the history and alive: a decade of record each."""
    cutoff = (dt.date.fromisoformat(END) - dt.timedelta(days=int(40 * 365.25))).isoformat()
    found = []
    for (content,) in store.query("SELECT rid FROM resources WHERE type = 'Patient' AND deleted = 0", []):
        found.append(content)
    rows = store.fetch_rows(found)
    ids = [r.id for r in rows if (p := orjson.loads(r.content)).get("birthDate", "9999") <= cutoff
           and not p.get("deceasedDateTime")]
    rng.shuffle(ids)
    return ids[:n]


def heaviest(store, n: int) -> list[str]:
    """The citizens with the most rows that name them as subject or patient: the worst records."""
    return [r[0] for r in store.query(
        "SELECT x.target_id FROM idx_reference x JOIN search_params s ON s.pid = x.pid WHERE x.target_type = "
        "'Patient' AND s.code IN ('subject', 'patient') GROUP BY x.target_id ORDER BY COUNT(DISTINCT x.rid) DESC "
        "LIMIT ?", [n])]


def floor_rows(store, pid: str) -> int:
    """The citizen's rows of the types the operations read, by the patient index, fetched and parsed."""
    rids = [r[0] for r in store.query(
        "SELECT DISTINCT x.rid FROM idx_reference x JOIN search_params s ON s.pid = x.pid JOIN resources r "
        "ON r.rid = x.rid WHERE x.target_type = 'Patient' AND x.target_id = ? AND s.code IN ('subject', "
        f"'patient') AND r.type IN ({','.join('?' * len(READ_TYPES))}) AND r.deleted = 0", [pid, *READ_TYPES])]
    rows = store.fetch_rows(rids)
    for row in rows:
        orjson.loads(row.content)
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=6_000)
    ap.add_argument("--start-year", type=int, default=2015)
    ap.add_argument("--database", default=None)
    ap.add_argument("--keep", default=None, help="reuse/keep the data folder (skip generation and loading)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--port", type=int, default=PORT, help="two runs at once (SQLite and PostgreSQL) need two")
    args = ap.parse_args()
    port = args.port
    data = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-summary-"))
    db_args = ["--data-dir", str(data)] + (["--database", args.database] if args.database else [])
    prepare(args, data, db_args)
    from healthtwin.security.storage import open_store
    store = open_store(args.database, data)
    total = store.query("SELECT COUNT(*) FROM resources", [])[0][0]
    rng = random.Random(3)
    sample = adults(store, args.queries, rng)
    worst = heaviest(store, 20)
    print(f"store: {total:,} resources; {len(sample)} citizens aged 40+ sampled; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    env = dict(os.environ, HEALTHTWIN_DATA_DIR=str(data))
    token = subprocess.run([BIN / "healthtwin", "token", "--data-dir", str(data), "--subject", "bench", "--kind",
                            "person", "--roles", "administrator", "--scope", "user/*.rs", "--public-url",
                            f"http://127.0.0.1:{port}"], check=True, capture_output=True, text=True,
                           env=env).stdout.strip().splitlines()[-1]
    proc = subprocess.Popen([BIN / "healthtwin", "serve", *db_args, "--port", str(port), "--public-url",
                             f"http://127.0.0.1:{port}", "--rate-limit", "off"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait(f"http://127.0.0.1:{port}/health")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/fhir", timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            for pid in sample[:10]:  # warm-up: the validator, the schedules, the connection
                client.get(f"/Patient/{pid}/$summary")
                client.get(f"/Patient/{pid}/$twin", params={"asOf": END})
            summary, twin, read, sizes, entries = [], [], [], [], []
            for pid in sample:
                ms, r = timed_get(client, f"/Patient/{pid}/$summary")
                summary.append(ms)
                entries.append(len(r.json()["entry"]))
                ms, r = timed_get(client, f"/Patient/{pid}/$twin", asOf=END)
                twin.append(ms)
                ms, _ = timed_get(client, f"/Patient/{pid}")
                read.append(ms)
            worst_summary = [timed_get(client, f"/Patient/{pid}/$summary")[0] for pid in worst]
            worst_twin = [timed_get(client, f"/Patient/{pid}/$twin", asOf=END)[0] for pid in worst]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    floor = []
    for pid in sample:
        t = time.perf_counter()
        sizes.append(floor_rows(store, pid))
        floor.append((time.perf_counter() - t) * 1000)
    print(f"record read per citizen: median {statistics.median(sizes):.0f} resources (max {max(sizes)}); "
          f"summary entries median {statistics.median(entries):.0f}")
    print(line("Patient/{id}/$summary", summary) + "  (target p95 100 ms)")
    print(line("Patient/{id}/$twin", twin) + "  (target p95 100 ms)")
    print(line("floor: GET Patient/{id} (same server)", read))
    print(line("floor: the same rows read from the database", floor))
    worst_floor = []
    for pid in worst:
        t = time.perf_counter()
        n = floor_rows(store, pid)
        worst_floor.append((time.perf_counter() - t) * 1000)
    print(f"the 20 heaviest records ({n} rows of the types read, the last of them):")
    print(line("  $summary", worst_summary))
    print(line("  $twin", worst_twin))
    print(line("  floor: the same rows read from the database", worst_floor))


if __name__ == "__main__":
    main()
