"""Which schedule the live registry keeps current: `HEALTHTWIN_IMMUNIZATION_SCHEDULE` = aze (the default, the
national calendar), cdc or who. It decides the recommendations the write rule and `healthtwin immunization
refresh` write (`imr-<schedule>-<patient>`, tagged with the schedule), so the due and overdue lists, the
operations' default and the registry's coverage follow it.

Read from the environment once per process (the server, and each refresh worker, which inherits it): every
process that writes recommendations must see the same value. An unknown value stops the server or the command
with a message (`checked`), never a silent fall-back to another calendar."""
from __future__ import annotations

import os

from . import rules

ENV = "HEALTHTWIN_IMMUNIZATION_SCHEDULE"


def _text() -> str:
    return os.environ.get(ENV, "").strip().lower()


def key() -> str:
    """The configured schedule; the default when unset. An unknown value also gives the default here (module
    constants are made from it at import), and `checked` refuses it where the process starts."""
    text = _text()
    return text if text in rules.SCHEDULES else rules.DEFAULT_SCHEDULE


def checked() -> str:
    """The configured schedule, or ValueError naming the allowed ones."""
    text = _text()
    if text and text not in rules.SCHEDULES:
        raise ValueError(f"{ENV} is one of {', '.join(sorted(rules.SCHEDULES))}, not {text!r}")
    return key()
