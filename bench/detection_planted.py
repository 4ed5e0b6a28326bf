"""Detection on the synthetic population's planted events (population/events.py): the measles cluster
in one district and the strong influenza season.

    PYTHONPATH=src python bench/detection_planted.py [--patients 30000] [--seed 7] [--end 2026-11-30]

Generates the population in memory (population/generator.generate_stream), counts diagnoses per ISO week
by onset date and the patient's home district (measles B05; influenza-like illness J09-J11, per region
and nationally), runs every detector on the last 49 weeks and scores them against the ground truth:

* measles: detected when the cluster district alarms within the planted period; delay from the week of
  the first planted case; false alarms are alarms in every other district's measles series and in the
  cluster district outside the period, per series-week;
* influenza: detected (per region and nationally) when an alarm falls in the planted season; delay from
  the first week whose planted cases reach a quarter of their peak week; false alarms are alarms in ILI
  series outside December-March.

Each event's size is printed in the unit of bench/detection.py's injector, k = planted cases / the baseline's
sd (sqrt(phi mu) of the twin detector's baseline at the event's first week), in total and over its first two
weeks (what a detector with a delay of at most 7 days can use): "the planted size" of the detection goal.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import time

import numpy as np

from healthtwin.population import generator
from healthtwin.twin.surveillance import twin_detector

WINDOW = 49


def _monday(d: dt.date) -> dt.date:
    return d - dt.timedelta(days=d.weekday())


def build(patients: int, seed: int, end: dt.date):
    truth: dict = {}
    home: dict[str, tuple[str, str]] = {}
    cases: list[tuple[str, str, dt.date, str]] = []  # (group, patient, onset, encounter)
    for rtype, res in generator.generate_stream(patients, seed, end_date=end, ground_truth=truth):
        if rtype == "Patient":
            a = (res.get("address") or [{}])[0]
            home[res["id"]] = (a.get("state", "?"), a.get("district", "?"))
        elif rtype == "Condition":
            icd = next((c["code"] for c in res["code"]["coding"] if c["system"].endswith("icd-10")), "")
            group = "measles" if icd.startswith("B05") else "ili" if icd[:3] in ("J09", "J10", "J11") else None
            onset = res.get("onsetDateTime") or res.get("recordedDate")
            if group and onset:
                enc = ((res.get("encounter") or {}).get("reference") or "").split("/")[-1]
                cases.append((group, res["subject"]["reference"].split("/")[1], dt.date.fromisoformat(onset[:10]), enc))
    return truth, home, cases


def weekly(cases, home, group, level, first: dt.date, last: dt.date, only: set | None = None):
    """Counts per ISO week and place; `only`: count just the cases of these encounters (the planted ones)."""
    weeks = []
    d = _monday(first) + dt.timedelta(weeks=1)
    while d + dt.timedelta(days=6) <= last:
        weeks.append(d)
        d += dt.timedelta(weeks=1)
    pos = {w: i for i, w in enumerate(weeks)}
    out: dict[tuple, np.ndarray] = collections.defaultdict(lambda: np.zeros(len(weeks)))
    for g, pat, onset, enc in cases:
        if g != group or pat not in home or (only is not None and enc not in only):
            continue
        i = pos.get(_monday(onset))
        if i is None:
            continue
        region, district = home[pat]
        key = () if level == "national" else (region,) if level == "region" else (region, district)
        out[key][i] += 1
    return weeks, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=30_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2026, 11, 30))
    ap.add_argument("--alpha", type=float, default=twin_detector.DEFAULT_ALPHA)
    args = ap.parse_args()
    t0 = time.time()
    truth, home, cases = build(args.patients, args.seed, args.end)
    first = dt.date(args.end.year - generator.WINDOW_YEARS + 1, 1, 1)
    print(f"generated {args.patients:,} citizens (seed {args.seed}, to {args.end}) in {time.time() - t0:.0f} s; "
          f"{sum(1 for c in cases if c[0] == 'ili'):,} ILI and {sum(1 for c in cases if c[0] == 'measles')} measles diagnoses")
    districts = sorted(set(home.values()))

    def signals(series: np.ndarray):
        n = len(series)
        return twin_detector.detect(series, np.arange(n - WINDOW + 1, n + 1), alpha=args.alpha)

    def run(series: np.ndarray) -> np.ndarray:
        r = signals(series)
        full = np.zeros(WINDOW)
        full[WINDOW - len(r.alarm):] = r.alarm
        return full

    def size(series: np.ndarray, planted: np.ndarray, first: int) -> tuple[float, float]:
        """(k over the whole event, k over its first two weeks): planted cases / sqrt(phi mu) at week `first`
        (0-based in the series)."""
        r = signals(series)
        at = np.nonzero(r.range == first + 1)[0]
        if not len(at) or not np.isfinite(r.expected[at[0]]):
            return float("nan"), float("nan")
        sd = float(np.sqrt(r.phi[at[0]] * r.expected[at[0]]))
        return float(planted.sum() / sd), float(planted[first:first + 2].sum() / sd)

    # measles
    m = truth.get("measles", {})
    weeks, ms = weekly(cases, home, "measles", "district", first, args.end)
    scored = weeks[-WINDOW:]
    p0, p1 = dt.date.fromisoformat(m["period_start"]), dt.date.fromisoformat(m["period_end"])
    planted = sorted(dt.date.fromisoformat(c["onset"]) for c in m.get("cases", []))
    cluster = next((k for k in districts if k[1] == m.get("district_name")), None)
    fa = fa_weeks = 0
    delay = None
    for key in districts:
        alarm = run(ms[key]) if key in ms else np.zeros(WINDOW)
        for i, w in enumerate(scored):
            inside = key == cluster and _monday(p0) <= w <= p1
            if inside and alarm[i] and delay is None and planted:
                delay = (w - _monday(planted[0])).days
            elif not inside:
                fa += int(alarm[i])
                fa_weeks += 1
    if cluster in ms and planted:
        mweeks = np.zeros(len(weeks))
        for c in planted:
            i = weeks.index(_monday(c)) if _monday(c) in weeks else None
            if i is not None:
                mweeks[i] += 1
        k_all, k_two = size(ms[cluster], mweeks, int(np.nonzero(mweeks)[0][0]))
        if k_all > 1000:  # no measles in the district's past: its baseline sd is ~0
            print(f"measles cluster's size: unbounded (k = {k_all:.3g} baseline sds: no case in the district's past)")
        else:
            print(f"measles cluster's size: k = {k_all:.0f} baseline sds in total, {k_two:.0f} in its first two weeks")
    print(f"measles cluster in {m.get('district_name')} ({len(planted)} planted cases, first {planted[0] if planted else '-'}, "
          f"period {p0}..{p1}): detected={delay is not None}, delay={delay} days; "
          f"false alarms {fa}/{fa_weeks} series-weeks = {100 * fa / max(fa_weeks, 1):.2f}% over {len(districts)} districts")

    # influenza
    f = truth.get("influenza", {})
    by_week = collections.Counter()
    for iso, c in f.get("planted_by_iso_week", {}).items():
        y, w = iso.split("-W")
        by_week[dt.date.fromisocalendar(int(y), int(w), 1)] += c
    peak = max(by_week.values()) if by_week else 0
    onset_week = min((w for w, c in by_week.items() if c >= peak / 4), default=None)
    s0, s1 = dt.date.fromisoformat(f["season_start"]), dt.date.fromisoformat(f["season_end"])
    for level in ("national", "region"):
        weeks, ili = weekly(cases, home, "ili", level, first, args.end)
        _, extra = weekly(cases, home, "ili", level, first, args.end, only=set(f.get("planted_encounters", [])))
        scored = weeks[-WINDOW:]
        sizes = []
        for key, series in sorted(ili.items()):
            pl = extra.get(key)
            if pl is None or not pl.any():
                continue
            onset = int(np.nonzero(pl >= pl.max() / 4)[0][0])  # this series' week at a quarter of its peak
            sizes.append(size(series, pl, onset))
        if sizes:
            ks = np.array(sizes)
            print(f"influenza season's size at {level} level: k = {np.nanmin(ks[:, 0]):.0f}-{np.nanmax(ks[:, 0]):.0f} "
                  f"(median {np.nanmedian(ks[:, 0]):.0f}) baseline sds in total, {np.nanmin(ks[:, 1]):.1f}-"
                  f"{np.nanmax(ks[:, 1]):.1f} (median {np.nanmedian(ks[:, 1]):.1f}) in the two weeks from the week its "
                  f"planted cases reach a quarter of their peak")
        det = delays = 0
        dl = []
        fa = fa_weeks = 0
        for key, series in sorted(ili.items()):
            alarm = run(series)
            hit = [w for i, w in enumerate(scored) if alarm[i] and _monday(s0) <= w <= s1]
            det += bool(hit)
            if hit and onset_week:
                dl.append((hit[0] - onset_week).days)
            for i, w in enumerate(scored):
                if w.month not in (12, 1, 2, 3):
                    fa += int(alarm[i])
                    fa_weeks += 1
        print(f"influenza season ({s0}..{s1}, peak {f.get('peak_date')}, {f.get('planted_cases')} planted) at {level} "
              f"level: detected in {det}/{len(ili)} series, median delay {np.median(dl) if dl else float('nan'):.0f} days "
              f"from the week planted cases reach a quarter of their peak ({onset_week}); false alarms "
              f"{100 * fa / max(fa_weeks, 1):.2f}% of series-weeks outside Dec-Mar")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
