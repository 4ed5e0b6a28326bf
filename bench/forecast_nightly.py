"""The nightly forecast run over every syndrome series of the twin: a generated population, materialised,
then `twin/forecasting/stored.warm` over every group x level (district, region, national), timed, beside
two floors measured in the same run: reading every series alone, and the FluSight flat baseline on them.

    nice -n 10 python bench/forecast_nightly.py --patients 3000 --seed 2 [--levels district,region,national]

Then a second warm with nothing changed (every stored fit current: what a night without new data costs),
and one route answer from the stored fit. Budget: the whole run within 10 minutes."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from healthtwin.analytics.indicators import indicator_views  # noqa: E402
from healthtwin.analytics.materialize import Materializer, NdjsonSource  # noqa: E402
from healthtwin.analytics.refresh import refresh_all  # noqa: E402
from healthtwin.population.generator import generate  # noqa: E402
from healthtwin.twin.forecasting import stored  # noqa: E402
from healthtwin.twin.forecasting.baseline import flat_baseline  # noqa: E402
from healthtwin.twin.series import residents, syndromes, weekly_counts  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=3000)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2024, 12, 31))
    p.add_argument("--levels", default="district,region,national")
    args = p.parse_args()
    levels = args.levels.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        generate(root / "pop", args.patients, args.seed, end_date=args.end)
        mat = Materializer(NdjsonSource(root / "pop"), root / "out", indicator_views(), parquet=False)
        refresh_all(mat)
        print(f"generated and materialised {args.patients:,} citizens (seed {args.seed}) in "
              f"{time.perf_counter() - t0:.0f} s")
        groups = [s["syndrome"] for s in syndromes(mat.con)]

        started, cpu = time.perf_counter(), time.process_time()
        found = {(g, lv): weekly_counts(mat.con, g, level=lv) for g in groups for lv in levels}
        read = time.perf_counter() - started
        for series in found.values():
            for s in series:
                flat_baseline(np.asarray(s.counts, dtype=float), 4)
        floor, floor_cpu = time.perf_counter() - started, time.process_time() - cpu
        per_level = {lv: sum(len(v) for (g, lv2), v in found.items() if lv2 == lv) for lv in levels}
        total = sum(per_level.values())
        weeks = max((len(s.counts) for v in found.values() for s in v), default=0)
        print(f"{len(groups)} groups; series with a case: " + ", ".join(f"{n} {lv}" for lv, n in per_level.items())
              + f" = {total}, {weeks} weeks each")

        started, cpu = time.perf_counter(), time.process_time()
        report = stored.warm(mat.data_dir, groups, levels, con=mat.con)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert report.series == total and not report.failed, report
        started = time.perf_counter()
        again = stored.warm(mat.data_dir, groups, levels, con=mat.con)
        unchanged = time.perf_counter() - started
        assert again.fitted == 0
        started = time.perf_counter()
        code = stored.code_digest()
        s = weekly_counts(mat.con, "ili", level="district")
        digest = stored.series_digest(s, code, residents(mat.con, "district"))
        assert stored.load(mat.data_dir, "ili", "district", digest) is not None
        answer = time.perf_counter() - started
        mat.close()
    print(f"nightly warm: {report.fitted} panels, {report.series} series in {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({1000 * wall / max(total, 1):.0f} ms per series); budget 600 s")
    print(f"floors: reading every series {read:.2f} s; reading + flat baseline on each {floor:.2f} s "
          f"({floor_cpu:.2f} s CPU); ratio warm / floor {wall / max(floor, 1e-9):.0f}")
    print(f"a night with nothing changed: {unchanged:.2f} s; a stored answer (ILI per district): {answer:.3f} s")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
