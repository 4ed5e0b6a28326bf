"""A target dose of the supporting data, read once: its rows' effective and cessation dates parsed, its
intervals' reference kind and durations picked, its vaccines indexed by CVX.

The evaluator and forecaster ask the same questions of every target dose for every dose and child (which
age row is in force on this date, which intervals, does this CVX count); answering them from the rule
dictionaries meant parsing the same date strings and walking the same lists each time. A Target is built
the first time its dose dictionary is met and kept for the life of the (cached, never freed) schedule.
"""
from __future__ import annotations

from datetime import date
from typing import Any, Callable

from .dates import add, parse_date
from .rules import cvx_set

# An interval counts from: the previous dose, a target dose, the latest dose of some vaccines, an observation.
PREVIOUS, TARGET_DOSE, MOST_RECENT, OBSERVATION, NOWHERE = range(5)


class Dated:
    """Rows in force between their effective date (inclusive) and cessation date (exclusive); `items`, one per
    row, are what `at` returns (the rows themselves by default)."""
    __slots__ = ("rows", "spans")

    def __init__(self, rows: list[Any], items: list[Any] | None = None) -> None:
        self.rows = rows if items is None else items
        spans = [(parse_date(r.get("effectiveDate")), parse_date(r.get("cessationDate"))) for r in rows]
        self.spans = spans if any(a or b for a, b in spans) else None  # None: every row always in force

    def at(self, when: date) -> list[Any]:
        if self.spans is None:
            return self.rows
        return [r for r, (start, stop) in zip(self.rows, self.spans)
                if (start is None or when >= start) and (stop is None or when < stop)]


class Interval:
    """One interval row: where it counts from and its durations."""
    __slots__ = ("row", "kind", "arg", "override", "abs_min", "minimum", "min_int", "earliest_rec", "latest_rec")

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.arg: Any = None
        if row.get("fromPrevious") == "Y":
            self.kind = PREVIOUS
        elif row.get("fromTargetDose"):
            self.kind, self.arg = TARGET_DOSE, int(row["fromTargetDose"]) - 1
        elif row.get("fromMostRecent"):
            self.kind, self.arg = MOST_RECENT, cvx_set(row["fromMostRecent"])
        elif row.get("fromRelevantObs"):
            relevant = row["fromRelevantObs"]
            self.kind = OBSERVATION
            self.arg = relevant.get("code") if isinstance(relevant, dict) else str(relevant)
        else:
            self.kind = NOWHERE
        self.override = (row.get("intervalPriority") or "").lower() == "override"
        self.abs_min = row.get("absMinInt") or "0 days"
        self.minimum = row.get("minInt") or row.get("absMinInt") or "0 days"
        self.min_int = row.get("minInt")
        self.earliest_rec = row.get("earliestRecInt")
        self.latest_rec = row.get("latestRecInt")


class Vaccine:
    __slots__ = ("begin", "end", "mvx")

    def __init__(self, row: dict[str, Any]) -> None:
        self.begin, self.end, self.mvx = row.get("beginAge"), row.get("endAge"), row.get("mvx")


def _by_cvx(rows: list[dict[str, Any]]) -> dict[str, list[Vaccine]]:
    out: dict[str, list[Vaccine]] = {}
    for row in rows:
        out.setdefault(row["cvx"], []).append(Vaccine(row))
    return out


_UNSET: Any = object()


class AgeDates:
    """An age row's dates for one date of birth (None where the row gives no such age), as plain attributes."""
    __slots__ = ("absolute", "minimum", "maximum", "earliest_rec", "latest_rec")

    def __init__(self, row: dict[str, Any], birth: date) -> None:
        def at(key: str) -> date | None:
            text = row.get(key)
            return add(birth, text) if text else None
        self.absolute = at("absMinAge") or birth
        self.minimum = at("minAge")
        self.maximum = at("maxAge")
        self.earliest_rec = at("earliestRecAge")
        self.latest_rec = at("latestRecAge")


class LazyAgeDates:
    """The same for a row with a duration the engine cannot read: each date worked out when first asked for,
    so one the engine never needs raises nothing (as when the rows were read for every dose)."""
    __slots__ = ("row", "birth", "_absolute", "_minimum", "_maximum", "_earliest_rec", "_latest_rec")

    def __init__(self, row: dict[str, Any], birth: date) -> None:
        self.row, self.birth = row, birth
        self._absolute = self._minimum = self._maximum = self._earliest_rec = self._latest_rec = _UNSET

    def _at(self, key: str) -> date | None:
        text = self.row.get(key)
        return add(self.birth, text) if text else None

    @property
    def absolute(self) -> date:  # the absolute minimum age, or birth
        if self._absolute is _UNSET:
            self._absolute = self._at("absMinAge") or self.birth
        return self._absolute

    @property
    def minimum(self) -> date | None:
        if self._minimum is _UNSET:
            self._minimum = self._at("minAge")
        return self._minimum

    @property
    def maximum(self) -> date | None:
        if self._maximum is _UNSET:
            self._maximum = self._at("maxAge")
        return self._maximum

    @property
    def earliest_rec(self) -> date | None:
        if self._earliest_rec is _UNSET:
            self._earliest_rec = self._at("earliestRecAge")
        return self._earliest_rec

    @property
    def latest_rec(self) -> date | None:
        if self._latest_rec is _UNSET:
            self._latest_rec = self._at("latestRecAge")
        return self._latest_rec


def age_dates(row: dict[str, Any], birth: date) -> AgeDates | LazyAgeDates:
    try:
        return AgeDates(row, birth)
    except ValueError:
        return LazyAgeDates(row, birth)


# Age dates kept per target dose and date of birth (a cohort has a few hundred dates of birth); past this
# many a target dose's are dropped and made again, so a population of all ages cannot grow them unbounded.
BIRTHS_KEPT = 4096


class Target:
    __slots__ = ("by_birth", "raw", "ages", "intervals", "allowable_intervals", "preferable", "allowable", "inadvertent",
                 "recurring", "skips", "preferable_cvx", "season", "season_start", "live")

    def __init__(self, target: dict[str, Any]) -> None:
        self.raw = target
        self.by_birth: dict[date, AgeDates | LazyAgeDates] = {}
        self.ages = Dated(target.get("age", []))
        rows = target.get("interval", [])
        self.intervals = Dated(rows, [Interval(r) for r in rows])
        rows = target.get("allowableInterval", [])
        self.allowable_intervals = Dated(rows, [Interval(r) for r in rows])
        self.preferable = _by_cvx(target.get("preferableVaccine", []))
        self.allowable = _by_cvx(target.get("allowableVaccine", []))
        self.inadvertent = frozenset(v["cvx"] for v in target.get("inadvertentVaccine", []))
        self.recurring = target.get("recurringDose") == "Yes"
        self.skips = bool(target.get("conditionalSkip"))
        self.preferable_cvx = {v["cvx"] for v in target.get("preferableVaccine", [])}
        season = target.get("seasonalRecommendation")
        self.season = Dated(season if isinstance(season, list) else [season] if season else [])
        first = season[0] if isinstance(season, list) and season else season
        # a dose counts towards the forecast dose number if given on or after this (dose_number)
        self.season_start = parse_date(first.get("startDate")) if isinstance(first, dict) else None
        self.live: list[Any] | None = None  # the live-virus conflicts of its preferable vaccines, once known

    def conflicts(self, by_cvx: dict[str, list[Any]]) -> list[Any]:
        """The live-virus conflicts whose current vaccine is one this target dose prefers (the schedule's
        table, by current CVX: a target dose belongs to one schedule's data)."""
        if self.live is None:
            self.live = [c for cvx in self.preferable_cvx for c in by_cvx.get(cvx, ())]
        return self.live

    def age_row(self, when: date) -> dict[str, Any]:
        rows = self.ages.at(when)
        return rows[0] if rows else {}

    def age_dates(self, birth: date, when: date) -> AgeDates | LazyAgeDates:
        """The dates of the age row in force on `when` for a child born on `birth`."""
        if self.ages.spans is not None:  # rows that come into or go out of force: no single answer to keep
            return age_dates(self.age_row(when), birth)
        found = self.by_birth.get(birth)
        if found is None:
            if len(self.by_birth) >= BIRTHS_KEPT:
                self.by_birth.clear()
            found = self.by_birth[birth] = age_dates(self.age_row(when), birth)
        return found


def read_once(table: dict[int, tuple[Any, Any]], raw: dict[str, Any], make: Callable[[dict[str, Any]], Any]) -> Any:
    """What `make` reads from a rule dictionary of a loaded schedule, made once per dictionary: kept in `table`
    by its id beside the dictionary itself, so an id reused by a later object is never mistaken for it."""
    found = table.get(id(raw))
    if found is None or found[0] is not raw:
        found = table[id(raw)] = (raw, make(raw))
    return found[1]


_TARGETS: dict[int, tuple[dict[str, Any], Target]] = {}


def target(raw: dict[str, Any]) -> Target:
    """The Target of a dose dictionary of a loaded schedule."""
    return read_once(_TARGETS, raw, Target)
