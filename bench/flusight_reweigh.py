"""Whether the ensemble's fixed weights and spread are still the development seasons' choice under the
log-scale average. They were chosen on 2026-12-03 with the components' quantiles averaged on the counts'
scale; the average moved to the log(1 + count) scale on 2026-12-06 with the weights kept. From the
unwidened forecasts each season run keeps (`bench/flusight.py --season S --every 2 --dump FILE`), this
scores every weighting of the four components in steps of 0.2 with theta at least 0.2 (35; `--names`
weighs other components kept in the dumps, such as candidates run at weight 0), at the fixed spreads
1.0-1.3, with the calibration exactly as calibration.py does it (factors from the past 6 reference
dates' forecasts under the same weights, half-way to the fixed spread), and also the same choice made for
each horizon on its own (the rule's sums split by horizon). The choice is the least mean of natural- and
log-scale relative WIS over 2022-23 and 2024-25 among the variants with 95% coverage in [0.90, 0.97] in
both. Only after it, and only for the chosen variants and the present ensemble, is the held-out season
scored, when its dump is given with --held-out.

    nice -n 5 python bench/flusight.py --season 2022-23 --every 2 --dump /tmp/2022-23.pkl
    nice -n 5 python bench/flusight.py --season 2024-25 --every 2 --dump /tmp/2024-25.pkl
    nice -n 5 python bench/flusight.py --season 2023-24 --dump /tmp/2023-24.pkl
    nice -n 5 python bench/flusight_reweigh.py /tmp/2022-23.pkl:2022-23 /tmp/2024-25.pkl:2024-25 \
        --held-out /tmp/2023-24.pkl:2023-24
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
from flusight_weights import combined, past_errors  # noqa: E402
from healthtwin.twin.forecasting import calibration as cal, ensemble, flusight as fs  # noqa: E402
from healthtwin.twin.forecasting.scoring import covered, wis  # noqa: E402

NAMES = list(ensemble.WEIGHTS)
SPREADS = (1.0, 1.1, 1.2, 1.3)


def weightings() -> list[tuple[float, ...]]:
    """Every weighting of the components in steps of 0.2 with theta (any of its forms) at least 0.2."""
    out = []
    theta = [i for i, n in enumerate(NAMES) if n.startswith("theta")]
    for units in itertools.product(range(6), repeat=len(NAMES)):
        if sum(units) == 5 and sum(units[i] for i in theta) >= 1:
            out.append(tuple(u / 5 for u in units))
    return out


class Season:
    """One season's tasks, truth, baseline and each date's past errors, with the ensembles combined once per
    weighting (the spread changes only the calibration)."""

    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self.method, self.tasks, self.y, _, self.base = calib_bench.season(path, name, cal.PAST_WEEKS)
        self.refs = sorted({t[0] for t in self.tasks})
        self.errors = {ref: past_errors(self.method, dt.date.fromisoformat(ref)) for ref in self.refs}
        self.horizon = np.array([t[2] for t in self.tasks])
        dates = set(self.refs) | {e.isoformat() for errs in self.errors.values() for e, *_ in errs}
        self.dates = sorted(dates)
        self._combined: dict[tuple, dict[str, dict]] = {}

    def combined(self, w: tuple[float, ...]) -> dict[str, dict]:
        if w not in self._combined:
            weights = dict(zip(NAMES, w))
            self._combined[w] = {d: combined(self.method.raw(dt.date.fromisoformat(d)), weights, True)
                                 for d in self.dates}
        return self._combined[w]

    def per_task(self, w: tuple[float, ...], spread: float) -> dict[str, np.ndarray]:
        """Per task: WIS on both scales and whether the 50% / 95% intervals cover, under weighting `w` and the
        fixed spread `spread` (ensemble.SPREAD, which the calibration shrinks towards)."""
        ensemble.SPREAD = spread
        by_date = self.combined(w)
        table = {}
        for ref in self.refs:
            errors = self.errors[ref]
            by_horizon = {h: ([by_date[e.isoformat()][loc][h] for e, hh, loc, _ in errors if hh == h],
                              [obs for _, hh, _, obs in errors if hh == h]) for h in fs.HORIZONS}
            factors = cal.factors_from(by_horizon, self.method.min_errors)
            for loc, q in by_date[ref].items():
                scaled = cal.scale(q, factors)
                for h in fs.HORIZONS:
                    table[(ref, loc, h)] = scaled[h]
        q = np.array([table[t] for t in self.tasks])
        return {"wis": wis(q, self.y) / self.base["wis"] / len(self.y),
                "log": wis(np.log1p(q), np.log1p(self.y)) / self.base["wis_log"] / len(self.y),
                "cov50": covered(q, self.y, 0.5) / len(self.y), "cov95": covered(q, self.y, 0.95) / len(self.y)}


def summed(parts: dict[int, dict[str, np.ndarray]], season: Season) -> tuple[float, float, float, float]:
    """(relative WIS, log relative WIS, cov50, cov95) of a season whose horizon h's tasks come from parts[h]."""
    tot = {k: 0.0 for k in ("wis", "log", "cov50", "cov95")}
    for h in fs.HORIZONS:
        mask = season.horizon == h
        for k in tot:
            tot[k] += float(parts[h][k][mask].sum())
    return tot["wis"], tot["log"], tot["cov50"], tot["cov95"]


def label(w: tuple[float, ...]) -> str:
    return "/".join(f"{x:.1f}" for x in w)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dumps", nargs="+", help="FILE:SEASON pairs of the development seasons")
    p.add_argument("--held-out", help="FILE:SEASON of the held-out season, scored after the choice")
    p.add_argument("--names", nargs="+", help="the components weighed (default: the ensemble's); a candidate"
                   " must be in the dumps, i.e. among ensemble.default_models() when they were made")
    args = p.parse_args()
    if args.names:
        global NAMES
        NAMES = list(args.names)
    seasons = [Season(Path(f), n) for f, n in (d.rsplit(":", 1) for d in args.dumps)]
    present = tuple(ensemble.WEIGHTS.get(n, 0.0) for n in NAMES)
    present_spread = ensemble.SPREAD
    grid = weightings()
    scores: dict[tuple, dict[str, dict[str, np.ndarray]]] = {}
    rows = []
    for spread in SPREADS:
        for w in grid:
            scores[(w, spread)] = {s.name: s.per_task(w, spread) for s in seasons}
            result = {s.name: summed({h: scores[(w, spread)][s.name] for h in fs.HORIZONS}, s) for s in seasons}
            rule, ok = calib_bench.judged(result)
            rows.append((not ok, rule, w, spread, result))
    rows.sort(key=lambda r: (r[0], r[1]))
    print(f"weights in the order {'/'.join(NAMES)}; {sum(not r[0] for r in rows)} of {len(rows)} admissible")
    for bad, rule, w, spread, result in rows[:12] + [r for r in rows if r[2] == present and r[3] == present_spread]:
        figures = "; ".join(f"{n} {v[0]:.3f}/{v[1]:.3f} cov {v[2]:.3f}/{v[3]:.3f}" for n, v in result.items())
        mark = " (present)" if (w, spread) == (present, present_spread) else ""
        print(f"{label(w)} spread {spread}{mark} rule {rule:.4f}{' (coverage out)' if bad else ''}: {figures}")
    chosen = [("one weighting for all horizons", {h: (rows[0][2], rows[0][3]) for h in fs.HORIZONS})]

    # Per horizon: at one spread, each horizon's own best weighting (the rule is a sum over horizons), then
    # the admissible combination of each horizon's five best with the least rule
    best_split = None
    for spread in SPREADS:
        per_h = {}
        for h in fs.HORIZONS:
            ranked = []
            for w in grid:
                part = 0.0
                for s in seasons:
                    sc = scores[(w, spread)][s.name]
                    mask = s.horizon == h
                    part += float(sc["wis"][mask].sum() + sc["log"][mask].sum())
                ranked.append((part, w))
            per_h[h] = [w for _, w in sorted(ranked)[:5]]
        for combo in itertools.product(*(per_h[h] for h in fs.HORIZONS)):
            result = {s.name: summed({h: scores[(combo[h], spread)][s.name] for h in fs.HORIZONS}, s)
                      for s in seasons}
            rule, ok = calib_bench.judged(result)
            if ok and (best_split is None or rule < best_split[0]):
                best_split = (rule, spread, combo, result)
    if best_split is not None:
        rule, spread, combo, result = best_split
        figures = "; ".join(f"{n} {v[0]:.3f}/{v[1]:.3f} cov {v[2]:.3f}/{v[3]:.3f}" for n, v in result.items())
        print(f"per horizon, spread {spread}: " + ", ".join(f"h{h} {label(w)}" for h, w in enumerate(combo))
              + f" rule {rule:.4f}: {figures}")
        chosen.append(("per horizon", {h: (combo[h], spread) for h in fs.HORIZONS}))
    chosen.append(("present", {h: (present, present_spread) for h in fs.HORIZONS}))

    if args.held_out:
        path, name = args.held_out.rsplit(":", 1)
        held = Season(Path(path), name)
        for what, per_h in chosen:
            parts = {h: held.per_task(*per_h[h]) for h in fs.HORIZONS}
            v = summed(parts, held)
            print(f"held out {name}, {what}: {v[0]:.3f} / {v[1]:.3f}, coverage {v[2]:.3f} / {v[3]:.3f}")
    ensemble.SPREAD = present_spread
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
