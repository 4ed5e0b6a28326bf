"""How the spread calibration (calibration.py) was chosen: from the unwidened forecasts a season run keeps
(`bench/flusight.py --season S --every 2 --dump FILE`), every variant of the calibration is scored on the
same tasks: one factor per horizon or one per level, fitted on the log or the count scale, the grid's
lower end 0.5 or 0.9, taken half-way to the fixed 1.1 or not, from the past 6 (or --weeks) reference dates.
The chosen one has the least mean of natural- and log-scale relative WIS over 2022-23 and 2024-25 among
those with 95% coverage in [0.90, 0.97] in both; 2023-24 is scored only after the choice.

    nice -n 10 python bench/flusight.py --season 2022-23 --every 2 --dump /tmp/2022-23.pkl
    nice -n 10 python bench/flusight.py --season 2024-25 --every 2 --dump /tmp/2024-25.pkl
    nice -n 10 python bench/flusight_calibration.py /tmp/2022-23.pkl:2022-23 /tmp/2024-25.pkl:2024-25
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import flusight as season_bench  # noqa: E402
from healthtwin.twin.forecasting import calibration as cal, ensemble, flusight as fs  # noqa: E402
from healthtwin.twin.forecasting.levels import LEVELS, MEDIAN  # noqa: E402


def fit(q: np.ndarray, y: np.ndarray, grid: np.ndarray, per_level: bool, counts: bool) -> np.ndarray:
    """The factors (23,) of least quantile loss: per level or one for all, on the count or the log scale."""
    z = np.log1p(q)
    m = z[:, MEDIAN:MEDIAN + 1]
    target = y if counts else np.log1p(y)
    pred = m[:, :, None] + grid[None, None, :] * (z - m)[:, :, None]  # (N, 23, grid)
    if counts:
        pred = np.expm1(pred)
    diff = target[:, None, None] - pred
    tau = LEVELS[None, :, None]
    loss = np.maximum(tau * diff, (tau - 1) * diff).sum(axis=0)  # (23, grid)
    out = grid[np.argmin(loss, axis=1)] if per_level else np.full(23, grid[np.argmin(loss.sum(axis=0))])
    out[MEDIAN] = 1.0
    return out


def season(path: Path, name: str, weeks: int) -> tuple[cal.Forecaster, list, np.ndarray, dict, dict]:
    dump = pickle.loads(path.read_bytes())
    frame = fs.read_target_data(season_bench.CORPUS)
    data = pd.read_csv(season_bench.CORPUS / fs.TARGET_FILE, dtype={"location": str}) if name == "2022-23" else frame
    method = cal.Forecaster(data, past_weeks=weeks)
    method.cache.update(dump["raw"])
    tasks = dump["tasks"]
    y = np.array([dump["truth"][(t[1], (dt.date.fromisoformat(t[0]) + dt.timedelta(weeks=t[2])).isoformat())]
                  for t in tasks])
    errors = {}
    for ref in sorted({t[0] for t in tasks}):
        r = dt.date.fromisoformat(ref)
        now = method.raw(r)
        truth = {(loc, d.date().isoformat()): v for loc, s in now.snapshot.counts.items() for d, v in s.dropna().items()}
        per_h = {h: ([], []) for h in fs.HORIZONS}
        for back in range(1, weeks + 1):
            earlier = r - dt.timedelta(weeks=back)
            if not method.current(earlier):
                continue
            for h in fs.HORIZONS:
                target = (earlier + dt.timedelta(weeks=h)).isoformat()
                for loc, q in method.raw(earlier).quantiles.items():
                    if loc != "US" and (loc, target) in truth:
                        per_h[h][0].append(q[h])
                        per_h[h][1].append(truth[(loc, target)])
        errors[ref] = {h: (np.array(q), np.array(v)) for h, (q, v) in per_h.items()}
    base = season_bench.score_arrays(np.array([dump["reference"][t] for t in tasks]), y)
    return method, tasks, y, errors, base


def score(method, tasks, y, errors, base, per_level, counts, low, shrink) -> tuple[float, float, float, float]:
    grid = np.round(np.arange(low, 2.001, 0.05), 2)
    table = {}
    for ref, per_h in errors.items():
        factors = np.full((4, 23), ensemble.SPREAD)
        factors[:, MEDIAN] = 1.0
        for h, (q, v) in per_h.items():
            if len(v) >= cal.MIN_ERRORS:
                f = fit(q, v, grid, per_level, counts)
                factors[h] = f if shrink is None else shrink * f + (1 - shrink) * ensemble.SPREAD
                factors[h, MEDIAN] = 1.0
        for loc, q in method.raw(dt.date.fromisoformat(ref)).quantiles.items():
            scaled = cal.scale(q, factors)
            for h in fs.HORIZONS:
                table[(ref, loc, h)] = scaled[h]
    s = season_bench.score_arrays(np.array([table[t] for t in tasks]), y)
    return s["wis"] / base["wis"], s["wis_log"] / base["wis_log"], s["cov50"], s["cov95"]


def judged(result: dict[str, tuple]) -> tuple[float, bool]:
    """The selection rule over seasons' (relative WIS, log relative WIS, cov50, cov95, ...): the mean of the
    relative WIS on both scales, and whether every season's 95% coverage lies in [0.90, 0.97]."""
    rule = float(np.mean([v[0] + v[1] for v in result.values()]) / 2)
    return rule, all(0.90 <= v[3] <= 0.97 for v in result.values())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dumps", nargs="+", help="FILE:SEASON pairs from bench/flusight.py --dump")
    p.add_argument("--weeks", type=int, default=cal.PAST_WEEKS)
    p.add_argument("--lows", type=float, nargs="+", default=[0.5, 0.9], help="the grid's lower ends to try")
    args = p.parse_args()
    seasons = {name: season(Path(path), name, args.weeks) for path, name in (d.rsplit(":", 1) for d in args.dumps)}
    rows = []
    for per_level, counts, low, shrink in itertools.product((True, False), (True, False), args.lows, (None, 0.5)):
        result = {name: score(*data, per_level, counts, low, shrink) for name, data in seasons.items()}
        rule, ok = judged(result)
        label = (f"{'per level' if per_level else 'one per horizon'}, {'count' if counts else 'log'} scale, "
                 f"{low}-2.0, {'half-way' if shrink else 'not shrunk'}")
        rows.append((not ok, rule, label, result))
        figures = "; ".join(f"{n} {v[0]:.3f}/{v[1]:.3f} cov {v[2]:.3f}/{v[3]:.3f}" for n, v in result.items())
        print(f"{label:50s} rule {rule:.4f}{'' if ok else ' (coverage out)'}: {figures}", flush=True)
    best = min(rows)
    print(f"chosen: {best[2]} (rule {best[1]:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
