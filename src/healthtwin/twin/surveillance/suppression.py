"""Small-cell suppression of an alert's evidence, before it leaves the analytics side for any reader.

The rule (the one the indicators follow in spirit, docs/twin.md "Alerts and who receives them"): an observed
count of 1 to 4 cases is shown as the string "<5"; 0 and counts of 5 or more are shown as they are. It applies
to every count an alert carries: the weekly observed counts of each signal's chart, each signal's observed
figure and the sentence of the alert's text. Expected values are model estimates (a baseline over years), not
counts of people, and are shown rounded to one decimal. This is primary suppression only: no complementary
cells are hidden, because an alert carries no totals from which a hidden cell could be recovered by subtraction.
"""
from __future__ import annotations

from typing import Any

THRESHOLD = 5
SHOWN_BELOW = "<5"


def count(n: float | int) -> int | str:
    """A count as a non-clinical reader may see it: 1–4 become "<5"."""
    value = int(round(float(n)))
    return SHOWN_BELOW if 0 < value < THRESHOLD else value


def counts(values: list[Any]) -> list[Any]:
    return [None if v is None else count(v) for v in values]


def words(n: float | int) -> str:
    """The count for a sentence: "<5 cases" reads as "fewer than 5"."""
    shown = count(n)
    return "fewer than 5" if shown == SHOWN_BELOW else str(shown)
