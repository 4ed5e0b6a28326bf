"""What analytics adds to the HTTP application (api/plugins.py): `$viewdefinition-run` always, and the
/analytics routes with their refresh schedule when the server has an analytics folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..api.plugins import Contribution
from .run_operation import OPERATIONS


def contribution(services: Any, analytics_dir: Path | None = None, *, refresh_minutes: float | None = None,
                 identify: Callable | None = None, snapshots: bool = True) -> Contribution:
    if analytics_dir is None:
        return Contribution("analytics", operations=list(OPERATIONS))
    from starlette.routing import Mount

    from .web import Analytics
    analytics = Analytics(services, analytics_dir, refresh_minutes=refresh_minutes, identify=identify,
                          snapshots=snapshots)
    return Contribution("analytics", routes=[Mount("/analytics", app=analytics.app)], operations=list(OPERATIONS),
                        start=analytics.start, stop=analytics.stop)
