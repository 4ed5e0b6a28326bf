"""`healthtwin immunization ...`: run the CDC test cases, or forecast a file of FHIR Parameters."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .rules import DEFAULT_SCHEDULE, SCHEDULES


def add_parser(sub: Any) -> None:
    imm = sub.add_parser("immunization", help="the immunization forecaster (CDC CDSi logic)")
    commands = imm.add_subparsers(dest="immunization_command", required=True, metavar="ACTION")
    tc = commands.add_parser("test-cases", help="run the CDC CDSi test cases and write a report")
    tc.add_argument("dir", type=Path, help="folder of the test-case CSV sheets (cdsi/test-cases or its csv/)")
    tc.add_argument("--report", type=Path, required=True, help="the JSON report to write")
    tc.add_argument("--adjudication", type=Path, default=None,
                    help="adjudication CSV (default: the package's adjudication.csv)")
    fc = commands.add_parser("forecast", help="evaluate and forecast FHIR Parameters, one per line")
    fc.add_argument("--input", type=Path, required=True, help="NDJSON of Parameters (cicada-ndjson shape)")
    fc.add_argument("--out", type=Path, required=True, help="NDJSON of result Parameters to write")
    fc.add_argument("--schedule", choices=sorted(SCHEDULES), default=None,
                    help=f"supporting data (default {DEFAULT_SCHEDULE}; test-cases always use cdc)")
    from .refresh import add_parser as add_refresh  # the live registry's batch job (refresh.py)
    add_refresh(commands)
    imm.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.immunization_command == "refresh":
        from .refresh import run as refresh
        return refresh(args)
    if args.immunization_command == "test-cases":
        return _test_cases(args)
    return _forecast(args)


def _test_cases(args: argparse.Namespace) -> int:
    from .testcases import read_adjudication, run as run_cases, summary

    folder = args.dir / "csv" if (args.dir / "csv").is_dir() else args.dir  # cdsi/test-cases or its csv/
    if not folder.is_dir():
        raise ValueError(f"{args.dir} is not a folder of test-case CSV sheets")
    adjudicated = read_adjudication(args.adjudication)
    report = run_cases(folder, adjudicated=adjudicated)
    if not report:
        raise ValueError(f"no CDSi test-case sheets found in {args.dir}")
    args.report.write_text(json.dumps({"summary": summary(report), "cases": report}, indent=1))
    for line in summary(report)["lines"]:
        print(line)
    return 0


def _forecast(args: argparse.Namespace) -> int:
    from . import rules
    from .engine import assess
    from .fhir_io import InputError, patient_from_parameters, result_parameters

    schedule = rules.load(args.schedule or DEFAULT_SCHEDULE)
    done = failed = 0
    with args.input.open(encoding="utf-8") as src, args.out.open("w", encoding="utf-8") as out:
        for number, line in enumerate(src, start=1):
            if not line.strip():
                continue
            try:
                params = json.loads(line)
                patient = patient_from_parameters(params, schedule)
            except (ValueError, InputError) as exc:
                print(f"line {number}: {exc}", file=sys.stderr)
                failed += 1
                continue
            pid = next((p["resource"].get("id", f"line{number}") for p in params.get("parameter", [])
                        if (p.get("resource") or {}).get("resourceType") == "Patient"), f"line{number}")
            result = result_parameters(str(pid), patient, assess(patient, schedule))
            out.write(json.dumps(result, separators=(",", ":")) + "\n")
            done += 1
    print(f"{done} forecast ({schedule.name}), {failed} refused")
    return 0 if failed == 0 else 1
