"""What the twin adds to the HTTP application (api/plugins.py): one contribution per part."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..api.plugins import Contribution


def contributions(services: Any, analytics_dir: Path | None = None,
                  identify: Callable | None = None) -> list[Contribution]:
    """`identify`: how the FHIR API identifies a caller (its bearer token), so the twin's routes authorize as
    /analytics does."""
    from .forecasting.plugin import contribution as forecasting
    from .scenarios.plugin import contribution as scenarios
    from .surveillance.plugin import contribution as surveillance
    found: list[Contribution] = []
    for part in (scenarios(services, analytics_dir, identify), surveillance(services, analytics_dir, identify),
                 forecasting(services, analytics_dir, identify)):
        if part is not None:
            found.append(part)
    return found
