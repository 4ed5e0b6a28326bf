"""The forecaster on the twin's own series: weekly influenza-like illness per region (and nationally) of a
generated population with the planted influenza season, forecast from each week's data for the next
four weeks and scored (WIS, relative WIS against the flat baseline, 50%/95% coverage) over the season.

    nice -n 10 python bench/forecast_planted.py --patients 3000 --seed 2

Generation and materialisation take a minute or two; the forecasts are the ensemble of docs/twin.md,
unchanged; "twin path" is the same with the count quantiles twin_series.forecast_weekly gives the route and
the dashboard (whole numbers outside the median). The planted season is the last complete winter (Dec 1 -
Mar 15, peak on 20 January)."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from healthtwin.analytics.indicators import indicator_views  # noqa: E402
from healthtwin.analytics.materialize import Materializer, NdjsonSource  # noqa: E402
from healthtwin.analytics.refresh import refresh_all  # noqa: E402
from healthtwin.population.generator import generate  # noqa: E402
from healthtwin.twin import series as S  # noqa: E402
from healthtwin.twin.forecasting import ensemble  # noqa: E402
from healthtwin.twin.forecasting.baseline import flat_baseline  # noqa: E402
from healthtwin.twin.forecasting.scoring import covered, wis  # noqa: E402
from healthtwin.twin.forecasting.twin_series import count_quantiles  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=3000)
    p.add_argument("--seed", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.time()
        generate(root / "pop", args.patients, args.seed, end_date=dt.date(2024, 12, 31))
        flu = orjson.loads((root / "pop" / "ground_truth" / "influenza.json").read_bytes())
        mat = Materializer(NdjsonSource(root / "pop"), root / "out", indicator_views(), parquet=False)
        refresh_all(mat)
        print(f"generated and materialised {args.patients} citizens in {time.time() - t0:.0f} s", file=sys.stderr)
        regions = S.weekly_counts(mat.con, "ili", level="region")
        (national,) = S.weekly_counts(mat.con, "ili", level="national")
        population = {"/".join(k): n for k, n in S.residents(mat.con, "region").items()}
        population["national"] = sum(S.residents(mat.con, "national").values())
        mat.close()
    start = dt.date.fromisoformat(flu["season_start"]) - dt.timedelta(weeks=4)
    end = dt.date.fromisoformat(flu["season_end"])
    dates = national.dates
    origins = [i for i, d in enumerate(dates) if start <= d <= end - dt.timedelta(weeks=1)]
    rows = {"ensemble": [], "twin path": [], "baseline": []}
    truth, levels = [], []
    seconds = []
    for i in origins:
        panel = {"/".join(s.key): np.asarray(s.counts[: i + 1], dtype=float) for s in regions}
        panel["national"] = np.asarray(national.counts[: i + 1], dtype=float)
        started = time.perf_counter()
        combined, _ = ensemble.forecast(panel, 4, population=population)
        seconds.append(time.perf_counter() - started)
        counts = {"/".join(s.key): s.counts for s in regions} | {"national": national.counts}
        for key, q in combined.items():
            base = flat_baseline(panel[key], 4, seed=i)
            for h in range(4):
                if i + 1 + h < len(dates):
                    rows["ensemble"].append(q[h])
                    rows["twin path"].append(count_quantiles(q[h]))
                    rows["baseline"].append(base[h])
                    truth.append(counts[key][i + 1 + h])
                    levels.append("national" if key == "national" else "region")
    y = np.array(truth, dtype=float)
    kind = np.array(levels)
    print(f"planted influenza season {flu['season_start']}..{flu['season_end']} (peak {flu['peak_date']}):"
          f" {len(origins)} forecast weeks, {len(regions)} regions + national, horizons 1-4 weeks")
    print(f"forecast time per week (all series): median {np.median(seconds):.1f} s;"
          f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for where in ("region", "national"):
        m = kind == where
        base = wis(np.array(rows["baseline"])[m], y[m]).mean()
        for name in ("ensemble", "twin path", "baseline"):
            q = np.array(rows[name])[m]
            print(f"{where:9s} {name:10s} n={m.sum():4d} WIS {wis(q, y[m]).mean():7.2f}"
                  f" relative {wis(q, y[m]).mean() / base:5.3f} coverage 50% {covered(q, y[m], 0.5).mean():.3f}"
                  f" 95% {covered(q, y[m], 0.95).mean():.3f}  (mean weekly count {y[m].mean():.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
