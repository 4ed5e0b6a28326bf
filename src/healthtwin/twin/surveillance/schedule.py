"""One detection run over the twin: every weekly district series of every group through job.run, the raised
Communications and the run's summary written beside the analytics database. It is the `detection` job of the
platform's schedule (jobs/catalogue.py: by default on Monday at 06:00 UTC, after the weekend's refresh):

    <analytics>/surveillance/<YYYY-MM-DD>.ndjson   the Communications of that run, one per line
    <analytics>/surveillance/<YYYY-MM-DD>.json     its summary (series, signals, groups, raised, held back)

Inside a server (`services` given) the Communications are also stored in its FHIR store, addressed to each
district's epidemiologist, in one transaction per run (alerts.py: a re-run of the week duplicates nothing);
`GET /analytics/alerts` lists them (web.py). `healthtwin surveillance scan` runs the detection from the
command line.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from . import job


def run_once(analytics_dir: Path, now: dt.datetime | None = None, services: Any = None) -> dict:
    now = now or dt.datetime.now(dt.timezone.utc)
    from ..series import open_analytics
    try:
        con = open_analytics(analytics_dir)
    except Exception as exc:  # no database yet
        raise ValueError(f"no analytics database in {analytics_dir}: {exc}") from None
    try:
        series = job.series_from_analytics(con, None, level="district")
    finally:
        con.close()
    recipient_for = job.district_epidemiologist
    if services is not None:
        from .alerts import recipients
        recipient_for = recipients(services.store, services.registry)
    summary = job.run(series, recipient_for, now=now)
    out = Path(analytics_dir) / "surveillance"
    out.mkdir(parents=True, exist_ok=True)
    stem = now.date().isoformat()
    tmp = out / f".{stem}.ndjson"
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in summary.resources))
    tmp.replace(out / f"{stem}.ndjson")
    record = {"ran_at": now.isoformat(timespec="seconds"), "series": summary.series, "signals": summary.signals,
              "groups": summary.groups, "raised": summary.raised, "held_back": summary.held_back}
    if services is not None:
        from .alerts import store_alerts
        stored = store_alerts(services.store, summary.resources)
        record["stored"] = vars(stored)
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1))
    return record
