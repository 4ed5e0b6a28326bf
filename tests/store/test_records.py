"""instant(): the fast formatter gives exactly what datetime's formatting gives, rounding edges included."""
from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, strategies as st

from healthtwin.store.records import instant


def reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False))
def test_instant_matches_datetime(ts: float) -> None:
    assert instant(ts) == reference(ts)


@given(st.integers(min_value=0, max_value=4_000_000_000),
       st.sampled_from([0.0, 0.0005, 0.0015, 0.9995, 0.9999994999, 0.9999995, 0.0000005, 0.123, 0.999]))
def test_instant_at_rounding_edges(second: int, frac: float) -> None:
    assert instant(second + frac) == reference(second + frac)
