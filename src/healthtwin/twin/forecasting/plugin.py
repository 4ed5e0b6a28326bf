"""What forecasting adds to the HTTP application: `GET /analytics/forecasts` (web.py). Only a server with an
analytics folder has it: the forecasts are fitted on the analytics tables' weekly series."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ...api.plugins import Contribution


def contribution(services: Any, analytics_dir: Path | None, identify: Callable | None = None) -> Contribution | None:
    if analytics_dir is None:
        return None
    from .web import Forecasts
    return Contribution("twin.forecasting", routes=Forecasts(services, analytics_dir, identify=identify).routes)
