"""What the scenarios add to the HTTP application: `POST /analytics/scenarios`, `GET /analytics/scenarios[/{id}]`
(web.py), with the job thread started and stopped by the application's lifespan. Only a server with an
analytics folder has them: the runs read the analytics tables and are recorded beside them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ...api.plugins import Contribution


def contribution(services: Any, analytics_dir: Path | None, identify: Callable | None = None) -> Contribution | None:
    if analytics_dir is None:
        return None
    from .web import Scenarios
    scenarios = Scenarios(services, analytics_dir, identify=identify)
    return Contribution("twin.scenarios", routes=scenarios.routes, start=scenarios.start, stop=scenarios.stop)
