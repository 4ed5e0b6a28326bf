"""FHIR date/dateTime/instant values as half-open ranges of epoch seconds, and numbers as precision ranges.

Every FHIR date-like value denotes an interval implied by its precision: "2020" is all of 2020, "2020-03" all of
March, "2020-03-01T10:00:00.5Z" a tenth of a second. The index stores `(lo, hi)` as floats (seconds since the
Unix epoch, UTC) with `lo` inclusive and `hi` EXCLUSIVE, and the search side turns a query value into the same
kind of range, so every date comparison (eq, ge, sa, eb, ap ...) is a comparison of two intervals.

Values without a timezone (dates, and dateTimes/times without an offset) are taken as UTC. The specification
says they are in the server's local time; a national server has no single local time, and UTC keeps index
rows independent of where the server runs. This is documented in docs/search-compilation.md.
"""
from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation

# Open ends of a Period (and "no bound" generally): finite so that they fit in SQL double columns and sort.
NEG_INF = -1e18
POS_INF = 1e18

_EPOCH_ORD = date(1970, 1, 1).toordinal()

# One regex for every accepted form: YYYY, YYYY-MM, YYYY-MM-DD, and YYYY-MM-DDThh:mm[:ss[.f+]][Z|±hh:mm].
# hh:mm without seconds is not valid FHIR dateTime but is common in search queries, so it is accepted.
_DATE_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?")

_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

# parse_range is called for every date in every indexed resource; the same strings recur a lot (birth dates,
# report dates of one batch), so a bounded memo pays for itself. Cleared wholesale when full: simple and cheap.
_CACHE: dict[str, tuple[float, float]] = {}
_CACHE_MAX = 65536


def _days(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01; `date()` validates the day of month (leap years included)."""
    return date(y, m, d).toordinal() - _EPOCH_ORD


def parse_range(text: str) -> tuple[float, float]:
    """The half-open range [lo, hi) in epoch seconds denoted by a FHIR date, dateTime or instant.

    Raises ValueError for anything that is not one (wrong shape, month 13, 30 February, hour 24 ...).
    """
    hit = _CACHE.get(text)
    if hit is not None:
        return hit
    result = _parse(text)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[text] = result
    return result


# The two shapes nearly all stored values have get a fast path through the C ISO parser; the strict shape
# check comes first because `fromisoformat` accepts more than FHIR does (week dates, "2020-03-01 10:00").
_INSTANT_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(?:Z|[+-]\d\d:\d\d)")
_DAY_RE = re.compile(r"\d{4}-\d\d-\d\d")
_OFFSET_HOURS = frozenset(f"{sign}{h:02d}" for sign in "+-" for h in range(15))  # ±14:00 at most
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _parse(text: str) -> tuple[float, float]:
    if not isinstance(text, str):
        raise ValueError(f"not a date: {text!r}")
    fast = _INSTANT_RE.fullmatch(text)
    if fast is not None and not text.startswith("0000"):
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not a valid FHIR dateTime: {text!r}") from None
        if text[-1] != "Z" and text[-6:-3] not in _OFFSET_HOURS:
            raise ValueError(f"timezone offset out of range in {text!r}")
        frac = fast.group(1)
        if frac is None:
            lo = (dt - _EPOCH).total_seconds()  # cheaper than dt.timestamp()
            return lo, lo + 1.0
        width = 10.0 ** -(len(frac) - 1)
        lo = (dt.replace(microsecond=0) - _EPOCH).total_seconds() + int(frac[1:]) * width  # keeps digits past µs
        return lo, lo + width
    if len(text) == 10 and _DAY_RE.fullmatch(text) and not text.startswith("0000"):
        try:
            day = date.fromisoformat(text).toordinal() - _EPOCH_ORD
        except ValueError:
            raise ValueError(f"day out of range in {text!r}") from None
        return day * 86400.0, (day + 1) * 86400.0
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a FHIR date/dateTime/instant: {text!r}")
    ys, ms, ds, hs, mis, ss, frac, tz = m.groups()
    y = int(ys)
    if y == 0:
        raise ValueError(f"year 0000 is not valid: {text!r}")
    if ms is None:  # year precision
        return _days(y, 1, 1) * 86400.0, (_days(y, 12, 31) + 1) * 86400.0
    mo = int(ms)
    if not 1 <= mo <= 12:
        raise ValueError(f"month out of range in {text!r}")
    if ds is None:  # month precision: up to the first day of the next month
        start = _days(y, mo, 1)
        end = _days(y, 12, 31) + 1 if mo == 12 else _days(y, mo + 1, 1)  # no date(10000, 1, 1)
        return start * 86400.0, end * 86400.0
    try:
        day = _days(y, mo, int(ds))
    except ValueError:
        raise ValueError(f"day out of range in {text!r}") from None
    if hs is None:  # date precision
        return day * 86400.0, (day + 1) * 86400.0
    h, mi = int(hs), int(mis)
    sec = int(ss) if ss is not None else 0
    if h > 23 or mi > 59 or sec > 59:  # FHIR forbids 24:00 and leap seconds
        raise ValueError(f"time out of range in {text!r}")
    offset = 0
    if tz is not None and tz != "Z":
        th, tm = int(tz[1:3]), int(tz[4:6])
        if th > 14 or tm > 59:
            raise ValueError(f"timezone offset out of range in {text!r}")
        offset = (th * 3600 + tm * 60) * (1 if tz[0] == "+" else -1)
    lo = day * 86400 + h * 3600 + mi * 60 + sec - offset
    if ss is None:
        return float(lo), float(lo + 60)
    if frac is None:
        return float(lo), float(lo + 1)
    width = 10.0 ** -len(frac)
    start = lo + int(frac) * width
    return start, start + width


def split_prefix(value: str) -> tuple[str, str]:
    """Split a search value into (prefix, rest): "ge2020-03" → ("ge", "2020-03"); no prefix → ("eq", value)."""
    if len(value) > 2 and value[:2] in _PREFIXES and not value[0].isdigit():
        return value[:2], value[2:]
    return "eq", value


def parse_query(value: str) -> tuple[str, float, float]:
    """A date search value with its optional prefix: "ge2020-03" → ("ge", lo, hi). Raises ValueError."""
    prefix, rest = split_prefix(value)
    lo, hi = parse_range(rest)
    return prefix, lo, hi


def number_range(value: str | int | float | Decimal) -> tuple[float, float]:
    """[lo, hi) implied by a number's significant precision: "100" → [99.5, 100.5), "100.00" → [99.995, 100.005).

    Exponent forms keep the mantissa's precision: "1e2" has one significant figure, so → [50, 150). (The R4
    search page's table says 95..105 for 1e2, which contradicts its own "1 significant figure"; we follow the
    arithmetic.) Resources arrive parsed by orjson, so decimals are floats: their precision is the one of
    `repr(float)`, i.e. "100.0" and "100.00" both read as one decimal place.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, int):
        return value - 0.5, value + 0.5
    if isinstance(value, float):
        text = repr(value)
        if "e" not in text and "n" not in text:  # plain decimal notation (not nan/inf): count decimals
            half = 0.5 * 10.0 ** -(len(text) - text.index(".") - 1)
            return _widen(value, value - half, value + half)
    else:
        text = value if isinstance(value, str) else str(value)
    try:
        dec = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not dec.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    exponent = dec.as_tuple().exponent
    assert isinstance(exponent, int)
    number = float(dec)
    if not math.isfinite(number) or exponent > 308:  # past a float's range: 10.0 ** exponent overflows
        raise ValueError(f"number out of range: {value!r}")
    half = 0.5 * 10.0 ** exponent
    return _widen(number, number - half, number + half)


def _widen(value: float, lo: float, hi: float) -> tuple[float, float]:
    # A float printed with all 17 digits (176.35499866729558) implies a precision finer than float spacing:
    # keep the range non-empty (hi is exclusive) by stepping to the neighbouring floats.
    if lo >= value:
        lo = math.nextafter(value, -math.inf)
    if hi <= value:
        hi = math.nextafter(value, math.inf)
    return lo, hi
