"""The FluSight method of one reference date: the nowcast-corrected vintage, the ensemble, and its spread
calibrated from the method's own errors of the past weeks.

The ensemble's components fit their intervals in sample, and how much wider (or narrower) they turn out
out of sample changes from season to season (the ensemble's earlier fixed widening of 1.1, chosen on 2022-23 and
2024-25, covered 98.8% with the 95% interval in 2023-24). So on each reference date R the method re-forecasts the
PAST_WEEKS reference dates before it, each from the vintage known on that date (the same nowcast and
ensemble, unwidened), scores those forecasts against the counts the vintage of R holds for their target
weeks (nowcast-corrected as well), and for each horizon and quantile level picks the factor from GRID that
scales the quantile's distance from the median on the log(1 + y) scale to the least quantile loss of those
errors, on the counts' scale as WIS weighs them (a quantile-scaled conformal calibration: the middle and
the tails can move apart). The fitted factor is taken half-way from the fixed ensemble.SPREAD (1.2;
SHRINK: six weeks' errors of 52 jurisdictions are few independent ones, since a week's errors move
together) and is never below 1.0 (GRID from 0.8, halved towards 1.2; from 0.9 towards 1.1 until
2026-12-07): a quiet run of weeks before a wave must not shrink the bands the wave will need. Until a horizon has MIN_ERRORS scored errors it keeps the fixed factor. Everything
used is known on R: earlier vintages, and the vintage of R itself.

Chosen on 2022-23 and 2024-25 (every second date) by the ensemble's rule (least mean of natural- and
log-scale relative WIS, 95% coverage in [0.90, 0.97] in both) among: one factor per horizon or one per
level, fitted on the log or the count scale, floors 0.5 or 0.9, shrunk by half or not, 6 or 10 past weeks
(docs/twin.md, Forecasting). Its gain there is small (0.661 against 0.665 for the fixed 1.1). The grid's
lower end was re-chosen with the ensemble's weights on 2026-12-07 (0.7, 0.8 or 0.9; docs/twin.md).

The re-forecasts are what the method would have said then, so a `Forecaster` keeps them in memory (a season
run forecasts each date once) and, given a `store` folder (`--cache`), on disk: the command line forecasts
PAST_WEEKS + 1 dates (about 7 times one ensemble fit) the first time, and one the next week."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import ensemble, flusight as fs, nowcast
from .levels import LEVELS, MEDIAN, tidy

CODE = ("calibration.py", "nowcast.py", "ensemble.py", "growth.py", "models.py", "quantreg.py", "baseline.py",
        "levels.py", "flusight.py", "gbqr.py")  # what shapes an unwidened forecast: the store's files are keyed by it
PAST_WEEKS = 6  # reference dates re-forecast for the calibration
MIN_ERRORS = 150  # scored location-weeks a horizon needs before its own factors replace the fixed one
STALE_WEEKS = 2  # a past date whose data end earlier than this is not re-forecast
GRID = np.round(np.arange(0.8, 2.001, 0.05), 2)  # candidate factors on the log scale
SHRINK = 0.5  # the fitted factors are taken half-way from the fixed one: six weeks' errors are few


@dataclass(frozen=True)
class Raw:
    """One reference date's unwidened ensemble at horizons 0..3 (location -> (4, 23)) and its inputs."""
    quantiles: dict[str, np.ndarray]
    components: dict[str, dict[str, np.ndarray]]
    snapshot: fs.Snapshot  # the nowcast-corrected vintage
    revision: nowcast.Revision


def scale(quantiles: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Quantiles (…, 23) with each level's distance from the median times its factor (…, 23), log scale."""
    z = np.log1p(np.maximum(quantiles, 0.0))
    median = z[..., MEDIAN:MEDIAN + 1]
    return tidy(np.expm1(median + factors * (z - median)))


def fit_factors(quantiles: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per level, the factor of GRID whose scaled quantiles (distance from the median on the log scale)
    have the least quantile loss against the observed counts (N,), on the counts' own scale as WIS scores
    them; 1 at the median. `quantiles` (N, 23)."""
    z = np.log1p(np.maximum(quantiles, 0.0))
    y = np.asarray(observed, dtype=float)
    median = z[:, MEDIAN]
    out = np.ones(len(LEVELS))
    for j, tau in enumerate(LEVELS):
        if j == MEDIAN:
            continue
        pred = np.expm1(median[:, None] + GRID[None, :] * (z[:, j] - median)[:, None])  # (N, grid)
        diff = y[:, None] - pred
        loss = np.maximum(tau * diff, (tau - 1) * diff).sum(axis=0)
        out[j] = GRID[int(np.argmin(loss))]
    return out


def factors_from(errors: dict[int, tuple[list, list]], min_errors: int = MIN_ERRORS) -> np.ndarray:
    """(4 horizons, 23) factors from each horizon's past (quantiles, observed): fitted (fit_factors) and taken
    SHRINK of the way from the fixed ensemble.SPREAD where a horizon has min_errors of them, else the fixed one."""
    out = np.full((len(fs.HORIZONS), len(LEVELS)), ensemble.SPREAD)
    out[:, MEDIAN] = 1.0
    for h, (q, y) in errors.items():
        if len(y) >= min_errors:
            out[h] = SHRINK * fit_factors(np.array(q), np.array(y)) + (1 - SHRINK) * ensemble.SPREAD
            out[h, MEDIAN] = 1.0
    return out


_SEP = "\x1f"  # between a component's name and a location in the stored arrays' names


def _write_arrays(path: Path, raw: Raw) -> None:
    """The forecasts of a date as plain arrays (numpy's npz, no pickled objects: the folder is a cache a
    loaded file must not be able to run code from); the snapshot and revision are recomputed on reading."""
    arrays = {f"q{_SEP}{loc}": q for loc, q in raw.quantiles.items()}
    for name, by_loc in raw.components.items():
        arrays.update({f"c{_SEP}{name}{_SEP}{loc}": q for loc, q in by_loc.items()})
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _read_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    quantiles: dict[str, np.ndarray] = {}
    components: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as stored:
        for name in stored.files:
            parts = name.split(_SEP)
            if parts[0] == "q":
                quantiles[parts[1]] = stored[name]
            else:
                components.setdefault(parts[1], {})[parts[2]] = stored[name]
    return quantiles, components


@dataclass
class Forecaster:
    """The method on one data folder's target frame; keeps the unwidened forecast of every date it made."""
    frame: pd.DataFrame
    past_weeks: int = PAST_WEEKS
    min_errors: int = MIN_ERRORS
    cache: dict[str, Raw] = field(default_factory=dict)
    store: Path | None = None  # a folder keeping the unwidened forecasts between runs (--cache)

    def raw(self, reference_date: dt.date) -> Raw:
        key = reference_date.isoformat()
        if key not in self.cache:
            snapshot, revision = nowcast.known_and_corrected(self.frame, reference_date)
            path = self._stored(key, snapshot)
            if path is not None and path.exists():
                quantiles, components = _read_arrays(path)
                self.cache[key] = Raw(quantiles, components, snapshot, revision)
                return self.cache[key]
            steps = fs.steps_to_horizons(snapshot, reference_date)
            n = max(max(s) for s in steps.values())
            combined, components = ensemble.forecast(fs.panel_of(snapshot), n, spread=1.0,
                                                   population=snapshot.population)
            self.cache[key] = Raw(fs.at_horizons(combined, steps),
                                  {name: fs.at_horizons(c, steps) for name, c in components.items()},
                                  snapshot, revision)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_arrays(path, self.cache[key])
        return self.cache[key]

    def _stored(self, key: str, snapshot: fs.Snapshot) -> Path | None:
        """The store's file for a date: named by the date and a digest of the exact (corrected) counts the
        models read and of the forecasting code, so other data or other code never reuse it."""
        if self.store is None:
            return None
        digest = hashlib.sha256()
        for name in sorted(CODE):
            digest.update((Path(__file__).parent / name).read_bytes())
        for loc in sorted(snapshot.counts):
            series = snapshot.counts[loc]
            digest.update(loc.encode() + series.index.asi8.tobytes() + series.to_numpy(dtype=float).tobytes())
            digest.update(repr(snapshot.population.get(loc)).encode())
        return Path(self.store) / f"{key}-{digest.hexdigest()[:16]}.npz"

    def current(self, reference_date: dt.date) -> bool:
        """Whether the data known on the date reach to within STALE_WEEKS of it (vintages froze from
        May to November 2024, when reporting was not mandatory: a forecast 30 weeks past the data says
        nothing about this week's errors, and costs 30 horizons' fits)."""
        try:
            snapshot = fs.known_on(self.frame, reference_date)
        except ValueError:
            return False
        last = max(s.last_valid_index() for s in snapshot.counts.values()).date()
        return (reference_date - last).days <= 7 * STALE_WEEKS

    def factors(self, reference_date: dt.date, now: Raw) -> np.ndarray:
        """(4 horizons, 23) factors from the past dates' errors against what the vintage of the date holds."""
        truth = {(loc, d.date().isoformat()): v for loc, s in now.snapshot.counts.items()
                 for d, v in s.dropna().items()}
        errors: dict[int, tuple[list, list]] = {h: ([], []) for h in fs.HORIZONS}
        for weeks in range(1, self.past_weeks + 1):
            earlier = reference_date - dt.timedelta(weeks=weeks)
            if not self.current(earlier):
                continue  # no vintage that old, or one whose data had stopped: nothing like a forecast now
            past = self.raw(earlier)
            for h in fs.HORIZONS:
                target = (earlier + dt.timedelta(weeks=h)).isoformat()
                for loc, q in past.quantiles.items():
                    if loc != "US" and (loc, target) in truth:
                        errors[h][0].append(q[h])
                        errors[h][1].append(truth[(loc, target)])
        return factors_from(errors, self.min_errors)

    def forecast(self, reference_date: dt.date) -> tuple[dict[str, np.ndarray], Raw, np.ndarray]:
        """The calibrated quantiles (location -> (4, 23)), the unwidened forecast and the factors used."""
        now = self.raw(reference_date)
        factors = self.factors(reference_date, now)
        return {loc: scale(q, factors) for loc, q in now.quantiles.items()}, now, factors
