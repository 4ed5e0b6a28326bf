"""Influenza-season detection on several generated populations, the detector before and after a change
side by side in the same run: a population's 49 scored weeks hold ~480 regional series-weeks outside the
season, so one population's false-alarm rate is a handful of alarms; several seeds give a rate worth
comparing with alpha.

    PYTHONPATH=src python bench/detection_planted_seeds.py [--patients 20000] [--seeds 2,3,4,5,6,7]

For each seed (bench/detection_planted.py's generation and counting) and each level (national, region,
district): series where the planted season (December-March) was detected, the median delay from the week
its planted cases reach a quarter of their peak, and alarms per series-week outside December-March, with a
95% Wilson interval over all seeds. "before": the pooled two- and four-week tests in any week, alpha
0.00316 (the detector until 2026-12-03); "after": the detector as it is."""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import time

import numpy as np

import detection_planted as dp
from detection import wilson
from healthtwin.population import generator
from healthtwin.twin.surveillance import twin_detector

VARIANTS = {"before": dict(current=False, alpha=0.00316), "after": {}}


def season_scores(truth, home, cases, first: dt.date, end: dt.date, settings: dict) -> dict[str, dict]:
    f = truth["influenza"]
    s0, s1 = dt.date.fromisoformat(f["season_start"]), dt.date.fromisoformat(f["season_end"])
    by_week = collections.Counter()
    for iso, c in f.get("planted_by_iso_week", {}).items():
        y, w = iso.split("-W")
        by_week[dt.date.fromisocalendar(int(y), int(w), 1)] += c
    peak = max(by_week.values())
    onset_week = min(w for w, c in by_week.items() if c >= peak / 4)
    out = {}
    for level in ("national", "region", "district"):
        weeks, ili = dp.weekly(cases, home, "ili", level, first, end)
        scored = weeks[-dp.WINDOW:]
        det, delays, fa, fa_weeks = 0, [], 0, 0
        for series in ili.values():
            n = len(series)
            r = twin_detector.detect(series, np.arange(n - dp.WINDOW + 1, n + 1), **settings)
            alarm = np.zeros(dp.WINDOW)
            alarm[dp.WINDOW - len(r.alarm):] = r.alarm
            hit = [w for i, w in enumerate(scored) if alarm[i] and dp._monday(s0) <= w <= s1]
            det += bool(hit)
            if hit:
                delays.append((hit[0] - onset_week).days)
            outside = np.array([w.month not in (12, 1, 2, 3) for w in scored])
            fa += int(alarm[outside].sum())
            fa_weeks += int(outside.sum())
        out[level] = dict(detected=det, series=len(ili), delays=delays, fa=fa, fa_weeks=fa_weeks)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20_000)
    ap.add_argument("--seeds", default="2,3,4,5,6,7")
    ap.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2026, 11, 30))
    args = ap.parse_args()
    t0 = time.time()
    first = dt.date(args.end.year - generator.WINDOW_YEARS + 1, 1, 1)
    total = {v: collections.defaultdict(lambda: dict(detected=0, series=0, delays=[], fa=0, fa_weeks=0))
             for v in VARIANTS}
    for seed in (int(s) for s in args.seeds.split(",")):
        truth, home, cases = dp.build(args.patients, seed, args.end)
        for name, settings in VARIANTS.items():
            for level, r in season_scores(truth, home, cases, first, args.end, settings).items():
                t = total[name][level]
                for k in ("detected", "series", "fa", "fa_weeks"):
                    t[k] += r[k]
                t["delays"] += r["delays"]
                print(f"seed {seed} {name:6s} {level:8s}: detected {r['detected']}/{r['series']}, false alarms "
                      f"{r['fa']}/{r['fa_weeks']} = {100 * r['fa'] / max(r['fa_weeks'], 1):.2f}%", flush=True)
    print(f"{args.patients:,} citizens, seeds {args.seeds}, to {args.end}; {time.time() - t0:.0f} s")
    for name in VARIANTS:
        for level, t in total[name].items():
            lo, hi = wilson(t["fa"], t["fa_weeks"])
            print(f"{name:6s} {level:8s}: detected {t['detected']}/{t['series']}, median delay "
                  f"{np.median(t['delays']) if t['delays'] else float('nan'):.0f} days; false alarms outside "
                  f"Dec-Mar {t['fa']}/{t['fa_weeks']} = {100 * t['fa'] / t['fa_weeks']:.2f}% "
                  f"({100 * lo:.2f}-{100 * hi:.2f}%)")


if __name__ == "__main__":
    main()
