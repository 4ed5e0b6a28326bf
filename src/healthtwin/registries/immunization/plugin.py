"""What the immunization registry adds to the HTTP application: `Patient/{id}/$immds-forecast` and
`Immunization/$evaluate` (operations.py), and the write rules that keep each patient's
ImmunizationRecommendation current (live.py); it registers the due lists' SearchParameters (due.py)."""
from __future__ import annotations

from typing import Any

from ...api.plugins import Contribution
from . import due
from .live import RULES
from .operations import OPERATIONS


def contribution(services: Any) -> Contribution:
    due.register(services.registry)
    return Contribution("immunization", operations=list(OPERATIONS), write_rules=list(RULES))
