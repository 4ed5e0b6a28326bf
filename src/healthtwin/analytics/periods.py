"""Calendar periods of the daily indicators: a request's `period` as a range of days, and the buckets
(`interval`) its figures are summed into.

Forms (ISO 8601 where it has one): a day `2024-01-15`, an ISO week `2024-W03` (Monday to Sunday; week 1 is
the week with the year's first Thursday, so 2024-W01 starts on 2024-01-01 and 2020-W53 ends on 2021-01-03),
a month `2024-01`, a year `2024`; a range is two of the same form joined by `/` (`2024-W01/2024-W10`) or
`..`, or two years joined by `-` (`2020-2023`, as the yearly indicators take them). The default interval is
the form of the period (a week's figures by week), and week when there is no period or it is a year.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

INTERVALS = ("day", "week", "month", "year")
_FORMS = (
    ("day", re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")),
    ("week", re.compile(r"^(\d{4})-W(\d{2})$")),
    ("month", re.compile(r"^(\d{4})-(\d{2})$")),
    ("year", re.compile(r"^(\d{4})$")),
)
# The bucket label of a DATE column, as DuckDB SQL: ISO year and week (%G, %V) for weeks.
LABEL_SQL = {"day": "strftime({col}, '%Y-%m-%d')", "week": "strftime({col}, '%G-W%V')",
             "month": "strftime({col}, '%Y-%m')", "year": "strftime({col}, '%Y')"}


class PeriodError(ValueError):
    """A period or interval that cannot be read; the message says which forms are accepted."""


@dataclass(frozen=True)
class Period:
    first: dt.date
    last: dt.date  # inclusive
    form: str  # day | week | month | year: the form it was written in


def _one(text: str) -> Period:
    for form, rx in _FORMS:
        m = rx.match(text)
        if not m:
            continue
        nums = [int(g) for g in m.groups()]
        try:
            if form == "day":
                d = dt.date(*nums)
                return Period(d, d, form)
            if form == "week":
                start = dt.date.fromisocalendar(nums[0], nums[1], 1)
                return Period(start, start + dt.timedelta(days=6), form)
            if form == "month":
                start = dt.date(nums[0], nums[1], 1)
                nxt = dt.date(nums[0] + nums[1] // 12, nums[1] % 12 + 1, 1)
                return Period(start, nxt - dt.timedelta(days=1), form)
            return Period(dt.date(nums[0], 1, 1), dt.date(nums[0], 12, 31), form)
        except ValueError:
            raise PeriodError(f"period '{text}' is not a date of the calendar"
                              + (f" ({nums[0]} has {week_count(nums[0])} ISO weeks)" if form == "week" and
                                 1 <= nums[0] <= 9998 else "")) from None
    raise PeriodError(f"period '{text}': use a day (2024-01-15), an ISO week (2024-W03), a month (2024-01), a "
                      "year (2024), or a range of one form (2024-W01/2024-W10)")


def week_count(year: int) -> int:
    """52 or 53: the ISO week of 28 December is always the year's last."""
    return dt.date(year, 12, 28).isocalendar()[1]


def parse_period(text: str) -> Period:
    """The days `text` covers. A range takes the form of its ends, which must agree."""
    text = text.strip()
    m = re.match(r"^(\d{4})-(\d{4})$", text)
    parts = [m.group(1), m.group(2)] if m else re.split(r"/|\.\.", text)
    if len(parts) == 1:
        return _one(parts[0])
    if len(parts) != 2:
        raise PeriodError(f"period '{text}': a range has two ends (2024-W01/2024-W10)")
    a, b = _one(parts[0].strip()), _one(parts[1].strip())
    if a.form != b.form:
        raise PeriodError(f"period '{text}': both ends of a range are written the same way ({a.form} and {b.form})")
    if b.last < a.first:
        raise PeriodError(f"period '{text}': the range is empty (its end is before its start)")
    return Period(a.first, b.last, a.form)


def choose_interval(period: Period | None, requested: str | None, allowed: tuple[str, ...] = INTERVALS) -> str:
    """The buckets of the figures: `requested`, else the period's own form (week for a year or none)."""
    if requested:
        if requested not in allowed:
            raise PeriodError(f"interval '{requested}': use {' or '.join(allowed)}")
        return requested
    default = period.form if period is not None and period.form != "year" else "week"
    return default if default in allowed else allowed[0]


def bucket_start(day: dt.date, interval: str) -> dt.date:
    """The first day of the bucket `day` falls in."""
    if interval == "day":
        return day
    if interval == "week":
        return day - dt.timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def next_bucket(start: dt.date, interval: str) -> dt.date:
    if interval == "day":
        return start + dt.timedelta(days=1)
    if interval == "week":
        return start + dt.timedelta(days=7)
    if interval == "month":
        return dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return dt.date(start.year + 1, 1, 1)


def label(day: dt.date, interval: str) -> str:
    """The label of the bucket `day` falls in, as LABEL_SQL writes it (2024-W03, 2024-01...)."""
    if interval == "week":
        y, w, _ = day.isocalendar()
        return f"{y}-W{w:02d}"
    return {"day": day.isoformat(), "month": day.strftime("%Y-%m"), "year": str(day.year)}[interval]


__all__ = ["INTERVALS", "LABEL_SQL", "Period", "PeriodError", "bucket_start", "choose_interval", "label",
           "next_bucket", "parse_period", "week_count"]
