"""The scheduled detection run over the twin: every weekly series, ranked and grouped signals, one FHIR
Communication per group routed to the district's epidemiologist.

Input is any iterable of weekly series with ``key`` ((), (region,) or (region, district)), ``syndrome``,
``interval`` ("week"), ``dates`` (first day of each week) and ``counts`` — what ``twin/series.py``'s
``counts(..., interval="week")`` returns; ``series_from_analytics`` reads them from there.

For the latest week (``weeks`` = how many recent weeks to look at) each series goes through the twin
detector (twin_detector.py). A signal is ranked by
    rank = -log10(p) * (1 + log10(1 + excess)) * novelty,
with excess = observed - expected and novelty 1 for a series that did not signal in the previous two
weeks, 0.5 for one that did (a continuing outbreak stays visible but yields to a new one). Signals of one
syndrome in one region and week form one group: the district with the strongest evidence leads it, the
others are listed, and one Communication is raised for it, addressed to the epidemiologist of every district
in the group (the lead's first), since each of them has cases to investigate. At most ``max_per_district`` groups per
district per week are raised; beyond that only those with p < ``override_p`` ("something is really
happening") pass, the rest are counted in the run's summary.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from ...security.access import SURVEILLANCE_ALERT_SYSTEM
from . import suppression, twin_detector

METHOD = ("twin NB p1/p2/p4 (harmonic baseline with Noufaily's reweighting; 1-, 2- and 4-week tail "
          "probabilities under one false-alarm budget)")


class WeeklySeries(Protocol):
    key: tuple[str, ...]
    syndrome: str
    interval: str
    dates: Sequence[dt.date]
    counts: Sequence[int]


@dataclass
class Signal:
    key: tuple[str, ...]
    syndrome: str
    week: dt.date
    observed: float
    expected: float
    pvalue: float
    novel: bool
    chart: dict[str, list[Any]]

    @property
    def excess(self) -> float:
        return max(0.0, self.observed - self.expected)

    @property
    def rank(self) -> float:
        p = max(self.pvalue, 1e-300)
        return -math.log10(p) * (1 + math.log10(1 + self.excess)) * (1.0 if self.novel else 0.5)


@dataclass
class Group:
    syndrome: str
    region: str
    week: dt.date
    members: list[Signal] = field(default_factory=list)

    @property
    def lead(self) -> Signal:
        return max(self.members, key=lambda s: s.rank)

    @property
    def district(self) -> str | None:
        lead = self.lead
        return lead.key[1] if len(lead.key) > 1 else None

    @property
    def districts(self) -> list[str | None]:
        """Every place of the group, the lead's first, each once (None: a regional or national series)."""
        lead = self.lead
        out: list[str | None] = []
        for m in [lead, *sorted((m for m in self.members if m is not lead), key=lambda m: -m.rank)]:
            d = m.key[1] if len(m.key) > 1 else None
            if d not in out:
                out.append(d)
        return out


@dataclass
class RunSummary:
    series: int
    signals: int
    groups: int
    raised: int
    held_back: int
    resources: list[dict[str, Any]]


def scan_series(s: WeeklySeries, weeks: int, alpha: float, chart_weeks: int = 52) -> list[Signal]:
    counts = np.asarray(s.counts, dtype=float)
    n = len(counts)
    look = weeks + 2  # two more weeks to judge novelty
    rng = np.arange(max(1, n - look + 1), n + 1)
    r = twin_detector.detect(counts, rng, alpha=alpha)
    if len(r.range) == 0:
        return []
    alarm_at = {int(i): bool(a) for i, a in zip(r.range, r.alarm)}
    out = []
    for j, idx in enumerate(r.range):
        if idx <= n - weeks or not r.alarm[j]:
            continue
        novel = not (alarm_at.get(int(idx) - 1) or alarm_at.get(int(idx) - 2))
        lo = max(0, idx - chart_weeks)
        exp_series = [None] * (idx - lo)
        exp_series[-1] = round(float(r.expected[j]), 3)
        out.append(Signal(key=tuple(s.key), syndrome=s.syndrome, week=s.dates[idx - 1], observed=float(counts[idx - 1]),
                          expected=float(r.expected[j]), pvalue=float(r.pvalue[j]), novel=novel,
                          chart={"weeks": [d.isoformat() for d in s.dates[lo:idx]],
                                 "observed": [int(c) for c in counts[lo:idx]], "expected": exp_series}))
    return out


def group_signals(signals: Iterable[Signal]) -> list[Group]:
    groups: dict[tuple[str, str, dt.date], Group] = {}
    for sig in signals:
        region = sig.key[0] if sig.key else "national"
        g = groups.setdefault((sig.syndrome, region, sig.week), Group(sig.syndrome, region, sig.week))
        g.members.append(sig)
    return sorted(groups.values(), key=lambda g: -g.lead.rank)


def alert_key(group: Group) -> str:
    """What identifies an alert across runs: syndrome, lead place and week (a re-run of the week finds it)."""
    lead = group.lead
    place = "/".join(lead.key) if lead.key else "national"
    return f"{group.syndrome}/{place}/{lead.week.isoformat()}"


def recipients_of(group: Group, recipient_for: Callable[[str | None, str], dict[str, Any] | None]
                  ) -> list[dict[str, Any]]:
    """The epidemiologist of each district of the group, the lead's first, each once."""
    out: list[dict[str, Any]] = []
    for district in group.districts:
        r = recipient_for(district, group.region)
        if r is not None and r not in out:
            out.append(r)
    return out


def communication(group: Group, recipient: dict[str, Any] | list[dict[str, Any]] | None, now: dt.datetime
                  ) -> dict[str, Any]:
    """The alert, its counts small-cell suppressed (suppression.py) since its readers are not clinicians;
    status in-progress until one of its epidemiologists acknowledges it (completed). ``recipient`` is one
    reference or the list of them (every district's epidemiologist)."""
    lead = group.lead
    place = "/".join(lead.key) if lead.key else "national"
    others = [m for m in group.members if m is not lead]
    text = (f"{group.syndrome}: {suppression.words(lead.observed)} cases in the week of {lead.week.isoformat()} "
            f"in {place}, "
            f"expected {lead.expected:.1f} (p = {lead.pvalue:.2g}, {METHOD}). "
            + ("New signal." if lead.novel else "Continuing signal.")
            + (f" Also signalling in the region: {', '.join('/'.join(m.key) for m in others)}." if others else ""))
    evidence = {"syndrome": group.syndrome, "week": lead.week.isoformat(), "method": METHOD,
                "rank": round(lead.rank, 3), "region": group.region, "district": group.district,
                "districts": [d for d in group.districts if d is not None],
                "suppression": f"counts 1-{suppression.THRESHOLD - 1} shown as '{suppression.SHOWN_BELOW}'",
                "signals": [{"place": list(m.key), "observed": suppression.count(m.observed),
                             "expected": round(m.expected, 1), "pvalue": m.pvalue, "novel": m.novel,
                             "chart": dict(m.chart, observed=suppression.counts(m.chart["observed"]),
                                           expected=[None if e is None else round(e, 1)
                                                     for e in m.chart["expected"]])}
                            for m in [lead, *others]]}
    res: dict[str, Any] = {
        "resourceType": "Communication", "id": str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                           f"surveillance/{group.syndrome}/{place}/{lead.week}")),
        "identifier": [{"system": SURVEILLANCE_ALERT_SYSTEM, "value": alert_key(group)}],
        "status": "in-progress",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category",
                                  "code": "alert"}]}],
        "priority": "urgent" if lead.pvalue < 1e-6 else "routine",
        "topic": {"text": f"Statistical signal: {group.syndrome} in {place}"},
        "sent": now.isoformat(timespec="seconds"),
        "payload": [{"contentString": text},
                    {"contentAttachment": {"contentType": "application/json", "title": "evidence and chart data",
                                           "data": base64.b64encode(json.dumps(evidence).encode()).decode()}}],
    }
    addressed = [recipient] if isinstance(recipient, dict) else list(recipient or [])
    if addressed:
        res["recipient"] = addressed
    return res


def run(series: Iterable[WeeklySeries], recipient_for: Callable[[str | None, str], dict[str, Any] | None],
        weeks: int = 1, alpha: float = twin_detector.DEFAULT_ALPHA, max_per_district: int = 3,
        override_p: float = 1e-6, now: dt.datetime | None = None) -> RunSummary:
    """Scan, rank, group and raise. ``recipient_for(district, region)`` gives the epidemiologist's
    reference (e.g. {"reference": "PractitionerRole/..."}) or None; a group's alert goes to the
    epidemiologist of each of its districts."""
    now = now or dt.datetime.now(dt.timezone.utc)
    n_series = 0
    signals: list[Signal] = []
    for s in series:
        if s.interval != "week":
            raise ValueError(f"the detection run needs weekly series, not {s.interval!r} ({s.syndrome} {s.key})")
        n_series += 1
        signals += scan_series(s, weeks, alpha)
    groups = group_signals(signals)
    raised: list[dict[str, Any]] = []
    per_district: dict[tuple[str, dt.date], int] = {}
    held = 0
    for g in groups:
        slot = (g.district or g.region, g.week)
        used = per_district.get(slot, 0)
        if used >= max_per_district and g.lead.pvalue >= override_p:
            held += 1
            continue
        per_district[slot] = used + 1
        raised.append(communication(g, recipients_of(g, recipient_for), now))
    return RunSummary(series=n_series, signals=len(signals), groups=len(groups), raised=len(raised),
                      held_back=held, resources=raised)


def district_epidemiologist(district: str | None, region: str) -> dict[str, Any]:
    """The default routing: a logical reference (by identifier) to the place's epidemiologist, which the
    ministry's directory resolves; a deployment passes its own ``recipient_for`` naming PractitionerRoles."""
    place = district or region
    return {"identifier": {"system": "https://health.gov.az/fhir/sid/district-epidemiologist", "value": place},
            "display": f"Epidemiologist, {place}"}


def series_from_analytics(analytics_dir: Any, syndromes: Sequence[str] | None = None,
                          level: str = "district") -> list[WeeklySeries]:
    """The twin's weekly series per syndrome and place, from twin/series.py (a folder or a connection)."""
    try:
        from .. import series as twin_series  # type: ignore[attr-defined]
    except ImportError as exc:  # pragma: no cover - until the series module is installed
        raise ValueError("the twin's series module (twin/series.py) is not available") from exc
    names = list(syndromes) if syndromes else [s["syndrome"] for s in twin_series.syndromes(analytics_dir)]
    out: list[WeeklySeries] = []
    for name in names:
        out += twin_series.counts(analytics_dir, name, level=level, interval="week")
    return out
