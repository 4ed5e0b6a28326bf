"""What forecasting adds to the HTTP application: `GET /analytics/forecasts` (web.py), and the thread that fits
the dashboard's forecasts ahead of its visitors, started and stopped by the application's lifespan. Only a
server with an analytics folder has them: the forecasts are fitted on the analytics tables' weekly series."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ...api.plugins import Contribution


def contribution(services: Any, analytics_dir: Path | None, identify: Callable | None = None) -> Contribution | None:
    if analytics_dir is None:
        return None
    from .web import WARM, Forecasts
    forecasts = Forecasts(services, analytics_dir, identify=identify, warm=WARM)
    return Contribution("twin.forecasting", routes=forecasts.routes, start=forecasts.start, stop=forecasts.stop)
