"""How long a prescription may be dispensed: its `dispenseRequest.validityPeriod`, or else a default counted
from its `authoredOn`.

Without a default, a prescription that states no validity would be dispensable forever. The default is
`DEFAULT_DAYS` (30 days) from `authoredOn`, set by HEALTHTWIN_PRESCRIPTION_VALIDITY_DAYS (a whole number of
days; `none` for no default). Why 30: ordinary prescriptions elsewhere are valid about a month (Germany's
statutory-insurance prescription 28 days; the Russian Federation's form 107-1/u 60 days, 15 for form
148-1/u-88); a prescriber who means longer (a chronic patient's repeats) states a `validityPeriod`, which always
wins. A prescription with neither `validityPeriod.end` nor `authoredOn` has no end.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from ...fhir.dates import parse_range

DEFAULT_DAYS = 30
ENV = "HEALTHTWIN_PRESCRIPTION_VALIDITY_DAYS"


def default_days_from_env() -> int | None:
    """The default validity in days (None: no default); a bad value stops the server with a clear message."""
    text = os.environ.get(ENV, "").strip().lower()
    if not text:
        return DEFAULT_DAYS
    if text in ("none", "off"):
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{ENV} is a whole number of days (at least 1) or 'none', not {text!r}")
    return int(text)


@dataclass(frozen=True)
class Window:
    start: float | None  # epoch seconds; None: no start
    end: float | None  # epoch seconds, exclusive; None: no end
    start_text: str = ""
    end_text: str = ""
    by_default: bool = False  # the end is the default validity, not the prescription's own


def window(request: dict[str, Any], default_days: int | None) -> Window:
    """The period the prescription may be dispensed in. A malformed stored date counts as absent (it was
    refused at its write)."""
    period = (request.get("dispenseRequest") or {}).get("validityPeriod") or {}
    start = end = None
    start_text = end_text = ""
    try:
        if isinstance(period.get("start"), str):
            start, start_text = parse_range(period["start"])[0], period["start"]
    except ValueError:
        pass
    try:
        if isinstance(period.get("end"), str):
            end, end_text = parse_range(period["end"])[1], period["end"]
    except ValueError:
        pass
    if end is not None or default_days is None or not isinstance(request.get("authoredOn"), str):
        return Window(start, end, start_text, end_text)
    try:
        authored = parse_range(request["authoredOn"])[0]
    except ValueError:
        return Window(start, end, start_text, end_text)
    end = authored + default_days * 86400
    day = dt.datetime.fromtimestamp(end, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Window(start, end, start_text, day, by_default=True)
