"""What the registries add to the HTTP application (api/plugins.py): one contribution per registry."""
from __future__ import annotations

from typing import Any, Callable

from ..api.plugins import Contribution


def contributions(services: Any, identify: Callable | None = None) -> list[Contribution]:
    """`identify(request) -> Caller`: the FHIR router's authentication, for routes outside /fhir (CDS Hooks)."""
    from .prescribing.plugin import contribution as prescribing
    from .laboratory.plugin import contribution as laboratory
    from .summary.plugin import contribution as summary
    from .citizen_twin.plugin import contribution as citizen_twin
    from .immunization.plugin import contribution as immunization
    found: list[Contribution] = [prescribing(services, identify), laboratory(services), summary(services),
                                 citizen_twin(services), immunization(services)]
    return found
