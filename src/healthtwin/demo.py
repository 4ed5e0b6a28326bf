"""`healthtwin demo` (behind `make demo`): generate a population, load it into the embedded store, serve.

Generation and loading are skipped when the data folder already holds the same population, so a second
`make demo` starts serving at once.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

import orjson

from .config import Settings

log = logging.getLogger("healthtwin.demo")


def run(args) -> int:
    settings = Settings(Path(args.data_dir).resolve(), args.database)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    marker = settings.data_dir / "demo.json"
    wanted = {"patients": args.patients, "seed": args.seed, "database": settings.database}
    started = time.perf_counter()
    if not marker.exists() or orjson.loads(marker.read_bytes()) != wanted:
        _build(settings, args.patients, args.seed)
        marker.write_bytes(orjson.dumps(wanted))
    else:
        print(f"Demo population already loaded in {settings.data_dir} (delete it to rebuild).", file=sys.stderr)
    print(f"Ready in {time.perf_counter() - started:.0f} s.", file=sys.stderr)
    if args.no_serve:
        return 0
    base = f"http://{args.host}:{args.port}"
    print(f"""
Health Twin demo: {args.patients:,} synthetic citizens in {settings.database or settings.data_dir}

  {base}/fhir/metadata                               the CapabilityStatement
  {base}/fhir/Patient?_count=5                       citizens
  {base}/fhir/Patient?address-city=Bakı&gender=female&_summary=count
  {base}/fhir/Observation?code=http://loinc.org|4548-4&value-quantity=gt7&_include=Observation:subject
  {base}/fhir/Immunization?vaccine-code=http://hl7.org/fhir/sid/cvx|03&date=ge2024-01-01&_summary=count
  {base}/fhir/Patient/pat-0/$everything
  {base}/fhir/Encounter?class=IMP&date=ge2024-01&_sort=-date&_count=10

Authentication is not enforced yet (OpenPolicy): keep this on localhost.
""", file=sys.stderr)
    from .cli import cmd_serve
    args.workers, args.log_level = 1, "warning"
    return cmd_serve(args)


def _build(settings: Settings, patients: int, seed: int) -> None:
    from .loading import load_paths
    from .population.generator import generate
    db = settings.data_dir / "healthtwin.sqlite"
    if settings.database is None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    out = settings.data_dir / "population"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    manifest = generate(out, patients, seed)
    total = sum(o["count"] for o in manifest["output"])
    print(f"Generated {total:,} resources for {patients:,} citizens in {time.perf_counter() - t:.0f} s "
          f"({out}).", file=sys.stderr)
    code = load_paths(settings, [str(out)], restart=True, workers=os.cpu_count() or 1)
    if code:
        raise RuntimeError("loading the demo population failed")
