"""`healthtwin forecast flusight --data DIR --reference-date YYYY-MM-DD --out FILE.csv`: one reference
date's ensemble forecast of every location in the folder's target data, in the FluSight hub's CSV format.
`healthtwin forecast warm --analytics DIR`: the nightly fit of the twin's series, stored for the route."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    forecast = subparsers.add_parser("forecast", help="forecasts of weekly counts (healthtwin forecast flusight --help)")
    kinds = forecast.add_subparsers(dest="forecast_kind", required=True, metavar="KIND")
    hub = kinds.add_parser("flusight", help="one FluSight reference date: every location, horizons 0-3, "
                                            "23 quantiles, the hub's CSV")
    hub.add_argument("--data", required=True, type=Path,
                     help="folder with target-hospital-admissions.csv and/or its vintages file "
                          "(target-hospital-admissions_vintages_*.csv[.gz]); the vintage known on the "
                          "reference date is used")
    hub.add_argument("--reference-date", required=True, help="the Saturday the horizons count from (YYYY-MM-DD)")
    hub.add_argument("--out", required=True, type=Path, help="the hub CSV to write")
    hub.add_argument("--model", default="ensemble", choices=["ensemble", "baseline"],
                     help="the ensemble (default) or the FluSight flat baseline")
    hub.add_argument("--cache", type=Path, default=None,
                     help="folder keeping the unwidened forecasts of earlier reference dates that the spread "
                          "calibration re-forecasts (keyed by the data and the code), so a weekly run fits one date")
    hub.set_defaults(func=run)
    warm = kinds.add_parser("warm", help="fit and store the forecasts of every syndrome x level of the twin whose "
                                         "stored fit is missing or stale (what GET /analytics/forecasts answers)")
    warm.add_argument("--analytics", required=True, type=Path, help="the analytics folder (analytics.duckdb)")
    warm.add_argument("--syndromes", default=None,
                      help="comma-separated groups (default: every group of the series)")
    warm.add_argument("--levels", default="national,region,district",
                      help="comma-separated levels among national, region, district (default: all three)")
    warm.set_defaults(func=run_warm)


def run_warm(args: argparse.Namespace) -> int:
    import json

    from ..series import open_analytics, syndromes
    from .stored import LEVELS, warm
    levels = [v for v in args.levels.split(",") if v]
    bad = sorted(set(levels) - set(LEVELS))
    if bad or not levels:
        raise ValueError(f"--levels {args.levels!r}: use national, region and/or district")
    con = open_analytics(args.analytics)  # a clear error when there is no analytics database
    try:
        groups = None
        if args.syndromes:
            groups = [v for v in args.syndromes.split(",") if v]
            unknown = sorted(set(groups) - {s["syndrome"] for s in syndromes(con)})
            if unknown:
                raise ValueError(f"--syndromes: no group {', '.join(unknown)} (see GET /analytics/indicators)")
        report = warm(args.analytics, groups, levels, con=con)
    finally:
        con.close()
    print(json.dumps(vars(report), indent=1))
    return 1 if report.failed else 0


def run(args: argparse.Namespace) -> int:
    from . import calibration, flusight as fs
    from .baseline import flat_baseline

    reference_date = fs.parse_date(args.reference_date)
    fs.check_reference_date(reference_date)
    started = time.perf_counter()
    frame = fs.read_target_data(args.data)
    snapshot = fs.known_on(frame, reference_date)
    if not snapshot.counts:
        raise ValueError(f"{args.data}: no counts before {reference_date}")
    steps = fs.steps_to_horizons(snapshot, reference_date)
    n = max(max(s) for s in steps.values())
    panel = fs.panel_of(snapshot)
    note = ""
    if args.model == "baseline":
        quantiles = fs.at_horizons({k: flat_baseline(v, n, seed=reference_date.toordinal()) for k, v in panel.items()},
                                   steps)
    else:  # the nowcast-corrected vintage, the ensemble, its spread from the re-forecast past weeks
        quantiles, raw, factors = calibration.Forecaster(frame, store=args.cache).forecast(reference_date)
        note = (f"; last week's count x{raw.revision.cumulative[0]:.3f} for its revision still to come"
                f" ({raw.revision.pairs} vintage pairs), spread of the 95% band x{factors[:, 1].min():.2f}"
                f"-{factors[:, 1].max():.2f} over horizons from the past {calibration.PAST_WEEKS} weeks' errors")
    fs.write_hub_csv(fs.hub_rows(reference_date, quantiles), args.out)
    source = f"vintage of {snapshot.as_of}" if snapshot.as_of else "final target file (no vintages: revisions not honoured)"
    print(f"{args.out}: {len(panel)} locations from the {source}, {time.perf_counter() - started:.1f} s{note}",
          file=sys.stderr)
    return 0
