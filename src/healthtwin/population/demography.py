"""Age-sex structure, mortality and the national identifier (FIN).

The pyramid is a 5-year-band approximation of the State Statistics Committee's 2023/2024 population by
age and sex (sources and caveats in docs/population.md). Births are implicit: residents younger than the
simulated window were born inside it (the 0-4 band ~ 12 births per 1000 per year, SSC 2023: 11.2).
"""
from __future__ import annotations

import bisect
import math
import random

# (lower age, upper age exclusive, % of population, male fraction in the band)
PYRAMID: list[tuple[int, int, float, float]] = [
    (0, 5, 5.9, 0.536), (5, 10, 8.0, 0.536), (10, 15, 7.7, 0.534), (15, 20, 6.5, 0.528),
    (20, 25, 6.6, 0.516), (25, 30, 7.8, 0.506), (30, 35, 9.0, 0.503), (35, 40, 8.0, 0.499),
    (40, 45, 7.0, 0.496), (45, 50, 6.2, 0.493), (50, 55, 6.3, 0.484), (55, 60, 6.5, 0.474),
    (60, 65, 5.6, 0.461), (65, 70, 3.9, 0.446), (70, 75, 2.7, 0.421), (75, 80, 1.1, 0.386),
    (80, 85, 0.8, 0.356), (85, 100, 0.5, 0.316),
]
_TOTAL = sum(b[2] for b in PYRAMID)
_CUM: list[float] = []
_a = 0.0
for _b in PYRAMID:
    _a += _b[2] / _TOTAL
    _CUM.append(_a)

MALE_SHARE = sum(b[2] * b[3] for b in PYRAMID) / _TOTAL  # ~0.498 (SSC 2024: 49.8 % men)
SEX_RATIO_AT_BIRTH_MALE = 0.532  # SSC 2023: 53.2 % of live births were boys


def band_share(lo: int, hi: int) -> float:
    """Expected population share of ages [lo, hi) from the table (whole bands only)."""
    return sum(b[2] for b in PYRAMID if b[0] >= lo and b[1] <= hi) / _TOTAL


def sample_age_sex(rng: random.Random) -> tuple[float, str]:
    """Exact age in years (at the end of the window) and administrative gender."""
    i = min(bisect.bisect_left(_CUM, rng.random()), len(PYRAMID) - 1)
    lo, hi, _, male = PYRAMID[i]
    if hi - lo > 5:  # open band: older ages thin out
        age = lo + (hi - lo) * (rng.random() ** 1.8)
    else:
        age = lo + (hi - lo) * rng.random()
    return age, ("male" if rng.random() < male else "female")


# Annual probability of death: Gompertz-Makeham fitted by hand so that, on this pyramid, the crude
# death rate is ~6 per 1000 (SSC 2023: 5.9) and infant mortality ~11 per 1000 live births.
def annual_death_probability(age: float, sex: str) -> float:
    if age < 1.0:
        q = 0.011
    elif age < 15.0:
        q = 0.0003
    else:
        q = 0.0005 + 0.000028 * math.exp(0.0935 * age)
    if sex == "male":
        q *= 1.35
    else:
        q *= 0.72
    return min(q, 0.45)


# FIN: 7 characters from an alphabet without easily confused characters (0/O, 1/I/L). A random-looking
# but collision-free value is obtained by an affine permutation of the patient index modulo 31**7, so
# every shard can derive it independently and two patients never share a FIN.
FIN_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_FIN_MOD = len(FIN_ALPHABET) ** 7


def fin(index: int, seed: int) -> str:
    mult = 16_983_740_051 + 2 * (seed % 1_000_000)  # ~0.618 * 31**7 scatters neighbours; coprime below
    while mult % 31 == 0:
        mult += 2
    n = (index * mult + seed * 2_654_435_761 + 987_654_321) % _FIN_MOD
    chars = []
    for _ in range(7):
        n, r = divmod(n, 31)
        chars.append(FIN_ALPHABET[r])
    return "".join(chars)
