"""Read-by-id throughput and latency with wrk at 64 connections, beside a bare Starlette floor.

Loads Synthea bulk data (or a generated population) into a fresh store, starts `healthtwin serve` and the
bare handler (bench/bare_read_app.py) on the same database, and runs wrk against each in turn, reading a
rotating set of resource ids (a Lua script). Prints req/s, p50, p99 and the ratio ours / bare.

    .venv/bin/python bench/bench_read.py [--database postgresql://…] [--workers 2] [--seconds 15]

Needs `wrk` on the PATH (Debian: `apt-get install wrk`).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_load import fresh_database  # noqa: E402 - bench/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
CORPORA = Path(os.environ.get("HEALTHTWIN_CORPORA", ROOT.parent / "shared" / "corpora"))


def wait(url: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def wrk(url_base: str, ids: list[str], seconds: int, connections: int, token: str = "") -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    paths = ",".join(f'"/fhir/{i}"' for i in ids)
    headers = f'{{["Authorization"] = "Bearer {token}"}}' if token else "nil"
    script.write_text(f"local paths = {{{paths}}}\nlocal n = 0\nlocal headers = {headers}\n"
                      "request = function()\n  n = n + 1\n"
                      "  return wrk.format('GET', paths[(n % #paths) + 1], headers)\nend\n")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          url_base], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": ms("50%"), "p99": ms("99%"), "errors": int(errors.group(1)) if errors else 0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench_read needs wrk, the HTTP load generator, on the PATH (Debian: apt-get install wrk)")
    data = Path(tempfile.mkdtemp(prefix="bench-read-"))
    env = dict(os.environ, HEALTHTWIN_DATA_DIR=str(data))
    if args.database:
        env["HEALTHTWIN_DATABASE"] = args.database
        fresh_database(args.database)  # an empty store each run, also on a fresh machine
    db_args = ["--data-dir", str(data)] + (["--database", args.database] if args.database else [])
    subprocess.run([BIN / "healthtwin", "load", *db_args, str(CORPORA / "synthea" / "bulk-10-patients")],
                   check=True, env=env, capture_output=True)
    sys.path.insert(0, str(ROOT / "src"))
    from healthtwin.security.storage import open_store
    store = open_store(args.database, data)
    ids = [f"{t}/{i}" for t, i in store.query("SELECT type, id FROM resources ORDER BY rid LIMIT 2000", [])]
    store.close()
    # An administrator's token: every read is authorised by the policy and written to the audit chain, as
    # in production (the bare handler does neither).
    token = subprocess.run([BIN / "healthtwin", "token", "--data-dir", str(data), "--subject", "bench",
                            "--kind", "person", "--roles", "administrator", "--scope", "user/*.rs",
                            "--public-url", "http://127.0.0.1:8181"],
                           check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
    results = {}
    for name, cmd, port in (
            ("healthtwin", [BIN / "healthtwin", "serve", *db_args, "--port", "8181", "--workers", str(args.workers),
                            "--public-url", "http://127.0.0.1:8181", "--rate-limit", "off"], 8181),
            ("bare starlette", [BIN / "uvicorn", "bench.bare_read_app:app", "--port", "8182", "--workers",
                                str(args.workers), "--log-level", "warning", "--no-access-log", "--loop", "uvloop",
                                "--http", "httptools"], 8182)):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            wait(f"http://127.0.0.1:{port}/health" if port == 8181 else f"http://127.0.0.1:{port}/fhir/{ids[0]}")
            auth = token if port == 8181 else ""
            wrk(f"http://127.0.0.1:{port}", ids, 3, args.connections, auth)  # warm-up
            results[name] = wrk(f"http://127.0.0.1:{port}", ids, args.seconds, args.connections, auth)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    store_name = "PostgreSQL" if args.database else "SQLite"
    for name, r in results.items():
        print(f"{store_name:10} {name:15} {r['rps']:9,.0f} req/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms"
              f"  non-2xx {r['errors']}")
    ratio = results["healthtwin"]["rps"] / results["bare starlette"]["rps"]
    print(f"ratio healthtwin / bare = {ratio:.2f}  (goal >= 0.3; target >= 10,000 req/s, p99 <= 20 ms)")


if __name__ == "__main__":
    main()
