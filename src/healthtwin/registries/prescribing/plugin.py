"""What e-prescription and dispensing add to the HTTP application: the write rules on MedicationRequest and
MedicationDispense (prescriptions.py, dispensing.py) and the CDS Hooks service (cds_hooks.py, /cds-services)."""
from __future__ import annotations

from typing import Any, Callable

from ...api.plugins import Contribution
from . import dispensing, prescriptions, validity


def contribution(services: Any, identify: Callable | None = None) -> Contribution:
    """The default validity of a prescription that states none comes from HEALTHTWIN_PRESCRIPTION_VALIDITY_DAYS
    (validity.py)."""
    days = validity.default_days_from_env()
    from .cds_hooks import routes
    return Contribution("prescribing", routes=routes(services, identify),
                        write_rules=[prescriptions.RULE, dispensing.rule(days)])
