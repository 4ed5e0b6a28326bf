"""Transaction ingest of Synthea bundles through the HTTP API, beside a storage floor.

Starts `healthtwin serve` on a fresh store, POSTs the 20 Synthea transaction bundles (about 290
resources each, urn:uuid references) from `--clients` concurrent clients, repeating the set `--rounds`
times with fresh ids, and reports resources/s with validation and indexing on. The floor is the same
resources' JSON inserted straight into a table of the same database (no validation, no indexes), in
the same run.

    .venv/bin/python bench/bench_ingest.py [--database postgresql://…] [--workers 2] [--clients 4]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
CORPORA = Path(os.environ.get("HEALTHTWIN_CORPORA", ROOT.parent / "shared" / "corpora"))
sys.path.insert(0, str(ROOT / "bench"))
from bench_load import fresh_database  # noqa: E402
from bench_read import wait  # noqa: E402


def fresh(bundle: dict) -> bytes:
    """The bundle with new urn:uuid fullUrls (and references), so each round creates new resources."""
    text = json.dumps(bundle)
    for entry in bundle["entry"]:
        old = entry["fullUrl"]
        text = text.replace(old, f"urn:uuid:{uuid.uuid4()}")
    return text.encode()


def floor(database: str | None, data: Path, bodies: list[bytes]) -> float:
    """Resources/s for inserting the entries' JSON as rows, one transaction per bundle: the storage floor."""
    rows_per_bundle = [[json.dumps(e["resource"]).encode() for e in json.loads(b)["entry"]] for b in bodies]
    n = sum(len(r) for r in rows_per_bundle)
    if database:
        import psycopg
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_floor")
            conn.execute("CREATE TABLE bench_floor (id BIGSERIAL PRIMARY KEY, content BYTEA)")
            t = time.perf_counter()
            for rows in rows_per_bundle:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany("INSERT INTO bench_floor (content) VALUES (%s)", [(r,) for r in rows])
            dt = time.perf_counter() - t
            conn.execute("DROP TABLE bench_floor")
    else:
        import sqlite3
        conn = sqlite3.connect(data / "floor.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE bench_floor (id INTEGER PRIMARY KEY, content BLOB)")
        t = time.perf_counter()
        for rows in rows_per_bundle:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO bench_floor (content) VALUES (?)", [(r,) for r in rows])
            conn.execute("COMMIT")
        dt = time.perf_counter() - t
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    bundles = [json.loads(p.read_text()) for p in sorted((CORPORA / "synthea" / "bundles").glob("*.json"))]
    bodies = [fresh(b) for _ in range(args.rounds) for b in bundles]
    total = sum(len(json.loads(b)["entry"]) for b in bodies)
    data = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    if args.database:
        fresh_database(args.database)  # an empty store each run, also on a fresh machine
    db_args = ["--data-dir", str(data)] + (["--database", args.database] if args.database else [])
    # An administrator's token: every entry is authorised and every request audited, as in production.
    token = subprocess.run([BIN / "healthtwin", "token", "--data-dir", str(data), "--subject", "bench",
                            "--kind", "person", "--roles", "administrator", "--scope", "user/*.cruds",
                            "--public-url", "http://127.0.0.1:8183"],
                           check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    proc = subprocess.Popen([BIN / "healthtwin", "serve", *db_args, "--port", "8183", "--workers", str(args.workers),
                             "--public-url", "http://127.0.0.1:8183", "--rate-limit", "off"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait("http://127.0.0.1:8183/health")
        headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal",
                   "Authorization": f"Bearer {token}"}
        with httpx.Client(base_url="http://127.0.0.1:8183", timeout=600) as client:
            def post(body: bytes) -> int:
                r = client.post("/fhir", content=body, headers=headers)
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code}: {r.text[:500]}")
                return len(r.json()["entry"])
            t = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                done = sum(pool.map(post, bodies))
            dt = time.perf_counter() - t
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    assert done == total
    store_name = "PostgreSQL" if args.database else "SQLite"
    ours = total / dt
    base = floor(args.database, data, bodies)
    print(f"{store_name}: {total:,} resources in {len(bodies)} transaction bundles, {args.clients} clients, "
          f"{args.workers} workers")
    print(f"  healthtwin ingest  {ours:8,.0f} resources/s (validation + indexing on)")
    print(f"  floor (raw insert) {base:8,.0f} resources/s   ratio {ours / base:.2f}")
    print("  target: >= 5,000/s on SQLite, >= 3,000/s on PostgreSQL")


if __name__ == "__main__":
    main()
