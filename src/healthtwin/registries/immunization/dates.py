"""CDSi date arithmetic: "6 months - 4 days" added to a date the way the Logic Specification says.

Units are applied left to right; years and months keep the day of the month, and a day that does not exist
in the target month (31 April, 29 February) moves to the first of the following month; weeks and days are
added as days.
"""
from __future__ import annotations

import re
from datetime import date, timedelta
from functools import lru_cache

_TERM = re.compile(r"([+-]?)\s*(\d+)\s*(year|month|week|day)s?", re.I)
MAX_DATE = date(2999, 12, 31)
MIN_DATE = date(1900, 1, 1)


@lru_cache(maxsize=4096)
def parse(duration: str) -> tuple[tuple[int, str], ...]:
    """"19 months + 4 weeks" -> ((19, 'month'), (28, 'day')); a bad term is a ValueError."""
    terms: list[tuple[int, str]] = []
    for sign, number, unit in _TERM.findall(duration):
        n = -int(number) if sign == "-" else int(number)
        unit = unit.lower()
        if unit == "year":
            terms.append((12 * n, "month"))
        elif unit == "month":
            terms.append((n, "month"))
        else:
            terms.append((n * (7 if unit == "week" else 1), "day"))
    if not terms:
        raise ValueError(f"not a CDSi duration: {duration!r}")
    return tuple(terms)


def _add_months(day: date, months: int) -> date:
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    month += 1
    try:
        return date(year, month, day.day)
    except ValueError:  # no such day in that month: the first of the next
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return date(year, month, 1)


@lru_cache(maxsize=65536)
def add(day: date, duration: str) -> date:
    for n, unit in parse(duration):
        day = _add_months(day, n) if unit == "month" else day + timedelta(days=n)
    return day


def add_opt(day: date | None, duration: str | None) -> date | None:
    if day is None or not duration:
        return None
    return add(day, duration)


def parse_date(text: str | None) -> date | None:
    """A CDSi or FHIR date ('2025-11-10', '2025/11/10', '11/10/2025', a dateTime): its calendar date."""
    if not text:
        return None
    text = text.strip()[:10]
    if "/" in text:
        parts = text.split("/")
        if len(parts[0]) == 4:
            return date(int(parts[0]), int(parts[1]), int(parts[2]))
        return date(int(parts[2]), int(parts[0]), int(parts[1]))
    return date.fromisoformat(text)


@lru_cache(maxsize=1024)
def rule_date(text: str | None) -> date | None:
    """A date of the supporting data (a few, met for every patient): parsed once."""
    return parse_date(text)
