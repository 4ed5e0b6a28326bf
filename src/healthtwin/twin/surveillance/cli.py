"""``healthtwin surveillance run``: one detector on one series, in the reference corpus's formats.

    healthtwin surveillance run --control SIDECAR.json --input INPUT.csv --out OUT.csv

The sidecar is taken as the corpus writes it: ``function_call`` names the method, ``control`` holds
its settings, ``range`` the monitored rows. The output has that method's columns, so any reference
file can be reproduced (and compared) from the command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("surveillance", help="outbreak detectors (EARS, Farrington, CUSUM, GLR)")
    ssub = p.add_subparsers(dest="surveillance_command", required=True)
    run_p = ssub.add_parser("run", help="run the method a corpus sidecar JSON names on a series")
    run_p.add_argument("--control", required=True, type=Path, help="sidecar JSON (function_call, control, range)")
    run_p.add_argument("--input", required=True, type=Path, help="input.csv (idx, epoch, date, ..., observed)")
    run_p.add_argument("--out", required=True, type=Path, help="where to write the output CSV")
    run_p.add_argument("--refit", action="store_true",
                       help="GLR: fit mu0 and alpha on the training rows instead of taking the sidecar's")
    run_p.add_argument("--compare", type=Path, default=None,
                       help="a reference CSV to compare the output with (relative difference <= 1e-6)")
    run_p.set_defaults(func=run)
    scan = ssub.add_parser("scan", help="the weekly detection run over the twin's series: ranked alerts as "
                                        "FHIR Communications (NDJSON)")
    scan.add_argument("--analytics", required=True, help="the analytics folder (its analytics.duckdb)")
    scan.add_argument("--syndromes", default="", help="comma-separated groups (default: every group)")
    scan.add_argument("--level", default="district", choices=["national", "region", "district"],
                      help="which places' series to scan (default district)")
    scan.add_argument("--weeks", type=int, default=1, help="how many recent weeks to look at (default 1)")
    scan.add_argument("--max-per-district", type=int, default=3,
                      help="alert groups raised per district and week before only p < 1e-6 passes (default 3)")
    scan.add_argument("--out", required=True, type=Path, help="NDJSON file of Communications ('-' for stdout)")
    scan.set_defaults(func=run_scan)


def run(args: argparse.Namespace) -> int:
    from . import reference_io as rio
    from . import sidecar

    try:
        meta = rio.read_sidecar(args.control)
        series = rio.read_input(args.input)
        columns = sidecar.run(meta, series, refit=args.refit)
    except (ValueError, KeyError) as exc:
        print(f"healthtwin surveillance: {exc}", file=sys.stderr)
        return 2
    rio.write_output(args.out, columns, logical=sidecar.LOGICAL)
    print(f"wrote {len(columns['idx'])} rows to {args.out}")
    if args.compare is not None:
        result = rio.compare(columns, rio.read_output(args.compare))
        for name, col in result["columns"].items():
            print(f"  {name}: {col}")
        print("parity: " + ("OK" if result["ok"] else "DIFFERS"))
        return 0 if result["ok"] else 1
    return 0


def run_scan(args: argparse.Namespace) -> int:
    import json

    from . import job

    try:
        series = job.series_from_analytics(args.analytics, [x for x in args.syndromes.split(",") if x] or None,
                                           level=args.level)
        summary = job.run(series, job.district_epidemiologist, weeks=args.weeks,
                          max_per_district=args.max_per_district)
    except ValueError as exc:
        print(f"healthtwin surveillance scan: {exc}", file=sys.stderr)
        return 2
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in summary.resources)
    if str(args.out) == "-":
        sys.stdout.write(lines)
    else:
        args.out.write_text(lines)
    print(f"{summary.series} series, {summary.signals} signals in {summary.groups} groups: {summary.raised} raised, "
          f"{summary.held_back} held back by the per-district cap", file=sys.stderr)
    return 0
