"""What the patient summary adds to the HTTP application: Patient/{id}/$summary."""
from __future__ import annotations

from typing import Any

from ...api.plugins import Contribution
from .operation import OPERATIONS


def contribution(services: Any) -> Contribution:
    return Contribution("summary", operations=list(OPERATIONS))
