"""What detection adds to the HTTP application: `GET /analytics/alerts` and
`POST /analytics/alerts/{id}/acknowledge` over the alerts stored in the FHIR store (web.py). The weekly run that
stores them (schedule.py) is the `detection` job of the platform's schedule (jobs/)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ...api.plugins import Contribution


def contribution(services: Any, analytics_dir: Path | None, identify: Callable | None = None) -> Contribution:
    from .web import Alerts
    return Contribution("twin.surveillance", routes=Alerts(services, identify=identify).routes)
