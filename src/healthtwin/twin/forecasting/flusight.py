"""The FluSight hub's files: target data and its vintages in, quantile forecasts in the hub's CSV format out.

A forecast for a reference date (a Saturday) is made from the target data as the file stood on that date:
the vintage with the latest `as_of` on or before it. Later vintages revise earlier weeks (by up to 111% for
a location-week in 2023-24), so reading the final file would leak the future into the past. With only the
final file (no vintages), the rows of weeks before the reference date are used, which is honest about
dates but not about revisions; `known_on` says which it did."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .levels import QUANTILE_LEVELS

TARGET = "wk inc flu hosp"
TARGET_FILE = "target-hospital-admissions.csv"
VINTAGES_GLOB = "target-hospital-admissions_vintages_*.csv*"
FORECASTS_GLOB = "forecasts_*.csv*"
HORIZONS = (0, 1, 2, 3)
HUB_COLUMNS = ["reference_date", "target", "horizon", "target_end_date", "location", "output_type",
               "output_type_id", "value"]


@dataclass(frozen=True)
class Snapshot:
    """Weekly counts per location as known on one date; `as_of` is None when read from the final file."""
    counts: dict[str, pd.Series]  # location -> counts indexed by week-ending date (Saturday), ascending
    population: dict[str, float]  # location -> residents, from the file's weekly_rate per 100,000
    as_of: dt.date | None


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD): {text!r}") from None


def check_reference_date(reference_date: dt.date) -> None:
    if reference_date.weekday() != 5:
        raise ValueError(f"a FluSight reference date is a Saturday; {reference_date} is a {reference_date:%A}")


def read_target_data(folder: Path) -> pd.DataFrame:
    """The vintages file of the folder if there is one, else its final target file (columns: [as_of,] date,
    location, value, weekly_rate)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--data {folder}: not a folder")
    vintages = sorted(folder.glob(VINTAGES_GLOB))
    path = vintages[-1] if vintages else folder / TARGET_FILE
    if not path.exists():
        raise ValueError(f"{folder} holds neither {TARGET_FILE} nor a {VINTAGES_GLOB} file")
    frame = pd.read_csv(path, dtype={"location": str})
    needed = {"date", "location", "value"} | ({"as_of"} if vintages else set())
    missing = needed - set(frame.columns)
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
    return frame


def known_on(frame: pd.DataFrame, reference_date: dt.date) -> Snapshot:
    """The counts as the file stood on the reference date, for the weeks before it."""
    ref = reference_date.isoformat()
    as_of = None
    if "as_of" in frame.columns:
        dates = frame["as_of"][frame["as_of"] <= ref]
        if dates.empty:
            raise ValueError(f"no vintage of the target data is as old as {ref} (first: {frame['as_of'].min()})")
        as_of = dates.max()
        frame = frame[frame["as_of"] == as_of]
    frame = frame[frame["date"] < ref].drop_duplicates(["location", "date"], keep="last")
    counts: dict[str, pd.Series] = {}
    population: dict[str, float] = {}
    for location, rows in frame.groupby("location", sort=True):
        rows = rows.sort_values("date")
        series = pd.Series(rows["value"].to_numpy(dtype=float), index=pd.to_datetime(rows["date"]))
        series = series.asfreq("7D")  # a week missing from the file is a gap, not a skipped step
        if series.notna().sum() == 0:
            continue
        counts[str(location)] = series
        if "weekly_rate" in rows.columns:
            usable = rows[(rows["value"] > 0) & (rows["weekly_rate"] > 0)]
            if not usable.empty:
                last = usable.iloc[-1]
                population[str(location)] = float(last["value"] / last["weekly_rate"] * 100_000)
    return Snapshot(counts, population, None if as_of is None else dt.date.fromisoformat(as_of))


def observed(frame: pd.DataFrame, as_of: str | None = None) -> dict[tuple[str, str], float]:
    """Truth for scoring: (location, week-ending date) -> count, from one vintage or the final file."""
    if as_of is not None and "as_of" in frame.columns:
        frame = frame[frame["as_of"] == as_of]
    frame = frame.dropna(subset=["value"]).drop_duplicates(["location", "date"], keep="last")
    return {(loc, date): float(v) for loc, date, v in zip(frame["location"], frame["date"], frame["value"])}


def hub_rows(reference_date: dt.date, quantiles: dict[str, np.ndarray]) -> pd.DataFrame:
    """Hub CSV rows from per-location quantiles (4 horizons, 23 levels)."""
    rows = []
    for location in sorted(quantiles):
        q = quantiles[location]
        for h_index, horizon in enumerate(HORIZONS):
            end = (reference_date + dt.timedelta(weeks=horizon)).isoformat()
            for level, value in zip(QUANTILE_LEVELS, q[h_index]):
                rows.append((reference_date.isoformat(), TARGET, horizon, end, location, "quantile", level,
                             round(float(value), 3)))
    return pd.DataFrame(rows, columns=HUB_COLUMNS)


def write_hub_csv(frame: pd.DataFrame, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def read_hub_forecasts(path: Path, model: str | None = None) -> dict[tuple[str, str, int], np.ndarray]:
    """A hub forecast file (ours, or the corpus's with a model_id column) as
    (reference_date, location, horizon) -> the 23 quantiles in level order; incomplete sets are left out."""
    frame = pd.read_csv(path, dtype={"location": str, "output_type_id": str})
    frame = frame[(frame["output_type"] == "quantile") & (frame["target"] == TARGET)]
    if model is not None:
        frame = frame[frame["model_id"] == model]
    frame = frame.assign(level=frame["output_type_id"].astype(float))
    wide = frame.pivot_table(index=["reference_date", "location", "horizon"], columns="level", values="value")
    wide = wide.reindex(columns=list(QUANTILE_LEVELS)).dropna()
    return {(r, loc, int(h)): np.sort(row) for (r, loc, h), row in zip(wide.index, wide.to_numpy())}


def steps_to_horizons(snapshot: Snapshot, reference_date: dt.date) -> dict[str, list[int]]:
    """For each location, the forecast steps (weeks after its last observed week) of horizons 0..3."""
    out = {}
    for location, series in snapshot.counts.items():
        last = series.last_valid_index().date()
        out[location] = [((reference_date - last).days // 7) + h for h in HORIZONS]
    return out


def panel_of(snapshot: Snapshot) -> dict[str, np.ndarray]:
    return {loc: s.loc[: s.last_valid_index()].to_numpy(dtype=float) for loc, s in snapshot.counts.items()}


def at_horizons(quantiles: dict[str, np.ndarray], steps: dict[str, list[int]]) -> dict[str, np.ndarray]:
    return {loc: quantiles[loc][[s - 1 for s in steps[loc]]] for loc in quantiles if loc in steps}
