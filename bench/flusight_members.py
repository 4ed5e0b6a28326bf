"""Candidate ensemble members beside the ensemble's own components: each alone, and every weighting of them
all (steps of 0.2, theta at least 0.2, spread 0.9-1.2) chosen as bench/flusight_select.py chooses (least
mean of natural and log relative WIS over 2022-23 and 2024-25 among those with 95% coverage in
[0.90, 0.97] in both), with the held-out 2023-24 printed beside the choice, never used for it.

    nice -n 10 python bench/flusight_members.py                        # analog, every second date
    nice -n 10 python bench/flusight_members.py --members analog peak  # peak: slow (minutes a date)
    nice -n 10 python bench/flusight_members.py --members gbqr gbqr-slow --no-held-out --dump /tmp/dev.pkl
    nice -n 10 python bench/flusight_members.py --members gbqr gbqr-slow gbqr-log-fast --no-held-out --reuse /tmp/dev.pkl
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import flusight as season_bench  # noqa: E402
import flusight_select as select  # noqa: E402
from healthtwin.twin.forecasting import ensemble  # noqa: E402
from healthtwin.twin.forecasting.analog import AnalogForecast  # noqa: E402
from healthtwin.twin.forecasting.gbqr import GradientBoostedQuantiles  # noqa: E402
from healthtwin.twin.forecasting.growth import GrowthRegression  # noqa: E402
from healthtwin.twin.forecasting.peak import PeakAwareGrowth  # noqa: E402

MEMBERS = {"analog": AnalogForecast(), "peak": PeakAwareGrowth(), "gbqr": GradientBoostedQuantiles(),
           "gbqr-log": GradientBoostedQuantiles("gbqr-log", log=True),
           "gbqr-slow": GradientBoostedQuantiles("gbqr-slow", trees=200, learning_rate=0.04),
           "gbqr-log-fast": GradientBoostedQuantiles("gbqr-log-fast", log=True, trees=50, learning_rate=0.16),
           "gbqr-log-wave": GradientBoostedQuantiles("gbqr-log-wave", log=True, wave=True),
           "gbqr-log-rate": GradientBoostedQuantiles("gbqr-log-rate", log=True, rate=True),
           "growth-rate": GrowthRegression("growth-qr-relative-trend-rate", relative=True, trend=True, rate=True),
           "gbqr-log-bag": GradientBoostedQuantiles("gbqr-log-bag", log=True, seeds=(1, 2)),
           "gbqr-log-wave-bag": GradientBoostedQuantiles("gbqr-log-wave-bag", log=True, wave=True, seeds=(1, 2)),
           "growth-wave": GrowthRegression("growth-qr-relative-trend-wave", relative=True, trend=True, wave=True)}
SPREADS = (0.9, 1.0, 1.1, 1.2)
DEVELOPMENT = ("2022-23", "2024-25")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", nargs="+", default=["analog"], choices=sorted(MEMBERS))
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--no-held-out", action="store_true", help="forecast and score the development seasons only")
    p.add_argument("--dump", type=Path, help="pickle of the seasons' forecast tables, to score other weightings")
    p.add_argument("--reuse", type=Path, help="a --dump of the same dates: its models' forecasts are not recomputed")
    args = p.parse_args()
    chosen = {m.name: m for m in ensemble.default_models() + [MEMBERS[m] for m in args.members]}
    seasons = DEVELOPMENT if args.no_held_out else (*DEVELOPMENT, "2023-24")
    data = {}
    if args.reuse:
        import pickle
        data = {s: d for s, d in pickle.loads(args.reuse.read_bytes()).items() if s in seasons}
    for season in seasons:
        missing = [m for name, m in chosen.items() if season not in data or name not in data[season][0]]
        if not missing:
            continue
        select.CANDIDATES = missing
        new = select.season_tables(season, args.every)
        if season in data:
            if new[2] != data[season][2]:
                raise SystemExit(f"--reuse {args.reuse}: other tasks for {season} (other --every?)")
            data[season][0].update(new[0])
        else:
            data[season] = new
    select.CANDIDATES = list(chosen.values())
    data = {s: ({n: a for n, a in d[0].items() if n in chosen}, *d[1:]) for s, d in data.items()}
    if args.dump:
        import pickle
        args.dump.write_bytes(pickle.dumps(data))

    def scores(q: np.ndarray, season: str) -> tuple[float, float, float, float]:
        arrays, ref, _, y = data[season]
        s, b = season_bench.score_arrays(q, y), season_bench.score_arrays(ref["reference"], y)
        return s["wis"] / b["wis"], s["wis_log"] / b["wis_log"], s["cov50"], s["cov95"]

    def line(per: dict) -> str:
        return "; ".join(f"{s} rel {a:.3f} log {b:.3f} cov {c:.3f}/{d:.3f}" for s, (a, b, c, d) in per.items())

    names = [m.name for m in select.CANDIDATES]
    for name in names:
        print(f"{name:28s} alone: {line({s: scores(data[s][0][name], s) for s in data})}")
    results = []
    for combo in itertools.product(range(select.STEPS + 1), repeat=len(names)):
        weights = {n: c / select.STEPS for n, c in zip(names, combo) if c}
        if sum(combo) != select.STEPS or weights.get("theta-log", 0) < 0.2 - 1e-9:
            continue
        for spread in SPREADS:
            per = {s: scores(ensemble.widen(ensemble.average({n: {"tasks": data[s][0][n]} for n in weights},
                                                              weights)["tasks"], spread), s)
                   for s in data}
            results.append((weights, spread, per))
    admissible = [r for r in results if all(0.90 <= r[2][s][3] <= 0.97 for s in DEVELOPMENT)]
    admissible.sort(key=lambda r: np.mean([r[2][s][0] + r[2][s][1] for s in DEVELOPMENT]))
    print(f"{len(results)} weightings x spreads, {len(admissible)} admissible on {' and '.join(DEVELOPMENT)}; best:")
    for weights, spread, per in admissible[:8]:
        print(f"  spread {spread} {weights}: {line(per)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
