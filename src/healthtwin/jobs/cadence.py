"""When a job is due: a cadence written as text, read back into the next time it runs (all times UTC).

    daily 02:00          every day at 02:00
    weekly mon 06:00     every Monday at 06:00 (mon tue wed thu fri sat sun)
    every 30m | every 6h every 30 minutes / 6 hours, counted from the previous run's end

Text, because the cadence is a column of the jobs table an operator edits (`healthtwin jobs set`)."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = r"([01]\d|2[0-3]):([0-5]\d)"
_DAILY = re.compile(rf"^daily {_CLOCK}$")
_WEEKLY = re.compile(rf"^weekly ({'|'.join(DAYS)}) {_CLOCK}$")
_EVERY = re.compile(r"^every ([1-9]\d{0,4})(m|h)$")


@dataclass(frozen=True)
class Cadence:
    text: str
    weekday: int | None = None  # 0 = Monday; None: every day
    hour: int = 0
    minute: int = 0
    interval: dt.timedelta | None = None  # set for "every ..."

    def next_after(self, now: dt.datetime) -> dt.datetime:
        """The first time strictly after `now` (aware) that the job is due."""
        now = now.astimezone(dt.timezone.utc)
        if self.interval is not None:
            return now + self.interval
        at = now.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        if self.weekday is not None:
            at += dt.timedelta(days=(self.weekday - at.weekday()) % 7)
        step = dt.timedelta(days=7 if self.weekday is not None else 1)
        return at if at > now else at + step


def parse(text: str) -> Cadence:
    t = " ".join(str(text).lower().split())
    if m := _DAILY.match(t):
        return Cadence(t, None, int(m[1]), int(m[2]))
    if m := _WEEKLY.match(t):
        return Cadence(t, DAYS.index(m[1]), int(m[2]), int(m[3]))
    if m := _EVERY.match(t):
        n = int(m[1])
        return Cadence(t, interval=dt.timedelta(minutes=n) if m[2] == "m" else dt.timedelta(hours=n))
    raise ValueError(f"cadence {text!r}: write 'daily HH:MM', 'weekly mon HH:MM' or 'every 30m' / 'every 6h' (UTC)")
