"""ucum.py: equal quantities in different units get equal canonical forms."""
from __future__ import annotations

import pytest

from healthtwin.fhir.ucum import canonical


@pytest.mark.parametrize("a, b", [
    ((5, "mg/dL"), (0.05, "g/L")),
    ((5, "mg/dL"), (50, "mg/L")),
    ((1, "g/dL"), (10, "g/L")),
    ((1, "kg"), (1000, "g")),
    ((1000, "ug"), (1, "mg")),
    ((1, "m"), (100, "cm")),
    ((10, "mm"), (1, "cm")),
    ((1, "L"), (1000, "mL")),
    ((1, "dL"), (100, "mL")),
    ((1, "mL"), (1000, "uL")),
    ((1, "mL"), (1, "cm3")),
    ((1, "h"), (60, "min")),
    ((1, "d"), (24, "h")),
    ((1, "wk"), (7, "d")),
    ((1, "a"), (12, "mo")),
    ((60, "/min"), (1, "/s")),
    ((60, "{beats}/min"), (1, "/s")),
    ((1, "mmol/L"), (1000, "umol/L")),
    ((4.5, "10*3/uL"), (4.5, "10*9/L")),
    ((1, "[iU]/L"), (1, "m[iU]/mL")),
    ((1, "kg/m2"), (0.1, "g/cm2")),
    ((50, "%"), (0.5, "1")),
    ((37, "Cel"), (310.15, "K")),
])
def test_equivalent_units(a: tuple[float, str], b: tuple[float, str]) -> None:
    ca, cb = canonical(*a), canonical(*b)
    assert ca is not None and cb is not None
    assert ca[1] == cb[1]
    assert ca[0] == pytest.approx(cb[0])


@pytest.mark.parametrize("value, code, expected", [
    (5, "mg/dL", (50.0, "g.m-3")),
    (1, "kg", (1000.0, "g")),
    (2, "h", (7200.0, "s")),
    (120, "mm[Hg]", (120 * 133322.387415, "g.m-1.s-2")),
    (72, "/min", (1.2, "s-1")),
    (25, "kg/m2", (25000.0, "g.m-2")),
    (0.1, "L", (0.0001, "m3")),
    (98.6, "[degF]", (310.15, "K")),
])
def test_canonical_values(value: float, code: str, expected: tuple[float, str]) -> None:
    got = canonical(value, code)
    assert got is not None
    assert got[1] == expected[1] and got[0] == pytest.approx(expected[0])


def test_different_dimensions_differ() -> None:
    assert canonical(1, "mg/dL")[1] != canonical(1, "mmol/L")[1]  # type: ignore[index]
    assert canonical(1, "g")[1] != canonical(1, "m")[1]  # type: ignore[index]


@pytest.mark.parametrize("code", ["", None, "xyz", "mg/", "kg//m", "(mg", "beats/minute", "1.73m2"])
def test_unknown_units(code: str | None) -> None:
    assert canonical(1, code) is None


def test_float_noise_is_rounded() -> None:
    assert canonical(0.1, "kg") == (100.0, "g")
