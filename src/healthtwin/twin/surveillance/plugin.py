"""What detection adds to the HTTP application: `GET /analytics/alerts` and
`POST /analytics/alerts/{id}/acknowledge` over the alerts stored in the FHIR store (web.py), and, on a server
with an analytics folder, the weekly detection run (schedule.py) that reads its series and stores the alerts,
started and stopped by the application's lifespan."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ...api.plugins import Contribution


def contribution(services: Any, analytics_dir: Path | None, identify: Callable | None = None) -> Contribution:
    from .web import Alerts
    routes = Alerts(services, identify=identify).routes
    if analytics_dir is None:
        return Contribution("twin.surveillance", routes=routes)
    from .schedule import WeeklyDetection
    weekly = WeeklyDetection(Path(analytics_dir), services=services)
    return Contribution("twin.surveillance", routes=routes, start=weekly.start, stop=weekly.stop)
