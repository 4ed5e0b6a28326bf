"""The demo population's laboratory workflow: every order has the laboratory's completed Task and a final
DiagnosticReport whose results are exactly the Observations based on the order, and all of it validates."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

import orjson

from healthtwin.fhir.validation import Validator
from healthtwin.population import generate


def test_every_order_has_its_task_and_its_report(tmp_path):
    generate(tmp_path, 120, 5, start_year=2022, end_date=dt.date(2024, 12, 31))
    read = lambda t: [orjson.loads(x) for x in (tmp_path / f"{t}.ndjson").read_bytes().splitlines()]  # noqa: E731
    orders = {r["id"]: r for r in read("ServiceRequest")}
    tasks, reports = read("Task"), read("DiagnosticReport")
    assert orders and len(tasks) == len(orders) == len(reports)
    by_order = defaultdict(set)
    for o in read("Observation"):
        for ref in o.get("basedOn") or []:
            by_order[ref["reference"]].add(f"Observation/{o['id']}")
    validator = Validator.default()
    for task in tasks:
        (ref,) = task["basedOn"]
        order = orders[ref["reference"].removeprefix("ServiceRequest/")]
        assert task["status"] == "completed" and task["owner"] == order["performer"][0]
        assert task["requester"] == order["requester"] and task["for"] == order["subject"]
        report_ref = task["output"][0]["valueReference"]["reference"]
        assert report_ref.startswith("DiagnosticReport/")
    for report in reports:
        (ref,) = report["basedOn"]
        assert {r["reference"] for r in report["result"]} == by_order[ref["reference"]]
        assert report["subject"] == orders[ref["reference"].removeprefix("ServiceRequest/")]["subject"]
    for res in tasks[:50] + reports[:50] + list(orders.values())[:50]:
        errors = [i for i in validator.validate(res) if i.severity in ("error", "fatal")]
        assert not errors, (res["id"], errors)
