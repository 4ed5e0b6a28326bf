"""What the immunization registry adds to the HTTP application: `Patient/{id}/$immds-forecast` and
`Immunization/$evaluate` (operations.py), and the write rules that keep each patient's
ImmunizationRecommendation current (live.py); it registers the due lists' SearchParameters (due.py)."""
from __future__ import annotations

from typing import Any

from ...api.plugins import Contribution
from . import due, live_schedule
from .live import RULES
from .operations import OPERATIONS


def contribution(services: Any) -> Contribution:
    """A bad HEALTHTWIN_IMMUNIZATION_SCHEDULE stops the server with a message (live_schedule.py)."""
    live_schedule.checked()
    due.register(services.registry)
    return Contribution("immunization", operations=list(OPERATIONS), write_rules=list(RULES))
