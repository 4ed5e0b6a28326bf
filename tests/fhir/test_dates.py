"""dates.py: precision ranges (half-open, epoch seconds UTC), timezones, leap years, invalid input."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from healthtwin.fhir.dates import number_range, parse_query, parse_range, split_prefix


def ts(*args: int, tz: timezone = timezone.utc) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


@pytest.mark.parametrize("text, lo, hi", [
    ("2020", ts(2020, 1, 1), ts(2021, 1, 1)),
    ("2020-03", ts(2020, 3, 1), ts(2020, 4, 1)),
    ("2020-12", ts(2020, 12, 1), ts(2021, 1, 1)),
    ("2020-02-29", ts(2020, 2, 29), ts(2020, 3, 1)),  # leap day
    ("2020-02", ts(2020, 2, 1), ts(2020, 3, 1)),
    ("2019-02", ts(2019, 2, 1), ts(2019, 3, 1)),
    ("2020-03-01T10:00:00Z", ts(2020, 3, 1, 10), ts(2020, 3, 1, 10, 0, 1)),
    ("2020-03-01T10:00:00+04:00", ts(2020, 3, 1, 6), ts(2020, 3, 1, 6, 0, 1)),
    ("2020-03-01T10:00:00-05:30", ts(2020, 3, 1, 15, 30), ts(2020, 3, 1, 15, 30, 1)),
    ("2020-03-01T00:30:00+01:00", ts(2020, 2, 29, 23, 30), ts(2020, 2, 29, 23, 30, 1)),  # crosses a leap day
    ("2020-03-01T10:00", ts(2020, 3, 1, 10), ts(2020, 3, 1, 10, 1)),  # minute precision (search values)
    ("2020-03-01T10:00:00", ts(2020, 3, 1, 10), ts(2020, 3, 1, 10, 0, 1)),  # no timezone: UTC
    ("1900-01-01", ts(1900, 1, 1), ts(1900, 1, 2)),
])
def test_precision_ranges(text: str, lo: float, hi: float) -> None:
    assert parse_range(text) == (lo, hi)


def test_fractional_seconds() -> None:
    lo, hi = parse_range("2015-02-07T13:28:17.239+02:00")
    assert lo == pytest.approx(ts(2015, 2, 7, 11, 28, 17) + 0.239)
    assert hi - lo == pytest.approx(0.001, abs=1e-6)  # float spacing at 1.4e9 s is 2e-7
    lo, hi = parse_range("2015-02-07T13:28:17.5Z")
    assert (lo, hi) == pytest.approx((ts(2015, 2, 7, 13, 28, 17) + 0.5, ts(2015, 2, 7, 13, 28, 18)))


def test_extreme_years() -> None:
    assert parse_range("9999-12")[1] == parse_range("9999-12-31")[1]
    assert parse_range("9999")[0] < parse_range("9999")[1]
    assert parse_range("0001-01-01")[0] < 0


@pytest.mark.parametrize("bad", [
    "", "20", "2020-13", "2020-00", "2019-02-29", "2020-04-31", "2020-01-01T24:00:00Z", "2020-01-01T10:60:00Z",
    "2020-01-01T10:00:61Z", "2020-01-01T10:00:00+15:00", "2020-01-01T10", "2020/01/01", "0000", "2020-1-1",
    "2020-01-01T10:00:00ZZ", " 2020", "today",
])
def test_invalid_dates_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_range(bad)


def test_non_string_raises() -> None:
    with pytest.raises(ValueError):
        parse_range(2020)  # type: ignore[arg-type]


def test_query_prefixes() -> None:
    assert split_prefix("ge2020-03") == ("ge", "2020-03")
    assert split_prefix("2020-03") == ("eq", "2020-03")
    assert parse_query("ge2020-03") == ("ge",) + parse_range("2020-03")
    assert parse_query("2020-03-01T10:00:00+04:00") == ("eq",) + parse_range("2020-03-01T10:00:00+04:00")
    with pytest.raises(ValueError):
        parse_query("xx2020")


@pytest.mark.parametrize("value, lo, hi", [
    ("100", 99.5, 100.5), (100, 99.5, 100.5), ("100.00", 99.995, 100.005), ("1e2", 50, 150),
    ("0.1", 0.05, 0.15), (0.25, 0.245, 0.255), ("-3", -3.5, -2.5), ("1.5e-3", 0.00145, 0.00155),
])
def test_number_ranges(value: object, lo: float, hi: float) -> None:
    assert number_range(value) == pytest.approx((lo, hi))  # type: ignore[arg-type]


def test_number_range_full_precision_float_is_not_empty() -> None:
    v = 176.35499866729558
    lo, hi = number_range(v)
    assert lo < v < hi


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", True])
def test_number_range_invalid(bad: object) -> None:
    with pytest.raises(ValueError):
        number_range(bad)  # type: ignore[arg-type]
