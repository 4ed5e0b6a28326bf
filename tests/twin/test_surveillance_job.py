"""The scheduled detection run on injected weekly series: a planted outbreak becomes one Communication
routed to its district's epidemiologist with the evidence; quiet series stay (nearly) quiet; the cap
per district holds unless the evidence is overwhelming."""
from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass

import numpy as np

from healthtwin.twin.surveillance import job
from healthtwin.twin.surveillance.injector import Scenario, inject


@dataclass
class S:
    key: tuple[str, ...]
    syndrome: str
    interval: str
    dates: list[dt.date]
    counts: list[int]


START = dt.date(2019, 12, 30)


def _series(key, syndrome, counts):
    return S(key, syndrome, "week", [START + dt.timedelta(weeks=i) for i in range(len(counts))], [int(c) for c in counts])


def _district_series(seed, extra_last_week=0):
    inj = inject(Scenario("mid", theta=2.0, gamma1=(0.4,), gamma2=(0.3,), phi=1.5), seed, k=0.0, years=6,
                 past_outbreaks=0)
    c = inj.counts.copy()
    c[-1] += extra_last_week
    return c


def _recipient(district, region):
    return {"reference": f"PractitionerRole/epi-{district or region}"}


def test_a_planted_outbreak_is_raised_to_its_district():
    series = [_series(("north", f"d{i}"), "ili", _district_series(i, 60 if i == 3 else 0)) for i in range(12)]
    out = job.run(series, _recipient, now=dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc))
    assert out.series == 12
    leads = [r for r in out.resources if "d3" in r["topic"]["text"]]
    assert len(leads) == 1
    comm = leads[0]
    assert comm["resourceType"] == "Communication"
    assert comm["recipient"] == [{"reference": "PractitionerRole/epi-d3"}]
    evidence = json.loads(base64.b64decode(comm["payload"][1]["contentAttachment"]["data"]))
    lead = evidence["signals"][0]
    assert lead["place"] == ["north", "d3"] and lead["observed"] > lead["expected"] + 40
    assert len(lead["chart"]["observed"]) == 52 and lead["chart"]["observed"][-1] == lead["observed"]
    assert out.raised <= 2  # the outbreak, and at most one chance signal among eleven quiet series


def test_a_signal_spanning_districts_is_routed_to_every_districts_epidemiologist():
    # one syndrome signalling in three districts of one region (d5 the strongest) is one alert for all three
    extra = {2: 25, 5: 90, 7: 40}
    series = [_series(("north", f"d{i}"), "ili", _district_series(i, extra.get(i, 0))) for i in range(9)]
    out = job.run(series, _recipient, now=dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc))
    grouped = [r for r in out.resources if "d5" in r["topic"]["text"]]
    assert len(grouped) == 1
    comm = grouped[0]
    evidence = json.loads(base64.b64decode(comm["payload"][1]["contentAttachment"]["data"]))
    places = [s["place"][1] for s in evidence["signals"]]
    assert places[0] == "d5" and {"d2", "d7"} <= set(places)
    refs = [r["reference"] for r in comm["recipient"]]
    assert refs[0] == "PractitionerRole/epi-d5"  # the lead's epidemiologist first
    assert sorted(refs) == sorted({f"PractitionerRole/epi-{p}" for p in places})  # each involved district once
    assert evidence["districts"] == [r.removeprefix("PractitionerRole/epi-") for r in refs]
    # a district without an epidemiologist is left out, the others still receive it
    partial = job.run(series, lambda d, r: None if d == "d7" else _recipient(d, r))
    comm = next(r for r in partial.resources if "d5" in r["topic"]["text"])
    assert "PractitionerRole/epi-d7" not in [r["reference"] for r in comm["recipient"]]
    assert "PractitionerRole/epi-d2" in [r["reference"] for r in comm["recipient"]]


def test_the_cap_per_district_holds_unless_the_evidence_is_overwhelming():
    # six syndromes in one district, all mildly raised: at most three are raised, the rest held back
    quiet = [_series(("north", "d1"), f"s{j}", _district_series(100 + j, 14)) for j in range(6)]
    out = job.run(quiet, _recipient, max_per_district=3, override_p=1e-12)
    assert out.raised <= 3
    assert out.raised + out.held_back == out.groups
    loud = [_series(("north", "d1"), f"s{j}", _district_series(200 + j, 200)) for j in range(6)]
    out = job.run(loud, _recipient, max_per_district=3, override_p=1e-6)
    assert out.raised == 6 and out.held_back == 0


def test_daily_series_are_refused():
    s = _series(("north", "d1"), "ili", np.ones(400))
    s.interval = "day"
    try:
        job.run([s], _recipient)
    except ValueError as exc:
        assert "weekly" in str(exc)
    else:
        raise AssertionError("a daily series was accepted")


def test_the_communications_are_valid_fhir():
    from healthtwin.fhir.validation import Validator
    series = [_series(("north", "d3"), "ili", _district_series(3, 60))]
    out = job.run(series, job.district_epidemiologist)
    assert out.raised == 1
    issues = [i for i in Validator().validate(out.resources[0]) if i.severity in ("error", "fatal")]
    assert issues == []


def test_a_scheduled_run_writes_its_alerts_beside_the_analytics(tmp_path, monkeypatch):
    from healthtwin.twin import series as twin_series
    from healthtwin.twin.surveillance import schedule
    planted = [_series(("north", f"d{i}"), "ili", _district_series(i, 60 if i == 3 else 0)) for i in range(4)]
    monkeypatch.setattr(twin_series, "open_analytics", lambda folder: _Closing())
    monkeypatch.setattr(job, "series_from_analytics", lambda con, syndromes, level: planted)
    record = schedule.run_once(tmp_path, dt.datetime(2026, 1, 5, 6, tzinfo=dt.timezone.utc))
    assert record["series"] == 4 and record["raised"] >= 1
    lines = (tmp_path / "surveillance" / "2026-01-05.ndjson").read_text().splitlines()
    assert len(lines) == record["raised"]
    assert any("d3" in json.loads(line)["topic"]["text"] for line in lines)
    assert json.loads((tmp_path / "surveillance" / "2026-01-05.json").read_text())["raised"] == record["raised"]


class _Closing:
    def close(self):
        pass
