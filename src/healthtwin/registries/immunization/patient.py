"""What the engine knows of a patient: birth, sex, the doses given, the CDSi observations, the assessment date."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

VALID = "Valid"
NOT_VALID = "Not Valid"
EXTRANEOUS = "Extraneous"
SUBSTANDARD = "Sub-standard"

# Series (forecast) statuses, spelled as in the Logic Specification.
NOT_COMPLETE = "Not Complete"
COMPLETE = "Complete"
AGED_OUT = "Aged Out"
CONTRAINDICATED = "Contraindicated"
IMMUNE = "Immune"
NOT_RECOMMENDED = "Not Recommended"


@dataclass(frozen=True)
class Dose:
    """One vaccine dose administered: an Immunization (id, date, CVX, MVX); sub-standard if the record says
    it was sub-potent or given after the lot's expiry."""
    id: str
    given: date
    cvx: str
    mvx: str | None = None
    substandard: bool = False

    def __post_init__(self) -> None:
        # CVX codes are compared as the rule files store them: without leading zeros ("03" is "3").
        object.__setattr__(self, "cvx", self.cvx.strip().lstrip("0") or "0")


@dataclass(frozen=True)
class Observation:
    code: str  # CDSi observation code ("042": smokes cigarettes)
    start: date | None = None
    end: date | None = None


@dataclass
class Patient:
    birth: date
    gender: str  # "Female", "Male" or "Unknown"
    assessment: date
    doses: list[Dose] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.doses.sort(key=lambda d: (d.given, d.id))
        self.index_doses()
        self.codes = {o.code for o in self.observations
                      if (o.start is None or o.start <= self.assessment)
                      and (o.end is None or o.end >= self.assessment)}

    def index_doses(self) -> None:
        """The doses by CVX, in date order (the live-virus checks look up the earlier doses of one vaccine);
        engine.assess indexes again, so a list changed after construction is still seen whole."""
        by_cvx: dict[str, list[Dose]] = {}
        for dose in self.doses:
            by_cvx.setdefault(dose.cvx, []).append(dose)
        self.by_cvx = by_cvx
