"""What the immunization registry adds to the HTTP application: `Patient/{id}/$immds-forecast` and
`Immunization/$evaluate` (operations.py)."""
from __future__ import annotations

from typing import Any

from ...api.plugins import Contribution
from .operations import OPERATIONS


def contribution(services: Any) -> Contribution:
    return Contribution("immunization", operations=list(OPERATIONS))
