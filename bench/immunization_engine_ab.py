"""The CDSi engine before and after a change, in the same run: speed (children/s per process, CPU) and a
field-by-field comparison of every result.

    git worktree add /tmp/engine-main main          # the code before, beside this tree
    PYTHONPATH=src python bench/immunization_engine_ab.py --old /tmp/engine-main [--children 20000] [--rounds 2]

Each side runs in its own process (one core each, one after the other, alternating `--rounds` times) on the
same children: the cohort bench's (bench_immunization.child: born in the two years before 2026-12-02, the
Azerbaijani calendar's doses up to their age, some missed or late), assessed 61 days later as
bench/immunization_cohort.py's rewrite does, on the `aze` schedule (the first 2,000 also on `who` and `cdc`,
not timed). With HEALTHTWIN_CORPORA set, the CDC test
cases (cicada-ndjson, both files) are also assessed on the `cdc` schedule by both sides and compared.
Also timed, as the cohort bench's engine floor: cohort.forecast_chunk over the same children as FHIR records
(records to the engine's Patient, the engine, the recommendation resource), with the cyclic garbage collector
running and paused (the chunk keeps every child's recommendation until it is written: the collections that
retained output triggers are a cost of the chunk, not of the engine). Compared: every vaccine group's status, dose number and four dates; every antigen's status and its best
series (group, type, status, forecast target dose, dates, dose number); every dose evaluation (status,
reason, every reason, target dose); and the FHIR result Parameters (fhir_io.result_parameters). Timed: the
engine alone (`engine.assess`), CPU seconds, the Patients built beforehand.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ON = date(2026, 12, 2)


def _iso(d):
    return d.isoformat() if d else None


def canonical(forecasts) -> list:
    """Everything the engine returns for one patient, as plain data (the same for either code)."""
    out = []
    for f in forecasts:
        antigens = []
        for a in f.antigens:
            best = [[s.group, s.kind, s.status, s.forecast_dose, _iso(s.earliest), _iso(s.recommended),
                     _iso(s.past_due), _iso(s.latest), s.dose_number(), s.series.get("seriesName"),
                     [[r.dose.id, r.status, r.reason, list(r.reasons), r.target] for r in s.results]]
                    for s in a.best]
            evaluations = [[r.dose.id, r.status, r.reason, list(r.reasons), r.target] for r in a.evaluations()]
            antigens.append([a.antigen, a.status, best, evaluations])
        out.append([f.group, f.status, f.dose_number, _iso(f.earliest), _iso(f.recommended), _iso(f.past_due),
                    _iso(f.latest), antigens])
    return out


def worker(src: str, n: int, out: str) -> None:
    sys.path.insert(0, src)
    sys.path.insert(0, str(ROOT / "bench"))
    import orjson

    import bench_immunization as bi
    from healthtwin.registries.immunization import engine, fhir_io, rules
    from healthtwin.registries.immunization.patient import Patient

    bi.ASSESSMENT = ON
    aze = rules.load("aze")
    children = [bi.child(seed) for seed in range(n)]
    later = ON + timedelta(days=61)
    for p in children[:50]:  # warm up: the rule files, the first caches
        engine.assess(Patient(p.birth, p.gender, later, list(p.doses)), aze)
    fresh = [Patient(p.birth, p.gender, later, list(p.doses)) for p in children]
    # Each child's result is written out (outside the timing) and let go, as the bulk path does: results
    # kept for every child would make the collector's passes grow with the heap and time it, not the engine.
    cpu = 0.0
    lines = []
    clock = time.process_time
    for i, p in enumerate(fresh):
        c0 = clock()
        r = engine.assess(p, aze)
        cpu += clock() - c0
        lines.append(orjson.dumps([canonical(r), fhir_io.result_parameters(f"c{i}", p, r)]))
    # the cohort bench's engine floor: the same children as stored FHIR records, through the bulk path's
    # forecast (records to the engine's Patient, the engine, the recommendation resource)
    from healthtwin.registries.immunization.cohort import forecast_chunk
    import immunization_cohort  # (puts this tree's src/ on the path: imported after the side's modules)
    cases = {p["id"]: (p, imms, []) for p, imms in immunization_cohort.resources(n, ON)}
    c0 = time.process_time()
    forecast_chunk(cases, list(cases), later)
    chunk_cpu = time.process_time() - c0
    # the same with the cyclic collector paused: what the chunk's retained output costs in collections
    # (nothing the forecast makes is a cycle; reference counting frees it all)
    import gc
    gc.collect()
    gc.disable()
    c0 = time.process_time()
    forecast_chunk(cases, list(cases), later)
    chunk_nogc = time.process_time() - c0
    gc.enable()
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line)
    # the first children on the WHO and CDC schedules too (not timed): more of the rules' paths
    for key in ("who", "cdc"):
        other = rules.load(key)
        for i, p in enumerate(children[:min(n, 2000)]):
            patient = Patient(p.birth, p.gender, later, list(p.doses))
            try:
                r = engine.assess(patient, other)
                line = orjson.dumps([key, canonical(r), fhir_io.result_parameters(f"c{i}", patient, r)])
            except ValueError as exc:  # a rule the engine cannot read (WHO's "24 hours"): the same error
                line = orjson.dumps([key, type(exc).__name__, str(exc)])
            digest.update(line)
            lines.append(line)
    cases = 0
    corpora = os.environ.get("HEALTHTWIN_CORPORA")
    if corpora:
        cdc = rules.load("cdc")
        folder = Path(corpora) / "cdsi" / "test-cases" / "cicada-ndjson"
        for name in ("healthyTestCases.ndjson", "conditionTestCases.ndjson"):
            for raw in (folder / name).read_bytes().splitlines():
                if not raw.strip():
                    continue
                try:
                    patient = fhir_io.patient_from_parameters(orjson.loads(raw), cdc)
                except fhir_io.InputError:  # a case the command refuses too (no birth date)
                    continue
                r = engine.assess(patient, cdc)
                line = orjson.dumps([canonical(r), fhir_io.result_parameters("case", patient, r)])
                digest.update(line)
                lines.append(line)
                cases += 1
    Path(out).write_bytes(b"\n".join(lines))
    print(json.dumps({"children": n, "cpu": cpu, "chunk_cpu": chunk_cpu, "chunk_nogc": chunk_nogc, "cases": cases, "digest": digest.hexdigest()}))


def run(src: str, n: int, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=src)
    done = subprocess.run([sys.executable, __file__, "--worker", src, "--children", str(n), "--out", str(out)],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the {src} side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def first_difference(old: Path, new: Path) -> str | None:
    a, b = old.read_bytes().split(b"\n"), new.read_bytes().split(b"\n")
    if len(a) != len(b):
        return f"{len(a)} results before, {len(b)} after"
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"result {i} differs:\n before {x[:600]!r}\n after  {y[:600]!r}"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", help="a source tree of the code before (its src/ is imported)")
    ap.add_argument("--children", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.children, args.out)
        return 0
    if not args.old:
        ap.error("--old is required")
    sides = {"before": str(Path(args.old).resolve() / "src"), "after": str(ROOT / "src")}
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    outs = {k: tmp / f"engine-ab-{k}-{os.getpid()}.ndjson" for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    chunk: dict[str, list[float]] = {k: [] for k in sides}
    nogc: dict[str, list[float]] = {k: [] for k in sides}
    print(f"machine: {os.cpu_count()} cores; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"{args.children:,} children, aze, assessed {ON + timedelta(days=61)}")
    info: dict[str, dict] = {}
    for _ in range(args.rounds):
        for side, src in sides.items():
            info[side] = run(src, args.children, outs[side])
            cpu[side].append(info[side]["cpu"])
            chunk[side].append(info[side]["chunk_cpu"])
            nogc[side].append(info[side]["chunk_nogc"])
            print(f"  {side}: engine {args.children / info[side]['cpu']:,.0f} children/s = "
                  f"{info[side]['cpu'] / args.children * 1e3:.3f} ms CPU a child; bulk path's forecast "
                  f"{info[side]['chunk_cpu'] / args.children * 1e3:.3f} ms (collector paused "
                  f"{info[side]['chunk_nogc'] / args.children * 1e3:.3f} ms); load average {os.getloadavg()[0]:.1f}")
    best = {k: min(v) for k, v in cpu.items()}
    print(f"best of {args.rounds}: before {args.children / best['before']:,.0f} children/s "
          f"({best['before'] / args.children * 1e3:.3f} ms), after {args.children / best['after']:,.0f} children/s "
          f"({best['after'] / args.children * 1e3:.3f} ms): {best['before'] / best['after']:.2f} x faster")
    best = {k: min(v) for k, v in chunk.items()}
    print(f"bulk path's forecast (cohort.forecast_chunk: records -> engine -> recommendation): before "
          f"{best['before'] / args.children * 1e3:.3f} ms a child, after {best['after'] / args.children * 1e3:.3f} ms: "
          f"{best['before'] / best['after']:.2f} x")
    best = {k: min(v) for k, v in nogc.items()}
    print(f"the same with the cyclic collector paused: before {best['before'] / args.children * 1e3:.3f} ms a child, "
          f"after {best['after'] / args.children * 1e3:.3f} ms: {best['before'] / best['after']:.2f} x")
    diff = first_difference(outs["before"], outs["after"])
    cases = info["after"]["cases"]
    if diff:
        print(f"RESULTS DIFFER: {diff}")
    else:
        print(f"identical: {args.children:,} children (aze; the first 2,000 also on who and cdc) and {cases:,} "
              f"CDC test cases, every field "
              f"(sha256 {info['after']['digest'][:16]})")
    for path in outs.values():
        path.unlink(missing_ok=True)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
