"""What the citizen's twin adds to the HTTP application: Patient/{id}/$twin."""
from __future__ import annotations

from typing import Any

from ...api.plugins import Contribution
from .operation import OPERATIONS


def contribution(services: Any) -> Contribution:
    return Contribution("citizen-twin", operations=list(OPERATIONS))
