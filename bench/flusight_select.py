"""How the ensemble's components, weights and spread were chosen: every candidate component forecasts every
second reference date of the development seasons (2022-23 from the final target file cut at each date,
against our own flat baseline; 2024-25 from the vintages, against the corpus's FluSight-baseline), and
every weighting in steps of 0.2 with spread factors 1.0/1.1/1.2 is scored; the chosen one has the least
mean of natural- and log-scale relative WIS over the seasons among those whose 95% coverage lies in
[0.90, 0.97] in every one and that give statsforecast's theta at least 0.2 (the per-series model that runs
distributed); the best without that condition is printed beside it. 2023-24 is not read.

    nice -n 10 python bench/flusight_select.py                      # 2022-23 and 2024-25, every 2nd date
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import flusight as season_bench  # noqa: E402
from healthtwin.twin.forecasting import ensemble, flusight as fs  # noqa: E402
from healthtwin.twin.forecasting.baseline import flat_baseline  # noqa: E402
from healthtwin.twin.forecasting.growth import GrowthRegression  # noqa: E402
from healthtwin.twin.forecasting.levels import tidy  # noqa: E402
from healthtwin.twin.forecasting.models import LOG, theta  # noqa: E402

CANDIDATES = [GrowthRegression(), GrowthRegression("growth-qr-pooled", pooled=True),
              GrowthRegression("growth-qr-relative", relative=True),
              GrowthRegression("growth-qr-relative-pooled", relative=True, pooled=True),
              GrowthRegression("growth-qr-relative-trend", relative=True, trend=True), theta(LOG)]
SPREADS = (1.0, 1.1, 1.2)
MIN_WEIGHTS = {"theta-log": 0.2}
STEPS = 5  # weights in steps of 1/5


def season_tables(season: str, every: int) -> tuple[dict, dict, list, np.ndarray]:
    frame = fs.read_target_data(season_bench.CORPUS)
    corpus = {season_bench.BASELINE: fs.read_hub_forecasts(next(season_bench.CORPUS.glob(fs.FORECASTS_GLOB)),
                                                           season_bench.BASELINE)}
    setup = season_bench.season_setup(season, frame, corpus)
    tables: dict[str, dict] = {}
    for ref in setup["refs"][::every]:
        snapshot = fs.known_on(setup["data"], ref)
        steps = fs.steps_to_horizons(snapshot, ref)
        panel = fs.panel_of(snapshot)
        n = max(max(s) for s in steps.values())
        named = {m.name: ensemble.run(m, panel, n, snapshot.population) for m in CANDIDATES}
        named["baseline"] = {k: flat_baseline(v, n, seed=ref.toordinal()) for k, v in panel.items()}
        for name, quantiles in named.items():
            for loc, q in fs.at_horizons(quantiles, steps).items():
                for h in fs.HORIZONS:
                    tables.setdefault(name, {})[(ref.isoformat(), loc, h)] = q[h]
        print(f"{season} {ref}", file=sys.stderr, flush=True)
    reference = tables.pop("baseline") if season == "2022-23" else corpus[season_bench.BASELINE]

    def eligible(k: tuple) -> bool:
        end = (dt.date.fromisoformat(k[0]) + dt.timedelta(weeks=k[2])).isoformat()
        return k[1] not in ("US", "78") and end <= setup["last_end"] and (k[1], end) in setup["truth"]

    tasks = sorted(k for k in tables[CANDIDATES[0].name] if eligible(k) and k in reference)
    truth = np.array([setup["truth"][(t[1], (dt.date.fromisoformat(t[0]) + dt.timedelta(weeks=t[2])).isoformat())]
                      for t in tasks])
    arrays = {name: np.array([table[t] for t in tasks]) for name, table in tables.items()}
    return arrays, {"reference": np.array([reference[t] for t in tasks])}, tasks, truth


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seasons", nargs="+", default=["2022-23", "2024-25"], choices=["2022-23", "2024-25"])
    p.add_argument("--every", type=int, default=2)
    args = p.parse_args()
    data = {s: season_tables(s, args.every) for s in args.seasons}
    names = [m.name for m in CANDIDATES]
    results = []
    for combo in itertools.product(range(STEPS + 1), repeat=len(names)):
        if sum(combo) != STEPS:
            continue
        weights = {n: c / STEPS for n, c in zip(names, combo) if c}
        for spread in SPREADS:
            per_season = {}
            for season, (arrays, ref, _, y) in data.items():
                q = ensemble.widen(tidy(sum(w * arrays[n] for n, w in weights.items())), spread)
                s = season_bench.score_arrays(q, y)
                b = season_bench.score_arrays(ref["reference"], y)
                per_season[season] = (s["wis"] / b["wis"], s["wis_log"] / b["wis_log"], s["cov95"])
            results.append((weights, spread, per_season))
    admissible = [r for r in results if all(0.90 <= v[2] <= 0.97 for v in r[2].values())]
    print(f"{len(results)} weightings x spreads, {len(admissible)} with 95% coverage in [0.90, 0.97] in every season")
    kept = [r for r in admissible if all(r[0].get(n, 0) >= w - 1e-9 for n, w in MIN_WEIGHTS.items())]
    for label, rows, shown in (("chosen (with the minimum weights)", kept, 5), ("without the minimum weights", admissible, 3)):
        print(label)
        for weights, spread, per_season in sorted(rows, key=lambda r: np.mean([v[0] + v[1] for v in r[2].values()]))[:shown]:
            figures = "; ".join(f"{s} rel {v[0]:.3f} log {v[1]:.3f} cov95 {v[2]:.3f}" for s, v in per_season.items())
            print(f"  spread {spread} {weights}: {figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
