"""Period parsing of the daily indicators (analytics/periods.py): ISO weeks, months, days, ranges, and the
buckets figures are summed into, checked against the calendar (datetime's ISO calendar) at year boundaries."""
from __future__ import annotations

import datetime as dt

import pytest

from healthtwin.analytics.periods import (PeriodError, bucket_start, choose_interval, label, next_bucket,
                                          parse_period, week_count)


@pytest.mark.parametrize("text, first, last", [
    ("2024-W01", dt.date(2024, 1, 1), dt.date(2024, 1, 7)),      # 1 January 2024 is a Monday
    ("2021-W01", dt.date(2021, 1, 4), dt.date(2021, 1, 10)),     # 1-3 January 2021 belong to 2020-W53
    ("2020-W53", dt.date(2020, 12, 28), dt.date(2021, 1, 3)),
    ("2025-W01", dt.date(2024, 12, 30), dt.date(2025, 1, 5)),    # week 1 of 2025 starts in 2024
    ("2026-W53", dt.date(2026, 12, 28), dt.date(2027, 1, 3)),
    ("2024-02", dt.date(2024, 2, 1), dt.date(2024, 2, 29)),
    ("2023-12", dt.date(2023, 12, 1), dt.date(2023, 12, 31)),
    ("2024-01-15", dt.date(2024, 1, 15), dt.date(2024, 1, 15)),
    ("2024", dt.date(2024, 1, 1), dt.date(2024, 12, 31)),
    ("2020-2023", dt.date(2020, 1, 1), dt.date(2023, 12, 31)),
    ("2023-W50/2024-W02", dt.date(2023, 12, 11), dt.date(2024, 1, 14)),
    ("2023-11..2024-02", dt.date(2023, 11, 1), dt.date(2024, 2, 29)),
    (" 2024-01-01/2024-01-31 ", dt.date(2024, 1, 1), dt.date(2024, 1, 31)),
])
def test_periods_cover_the_calendars_days(text, first, last) -> None:
    p = parse_period(text)
    assert (p.first, p.last) == (first, last)


@pytest.mark.parametrize("text, says", [
    ("2024-W53", "52 ISO weeks"), ("2024-W00", "not a date"), ("2024-13", "not a date"),
    ("2024-02-30", "not a date"), ("last week", "use a day"), ("2024-W05/2024-W01", "empty"),
    ("2024-01/2024-W05", "same way"), ("2024-W01/2024-W02/2024-W03", "two ends"), ("2024-1", "use a day"),
])
def test_bad_periods_say_what_is_accepted(text, says) -> None:
    with pytest.raises(PeriodError, match=says):
        parse_period(text)


def test_week_counts_and_labels_follow_the_iso_calendar() -> None:
    for year in range(2000, 2040):
        assert week_count(year) == max(dt.date(year, 12, d).isocalendar()[1] for d in range(22, 32))
        assert week_count(year) in (52, 53)
    day = dt.date(2018, 12, 1)
    while day < dt.date(2027, 2, 1):
        start = bucket_start(day, "week")
        assert start.weekday() == 0 and 0 <= (day - start).days < 7
        assert label(day, "week") == f"{day.isocalendar()[0]}-W{day.isocalendar()[1]:02d}"
        assert label(start, "week") == label(day, "week") == label(next_bucket(start, "week") - dt.timedelta(1), "week")
        month = bucket_start(day, "month")
        assert month.day == 1 and next_bucket(month, "month") > day >= month
        assert parse_period(label(day, "week")).first == start
        assert parse_period(label(day, "month")).first == month
        day += dt.timedelta(days=3)


def test_the_interval_follows_the_period_unless_asked() -> None:
    assert choose_interval(parse_period("2024-W03"), None) == "week"
    assert choose_interval(parse_period("2024-01"), None) == "month"
    assert choose_interval(parse_period("2024-01-01/2024-01-09"), None) == "day"
    assert choose_interval(parse_period("2024"), None) == "week"
    assert choose_interval(None, None) == "week"
    assert choose_interval(parse_period("2024-01"), "day") == "day"
    assert choose_interval(None, None, ("day",)) == "day"
    with pytest.raises(PeriodError, match="interval 'week'"):
        choose_interval(None, "week", ("day",))
    with pytest.raises(PeriodError, match="interval 'fortnight'"):
        choose_interval(None, "fortnight")
