"""Nightly forecasting of the twin's district x syndrome series: the ensemble of twin/forecasting on
hundreds of weekly series, timed, with the flat baseline on the same series as the floor.

    nice -n 10 python bench/forecast_twin.py --districts 66 --syndromes 8 --weeks 156

The series are synthetic (Poisson counts around a yearly wave whose size and timing vary by district):
twin/series.py's own weekly series have the same shape (one count per ISO week per place and syndrome),
and the time per series does not depend on what the counts mean. Budget: all of them within 10 minutes."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from healthtwin.twin.forecasting.baseline import flat_baseline  # noqa: E402
from healthtwin.twin.forecasting.twin_series import forecast_weekly  # noqa: E402
from healthtwin.twin.series import Series  # noqa: E402


def synthetic(districts: int, syndromes: int, weeks: int, seed: int = 1) -> list[Series]:
    rng = np.random.default_rng(seed)
    start = dt.date(2023, 1, 2)
    dates = [start + dt.timedelta(weeks=i) for i in range(weeks)]
    t = np.arange(weeks)
    out = []
    for s in range(syndromes):
        for d in range(districts):
            base = rng.uniform(2, 40)
            peak = rng.uniform(0, 52)
            wave = base * (1 + rng.uniform(0.5, 4) * np.exp(-0.5 * (((t - peak) % 52 - 26) / 4.0) ** 2))
            out.append(Series((f"region-{d % 11}", f"district-{d}"), f"syndrome-{s}", "week", dates,
                              rng.poisson(wave).tolist()))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--districts", type=int, default=66)
    p.add_argument("--syndromes", type=int, default=8)
    p.add_argument("--weeks", type=int, default=156)
    args = p.parse_args()
    series = synthetic(args.districts, args.syndromes, args.weeks)
    started, cpu = time.perf_counter(), time.process_time()
    for s in series:
        flat_baseline(np.asarray(s.counts, dtype=float), 4)
    floor = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    forecasts = forecast_weekly(series)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert len(forecasts) == len(series)
    print(f"{len(series)} weekly series ({args.districts} districts x {args.syndromes} syndromes, {args.weeks} weeks),"
          f" 4 weeks ahead, 23 quantiles")
    print(f"ensemble: {wall:.1f} s wall, {cpu:.1f} s CPU ({1000 * wall / len(series):.0f} ms per series);"
          f" floor (flat baseline alone): {floor:.1f} s; budget 600 s")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores;"
          f" projected for 2,000 series: {wall / len(series) * 2000:.0f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
