"""Whether the ensemble's components should be weighted by their own recent accuracy: from the unwidened
forecasts a season run keeps (`bench/flusight.py --season S --every 2 --dump FILE`), each variant re-weights
the components on every reference date R by their mean WIS over the forecasts of the past 6 reference dates
that the vintage of R can score (the same errors the spread calibration reads), w_c proportional to
fixed_c * (S_c / min S)^-power, taken part of the way (`share`) from the fixed weights; the spread is then
calibrated on the re-weighted past forecasts exactly as calibration.py does. power 0 is fixed weights; the
components' quantiles are averaged on the log(1 + count) scale (the present ensemble) or, in the first row,
on the counts' own (the ensemble before 2026-12-06). The chosen variant has the least mean of natural- and
log-scale relative WIS over 2022-23 and 2024-25 among those with 95% coverage in [0.90, 0.97] in both;
2023-24 is scored only after the choice.

    nice -n 10 python bench/flusight.py --season 2022-23 --every 2 --dump /tmp/2022-23.pkl
    nice -n 10 python bench/flusight.py --season 2024-25 --every 2 --dump /tmp/2024-25.pkl
    nice -n 10 python bench/flusight_weights.py /tmp/2022-23.pkl:2022-23 /tmp/2024-25.pkl:2024-25
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

import flusight_calibration as calib_bench  # noqa: E402
import flusight as season_bench  # noqa: E402
from healthtwin.twin.forecasting import calibration as cal, ensemble, flusight as fs  # noqa: E402
from healthtwin.twin.forecasting.scoring import wis  # noqa: E402


def past_errors(method: cal.Forecaster, ref: dt.date) -> list[tuple[dt.date, int, str, float]]:
    """(earlier date, horizon, location, observed) of every past forecast the vintage of `ref` scores."""
    now = method.raw(ref)
    truth = {(loc, d.date().isoformat()): v for loc, s in now.snapshot.counts.items() for d, v in s.dropna().items()}
    out = []
    for back in range(1, method.past_weeks + 1):
        earlier = ref - dt.timedelta(weeks=back)
        if not method.current(earlier):
            continue
        raw = method.raw(earlier)
        for h in fs.HORIZONS:
            target = (earlier + dt.timedelta(weeks=h)).isoformat()
            for loc in raw.quantiles:
                if loc != "US" and (loc, target) in truth:
                    out.append((earlier, h, loc, truth[(loc, target)]))
    return out


def combined(raw: cal.Raw, weights: dict[str, float], geometric: bool = False) -> dict[str, np.ndarray]:
    """The raw date's ensemble under other weights (locations no component forecast keep theirs); with
    `geometric`, the components' quantiles are averaged on the log(1 + y) scale instead of the counts'."""
    weighed = {n: c for n, c in raw.components.items() if n in weights}  # a candidate in the dump but not weighed is out
    av = ensemble.average(weighed, weights, log_scale=geometric)
    return {loc: av.get(loc, q) for loc, q in raw.quantiles.items()}


def weights_on(method, errors, power: float, share: float, log_wis: bool) -> dict[str, float]:
    if power == 0 or not errors:
        return dict(ensemble.WEIGHTS)
    scores = {}
    for name in ensemble.WEIGHTS:
        q, y = [], []
        for earlier, h, loc, v in errors:
            comp = method.raw(earlier).components.get(name, {})
            if loc in comp:
                q.append(comp[loc][h])
                y.append(v)
        if len(y) < cal.MIN_ERRORS:
            return dict(ensemble.WEIGHTS)
        q, y = np.array(q), np.array(y)
        scores[name] = float((wis(np.log1p(q), np.log1p(y)) if log_wis else wis(q, y)).mean())
    best = min(scores.values())
    adapted = {n: ensemble.WEIGHTS[n] * (scores[n] / best) ** -power for n in scores}
    total = sum(adapted.values())
    return {n: share * adapted[n] / total + (1 - share) * ensemble.WEIGHTS[n] for n in scores}


def score(method, tasks, y, base, power, share, log_wis, geometric=False):
    table, mean_w = {}, {n: [] for n in ensemble.WEIGHTS}
    for ref in sorted({t[0] for t in tasks}):
        r = dt.date.fromisoformat(ref)
        errors = past_errors(method, r)
        w = weights_on(method, errors, power, share, log_wis)
        for n in mean_w:
            mean_w[n].append(w[n])
        past = {e: combined(method.raw(e), w, geometric) for e in {e for e, *_ in errors}}
        by_horizon = {h: ([past[e][loc][h] for e, hh, loc, _ in errors if hh == h],
                          [obs for _, hh, _, obs in errors if hh == h]) for h in fs.HORIZONS}
        factors = cal.factors_from(by_horizon, method.min_errors)
        for loc, q in combined(method.raw(r), w, geometric).items():
            scaled = cal.scale(q, factors)
            for h in fs.HORIZONS:
                table[(ref, loc, h)] = scaled[h]
    s = season_bench.score_arrays(np.array([table[t] for t in tasks]), y)
    return (s["wis"] / base["wis"], s["wis_log"] / base["wis_log"], s["cov50"], s["cov95"],
            {n: float(np.mean(v)) for n, v in mean_w.items()})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dumps", nargs="+", help="FILE:SEASON pairs from bench/flusight.py --dump")
    p.add_argument("--geometric-only", action="store_true", help="only the fixed weights, counts' and log-scale average")
    args = p.parse_args()
    seasons = {}
    for path, name in (d.rsplit(":", 1) for d in args.dumps):
        method, tasks, y, _, base = calib_bench.season(Path(path), name, cal.PAST_WEEKS)
        seasons[name] = (method, tasks, y, base)
    rows = []
    variants = [(0, 0, False, False), (0, 0, False, True)] + [
        (*v, True) for v in itertools.product((0.5, 1, 2, 4, 8), (0.5, 1.0), (False, True))]
    if args.geometric_only:
        variants = variants[:2]
    for power, share, log_wis, geometric in variants:
        result = {name: score(*data, power, share, log_wis, geometric) for name, data in seasons.items()}
        rule, ok = calib_bench.judged(result)
        label = ("fixed weights (present)" if geometric else "fixed weights, counts' average") if power == 0 else \
            f"power {power}, share {share}, {'log' if log_wis else 'count'} WIS"
        rows.append((not ok, rule, label))
        figures = "; ".join(f"{n} {v[0]:.3f}/{v[1]:.3f} cov {v[2]:.3f}/{v[3]:.3f} w "
                            + "/".join(f"{x:.2f}" for x in v[4].values()) for n, v in result.items())
        print(f"{label:34s} rule {rule:.4f}{'' if ok else ' (coverage out)'}: {figures}", flush=True)
    best = min(rows)
    print(f"weights in the order {'/'.join(ensemble.WEIGHTS)}; chosen: {best[2]} (rule {best[1]:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
