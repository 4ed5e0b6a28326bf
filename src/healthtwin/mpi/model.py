"""The Fellegi–Sunter model of the index: comparisons and their levels, blocking rules and thresholds.

Each comparison level is written twice, as the SQL condition Splink evaluates on DuckDB (columns `x_l`, `x_r`)
and as the Python predicate `$match` evaluates on one pair (comparators.py computes what DuckDB's functions
do), so both paths grade a pair alike. Levels are tried in order; the first that holds is the pair's level.
A level's weight is log2(m/u): m = P(level | same person), u = P(level | different people), estimated by
EM (splink_engine.py); `DEFAULT_WEIGHTS` are the estimates of the run recorded in docs/mpi.md, which `$match`
uses until a deployment trains its own (`healthtwin mpi train`, written to the data folder).

Blocking. A pair is compared only if it agrees on one of `BLOCKING_RULES`. Each rule pairs a name part with a
date or another name part, never a field alone, so no block grows with the country faster than the most
common name-and-birth-year: at 10.2 million, with Azerbaijani name frequencies, the largest block of the rule
(phonetic first name and surname, birth year) holds a few hundred records. Together they catch what one or
two errors break (a duplicate without a FIN usually has two: docs/mpi.md):
* the FIN;
* exact birth date and surname stem: first-name typos, transliterations, patronymics, suffix changes;
* exact birth date and first name: surname typos and changes;
* phonetic first name and surname, and birth year: swapped, mistyped (day) and estimated (1 January) dates,
  with or without a vowel typo in a name (it holds every pair with the same first name, stem and year);
* first name, surname stem, and day and month of birth: a mistyped year;
* first name, father's name and birth year: a surname typo (or suffix change) and a changed date together;
* surname, father's name and birth year: a first-name typo and a changed date together.
A rule whose true pairs all fall in the others is left out: each rule's pairs cost scoring time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from . import comparators as C

Record = dict[str, Any]


@dataclass(frozen=True)
class Level:
    label: str
    sql: str
    py: Callable[[Record, Record], bool]


@dataclass(frozen=True)
class Comparison:
    name: str
    columns: tuple[str, ...]  # the record fields it reads; null level when the first is missing on either side
    levels: tuple[Level, ...]  # strongest first; "else" (everything else) is implicit and last


def _eq(col: str) -> Level:
    return Level(f"{col} equal", f"{col}_l = {col}_r", lambda l, r: l[col] == r[col])


def _jw(col: str, at: float) -> Level:
    return Level(f"{col} Jaro-Winkler >= {at}", f"jaro_winkler_similarity({col}_l, {col}_r) >= {at}",
                 lambda l, r: C.jaro_winkler(l[col], r[col]) >= at)


def _dl1(col: str) -> Level:
    return Level(f"{col} one edit apart", f"damerau_levenshtein({col}_l, {col}_r) <= 1",
                 lambda l, r: C.damerau_levenshtein(l[col], r[col]) <= 1)


def _both(col: str) -> Callable[[Record, Record], bool]:
    return lambda l, r: l.get(col) is not None and r.get(col) is not None


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("fin", ("fin",), (_eq("fin"), _dl1("fin"))),
    Comparison("family", ("family_key", "family_stem", "family", "family_ph"), (
        _eq("family_key"),
        Level("surname stem equal, ending changed", "family_stem_l = family_stem_r",
              lambda l, r: l["family_stem"] == r["family_stem"]),
        _jw("family_key", 0.92),
        Level("surname phonetic equal", "family_ph_l = family_ph_r", lambda l, r: l["family_ph"] == r["family_ph"]),
        _jw("family_key", 0.8),
    )),
    Comparison("given", ("given_key", "given_ph"), (
        _eq("given_key"), _jw("given_key", 0.9),
        Level("given phonetic equal", "given_ph_l = given_ph_r", lambda l, r: l["given_ph"] == r["given_ph"]),
    )),
    Comparison("father", ("father_key",), (_eq("father_key"), _jw("father_key", 0.9))),
    Comparison("birth", ("birth",), (
        _eq("birth"),
        Level("day and month swapped", "substr(birth_l, 1, 4) = substr(birth_r, 1, 4) AND substr(birth_l, 6, 2) = "
              "substr(birth_r, 9, 2) AND substr(birth_l, 9, 2) = substr(birth_r, 6, 2)",
              lambda l, r: C.swapped_day_month(l["birth"], r["birth"])),
        _dl1("birth"),
        Level("1 January estimate, same year", "substr(birth_l, 1, 4) = substr(birth_r, 1, 4) AND "
              "(substr(birth_l, 6, 5) = '01-01' OR substr(birth_r, 6, 5) = '01-01')",
              lambda l, r: C.estimated_january(l["birth"], r["birth"])),
        Level("same year", "substr(birth_l, 1, 4) = substr(birth_r, 1, 4)", lambda l, r: l["birth"][:4] == r["birth"][:4]),
    )),
    Comparison("sex", ("sex",), (_eq("sex"),)),
    Comparison("district", ("district",), (_eq("district"),)),
)

BLOCKING_RULES: tuple[tuple[str, ...], ...] = (
    ("fin",),
    ("birth", "family_stem"),
    ("birth", "given_key"),
    ("given_ph", "family_ph", "birth_year"),
    ("given_key", "family_stem", "birth_month_day"),
    ("given_key", "father_key", "birth_year"),
    ("family_key", "father_key", "birth_year"),
)

# Grades are read on the evidence: the sum of the comparisons' weights, in bits, the prior left out. With the
# prior in (log2 of the chance that two records taken at random are one person), a threshold would move with the
# population's size (the prior falls by log2(n)): a rule chosen at 200,000 records would link less at 1 million.
# A pair is `certain` at or above AUTO_LINK (linked without review), `probable` between REVIEW and AUTO_LINK
# (a Task for a data steward), `possible` between POSSIBLE and REVIEW (offered by $match, never linked). Chosen
# on the dirty population, seed 1 (docs/mpi.md), and reported on other seeds and sizes.
AUTO_LINK = 26.0
REVIEW = 22.0
POSSIBLE = 18.0


def probability(weight: float) -> float:
    return 1.0 / (1.0 + 2.0 ** -weight)


def grade(evidence: float) -> str | None:
    """The grade of a pair from its evidence (match weight minus the prior)."""
    if evidence >= AUTO_LINK:
        return "certain"
    if evidence >= REVIEW:
        return "probable"
    if evidence >= POSSIBLE:
        return "possible"
    return None


@dataclass
class Weights:
    """log2 Bayes factors per comparison and level (index in `levels`; len(levels) is "else") and the prior."""

    prior: float  # log2 odds that two records taken at random are one person
    levels: dict[str, list[float]]

    def score(self, left: Record, right: Record) -> tuple[float, list[dict[str, Any]]]:
        """The pair's match weight and its evidence: per comparison, the level found and its weight."""
        total = self.prior
        evidence = []
        for comp in COMPARISONS:
            if not (_both(comp.columns[0])(left, right)):
                evidence.append({"comparison": comp.name, "level": "missing", "weight": 0.0})
                continue
            index = next((i for i, lv in enumerate(comp.levels) if lv.py(left, right)), len(comp.levels))
            w = self.levels[comp.name][index]
            total += w
            label = comp.levels[index].label if index < len(comp.levels) else "different"
            evidence.append({"comparison": comp.name, "level": label, "weight": round(w, 2)})
        return total, evidence

    def to_json(self) -> dict[str, Any]:
        return {"prior": self.prior, "levels": self.levels}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Weights":
        return cls(float(data["prior"]), {k: [float(x) for x in v] for k, v in data["levels"].items()})


def bayes(m: float, u: float) -> float:
    return math.log2(max(m, 1e-9) / max(u, 1e-9))


# Estimated by EM on the dirty population (`python bench/mpi.py --patients 200000 --seed 1`: 219,157 records,
# Splink 4.0.17 on DuckDB, 2 December 2026); the prior is that run's (it falls by log2(n) as the population grows).
DEFAULT_WEIGHTS = Weights(prior=-19.87, levels={
    "fin": [29.88, 23.37, -25.77],
    "family": [6.67, 2.08, 4.58, -0.13, -3.02, -10.70],
    "given": [6.84, 4.65, 2.11, -7.43],
    "father": [5.96, 0.37, -27.01],
    "birth": [14.68, 10.60, 4.49, 7.98, -3.92, -23.84],
    "sex": [1.00, -28.90],
    "district": [5.23, -1.60],
})
