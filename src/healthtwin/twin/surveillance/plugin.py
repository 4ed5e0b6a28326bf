"""What detection adds to the HTTP application: the weekly detection run (schedule.py) started and stopped
by the application's lifespan. Only a server with an analytics folder has it: the run reads the series."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...api.plugins import Contribution


def contribution(services: Any, analytics_dir: Path | None) -> Contribution | None:
    if analytics_dir is None:
        return None
    from .schedule import WeeklyDetection
    weekly = WeeklyDetection(Path(analytics_dir))
    return Contribution("twin.surveillance", start=weekly.start, stop=weekly.stop)
