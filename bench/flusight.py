"""FluSight season benchmark: our method (calibration.Forecaster: the vintage known on the date with its last
weeks nowcast for their revision, the ensemble, its spread from its own re-forecast past weeks; beside it
the same with the fixed spread 1.1, each component unwidened, and our flat baseline) forecast every
reference date of a season from the data vintage known on that date, scored by WIS (Bracher et al. 2021),
relative WIS against the corpus's FluSight-baseline on the same tasks, and 50%/95% coverage, beside the
reference scores of the FluSight ensemble (reference-scores-2023-24.json).

    nice -n 10 python bench/flusight.py --season 2023-24            # the scored season
    nice -n 10 python bench/flusight.py --season 2024-25            # unchanged method, the next season
    nice -n 10 python bench/flusight.py --season 2022-23            # development season (final data only)

Filters (2023-24, as the reference JSON states): horizons 0-3, reference dates 2023-10-14..2024-04-27,
target_end_date <= 2024-05-01, location 78 and the US total out of the primary summary, Massachusetts
2023-12-09 out, tasks without an observation out; truth = the vintage of 2024-05-06 (the hub's
2024-04-27 archive; the JSON's figures are reproduced exactly from it). 2024-25: reference dates of the
corpus's FluSight-baseline from 2024-11-23 to 2025-05-31, truth = the final target file. 2022-23 has no
vintages and no corpus baseline: it is forecast from the final file cut at each date and compared with our
own implementation of the flat baseline. The method was chosen on 2022-23 and 2024-25 with 2023-24 held out
(bench/flusight_select.py)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from healthtwin.twin.forecasting import calibration, ensemble, flusight as fs  # noqa: E402
from healthtwin.twin.forecasting.baseline import flat_baseline  # noqa: E402
from healthtwin.twin.forecasting.scoring import covered, wis  # noqa: E402

CORPUS = Path(os.environ.get("HEALTHTWIN_CORPORA", "/work/shared/corpora")) / "flusight"
BASELINE = "FluSight-baseline"


def saturdays(first: str, last: str) -> list[dt.date]:
    d, end, out = dt.date.fromisoformat(first), dt.date.fromisoformat(last), []
    while d <= end:
        out.append(d)
        d += dt.timedelta(weeks=1)
    return out


def season_setup(season: str, frame: pd.DataFrame, corpus_forecasts: dict) -> dict:
    target_file = pd.read_csv(CORPUS / fs.TARGET_FILE, dtype={"location": str})
    corpus_refs = sorted({k[0] for k in corpus_forecasts[BASELINE]})
    if season == "2023-24":
        return dict(refs=saturdays("2023-10-14", "2024-04-27"), data=frame, last_end="2024-05-01",
                    truth=fs.observed(frame, "2024-05-06"), drop={("25", "2023-12-09")})
    if season == "2024-25":
        refs = [dt.date.fromisoformat(r) for r in corpus_refs if "2024-11-23" <= r <= "2025-05-31"]
        return dict(refs=refs, data=frame, last_end="2025-05-31", truth=fs.observed(target_file), drop=set())
    if season == "2022-23":
        return dict(refs=saturdays("2022-10-15", "2023-04-29"), data=target_file, last_end="2023-05-06",
                    truth=fs.observed(target_file), drop=set())
    raise SystemExit(f"unknown season {season}")


def score(forecasts: dict, truth: dict, tasks: list) -> dict:
    q = np.array([forecasts[t] for t in tasks])
    y = np.array([truth[(t[1], (dt.date.fromisoformat(t[0]) + dt.timedelta(weeks=t[2])).isoformat())] for t in tasks])
    return score_arrays(q, y)


def score_arrays(q: np.ndarray, y: np.ndarray) -> dict:
    """Mean WIS (natural and log1p scale) and 50%/95% coverage of quantiles (tasks, 23) against truth (tasks)."""
    return dict(n=len(y), wis=float(wis(q, y).mean()), wis_log=float(wis(np.log1p(q), np.log1p(y)).mean()),
                cov50=float(covered(q, y, 0.5).mean()), cov95=float(covered(q, y, 0.95).mean()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--season", default="2023-24", choices=["2022-23", "2023-24", "2024-25"])
    p.add_argument("--every", type=int, default=1, help="use every n-th reference date (development)")
    p.add_argument("--save", type=Path, help="folder for the hub CSV of each reference date")
    p.add_argument("--dump", type=Path, help="pickle of every model's forecasts and the tasks (analysis)")
    args = p.parse_args()

    t0 = time.time()
    frame = fs.read_target_data(CORPUS)
    corpus = {m: fs.read_hub_forecasts(next(CORPUS.glob(fs.FORECASTS_GLOB)), m) for m in (BASELINE, "FluSight-ensemble")}
    setup = season_setup(args.season, frame, corpus)
    refs = setup["refs"][:: args.every]
    ours: dict[str, dict] = {"ensemble": {}, "ensemble-fixed-spread": {}, "our-baseline": {}}
    method = calibration.Forecaster(setup["data"])
    seconds = []
    for ref in refs:
        snapshot = fs.known_on(setup["data"], ref)  # as published: what the flat baseline reads
        steps = fs.steps_to_horizons(snapshot, ref)
        panel = fs.panel_of(snapshot)
        n = max(max(s) for s in steps.values())
        started = time.perf_counter()
        calibrated, raw, factors = method.forecast(ref)
        seconds.append(time.perf_counter() - started)
        named = {"ensemble": calibrated,
                 "ensemble-fixed-spread": {k: ensemble.widen(q, ensemble.SPREAD) for k, q in raw.quantiles.items()},
                 **raw.components,
                 "our-baseline": fs.at_horizons({k: flat_baseline(v, n, seed=ref.toordinal()) for k, v in panel.items()}, steps)}
        for name, quantiles in named.items():
            table = ours.setdefault(name, {})
            for loc, q in quantiles.items():
                for h in fs.HORIZONS:
                    table[(ref.isoformat(), loc, h)] = q[h]
        if args.save:
            fs.write_hub_csv(fs.hub_rows(ref, calibrated), args.save / f"{ref}-healthtwin.csv")
        print(f"{ref} vintage {snapshot.as_of} {len(panel)} locations {seconds[-1]:.1f} s; nowcast last week"
              f" x{raw.revision.cumulative[0]:.3f} ({raw.revision.pairs} vintage pairs); spread factors h0"
              f" {factors[0, 1]:.2f}/{factors[0, 6]:.2f} h3 {factors[3, 1]:.2f}/{factors[3, 6]:.2f} (2.5%/25%)",
              file=sys.stderr, flush=True)

    def eligible(k: tuple) -> bool:
        end = (dt.date.fromisoformat(k[0]) + dt.timedelta(weeks=k[2])).isoformat()
        return (k[1] not in ("US", "78") and (k[1], k[0]) not in setup["drop"] and end <= setup["last_end"]
                and (k[1], end) in setup["truth"])

    reference = corpus[BASELINE] if args.season != "2022-23" else ours["our-baseline"]
    tasks = sorted(k for k in ours["ensemble"] if eligible(k) and k in reference)
    base = score(reference, setup["truth"], tasks)
    if args.dump:
        import pickle
        args.dump.write_bytes(pickle.dumps(dict(ours=ours, reference=reference, truth=setup["truth"], tasks=tasks,
                                                raw=method.cache)))
    print(f"\nFluSight {args.season}: {len(refs)} reference dates, {base['n']} tasks (52 jurisdictions, horizons 0-3)")
    print(f"forecast time per reference date (all locations): median {np.median(seconds):.1f} s, max {max(seconds):.1f} s;"
          f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; total {time.time() - t0:.0f} s")
    label = BASELINE + (" (corpus)" if args.season != "2022-23" else " (ours)")
    print(f"{'model':28s} {'WIS':>8s} {'rel WIS':>8s} {'log WIS':>8s} {'rel log':>8s} {'cov50':>6s} {'cov95':>6s}")
    rows = [(label, reference)] + [(k, v) for k, v in ours.items()]
    if args.season == "2023-24":
        rows.insert(1, ("FluSight-ensemble (corpus)", corpus["FluSight-ensemble"]))
    results = {}
    for name, table in rows:
        s = score(table, setup["truth"], tasks)
        results[name] = s
        print(f"{name:28s} {s['wis']:8.2f} {s['wis'] / base['wis']:8.3f} {s['wis_log']:8.3f}"
              f" {s['wis_log'] / base['wis_log']:8.3f} {s['cov50']:6.3f} {s['cov95']:6.3f}")
    if args.season == "2023-24":
        ref_json = json.loads((CORPUS / "reference-scores-2023-24.json").read_text())
        head = next(iter(ref_json["results"].values()))["jurisdictions_excl_US__all_horizons"]
        print(f"anchor (reference JSON): FluSight-ensemble relative WIS {head['relative_wis_ens_over_base']:.3f}"
              f" (log {head['relative_wis_log1p_ens_over_base']:.3f}), coverage"
              f" {head['FluSight-ensemble']['coverage_50']:.3f}/{head['FluSight-ensemble']['coverage_95']:.3f};"
              f" goal: relative WIS <= 0.71 with 95% coverage in [0.90, 0.97]")
        mine, theirs = ours["our-baseline"], corpus[BASELINE]
        common = [k for k in tasks if k in mine]
        med = np.mean([mine[k][11] == theirs[k][11] for k in common])
        rel = np.median([np.abs(mine[k] - theirs[k]).max() / max(1.0, theirs[k][11]) for k in common])
        print(f"our flat baseline against the corpus's: median equal on {med:.1%} of tasks;"
              f" median of max |quantile difference| / median {rel:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
