"""What the patient index adds to the HTTP application (api/plugins.py)."""
from __future__ import annotations

from typing import Any

from ..api.plugins import Contribution


def contribution(services: Any) -> Contribution:
    return Contribution("mpi")
