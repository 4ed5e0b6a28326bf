"""SQLite plans for searches that once read whole indexes per row. At a million resources these took from
seconds to hours:

* a sorted search read every index row of the sort parameter for each match (`pid IN (...)` drew SQLite to
  the covering (pid, value) index): Observation?code=…&_sort=-date, 334 s;
* a chain probed while another criterion drove collected every resource whose reference matched first
  (Observation?subject.gender=female&code=…, over 30 s);
* a chain as a join looped over the matching targets' row ids for every reference row
  (Observation?subject.gender=female, over 2 minutes);
* `_has` rebuilt its set for every row, correlated on the row's type (over 30 s);
* a search with no criterion that drives by row ids (`_id`, `:not`, `_lastUpdated`, `:missing`, `_content`)
  read every resource of every type in row-id order (0.3–1 s), the type index being kept out of the plan;
* `_include` started from every resource of the target type (all patients) rather than from the page's
  references.

The plans are checked, not timings (which would be flaky tests): no step run for each row (under a correlated
subquery) may range over a parameter's whole index (`(pid=?)` alone) or scan a table, no set may be rebuilt per
row, and no type-and-id lookup may loop over row ids."""
from __future__ import annotations

import re

import pytest

from healthtwin.api.services import Services
from healthtwin.store import search
from tests.conftest import make_store

PER_ROW_BAD = [re.compile(r"INDEX \w+ \(pid=\?\)$"), re.compile(r"^SCAN ")]
ANYWHERE_BAD = [re.compile(r"CORRELATED LIST SUBQUERY"), re.compile(r"\(type=\? AND id=\? AND rowid=\?\)"),
                re.compile(r"^SCAN r0$")]  # every resource of every type, for a search of one type


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plans")
    store = make_store("sqlite", folder)
    with store.transaction() as tx:
        for i in range(4):
            tx.update("Patient", f"p{i}", {"resourceType": "Patient", "id": f"p{i}",
                                          "gender": "female" if i % 2 else "male", "birthDate": f"19{80 + i}"})
            tx.create("Observation", {"resourceType": "Observation", "status": "final",
                                      "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                                      "subject": {"reference": f"Patient/p{i}"},
                                      "effectiveDateTime": f"2024-0{i + 1}-01",
                                      "valueQuantity": {"value": i, "unit": "%"}})
    yield store, Services.build(store, None, None, folder)
    store.close()


def plan_of(world, rtype: str, params: list[tuple[str, str]]) -> tuple[list[str], list]:
    store, services = world
    query = services.parser.parse([rtype], params)
    plans: list[str] = []
    query_store = store.query

    def execute(sql, args):  # every statement of the search, includes too
        rows = query_store("EXPLAIN QUERY PLAN " + sql, args)
        details = {node: detail for node, _, _, detail in rows}
        parents = {node: parent for node, parent, _, _ in rows}
        for node, _, _, detail in rows:
            ancestor, per_row = parents.get(node), False
            while ancestor:
                per_row = per_row or details.get(ancestor, "").startswith("CORRELATED")
                ancestor = parents.get(ancestor)
            plans.append(("per row: " if per_row else "") + detail)
        return query_store(sql, args)
    store.query = execute
    try:
        page = search.run_search(store, services.registry, query)
    finally:
        del store.query  # the method again
    return plans, page.matches


@pytest.mark.parametrize("sort", ["date", "-date", "status", "-subject", "-value-quantity"])
def test_sort_keys_are_read_by_row_id(world, sort):
    plans, matches = plan_of(world, "Observation", [("code", "http://loinc.org|4548-4"), ("_sort", sort)])
    assert len(matches) == 4
    subqueries = [p for p in plans if p.startswith("per row: SEARCH s ")]
    assert subqueries and all("(rid=?)" in p for p in subqueries), plans


@pytest.mark.parametrize("rtype,params,expected", [
    ("Observation", [("subject.gender", "female"), ("code", "http://loinc.org|4548-4")], 2),
    ("Observation", [("subject.gender", "female")], 2),
    ("Observation", [("subject:Patient.birthdate", "ge1982")], 2),
    ("Patient", [("_has:Observation:subject:code", "http://loinc.org|4548-4")], 4),
    ("Patient", [("_has:Observation:subject:value-quantity", "gt1"), ("gender", "female")], 1),
    ("Observation", [("code", "http://loinc.org|4548-4"), ("_sort", "-date")], 4),
    ("Patient", [("_id", "p1,p2")], 2),
    ("Observation", [("code:not", "http://loinc.org|1234-5")], 4),
    ("Observation", [("_lastUpdated", "gt2000-01-01")], 4),
    ("Observation", [("value-quantity:missing", "false")], 4),
    ("Observation", [("_content", "4548")], 4),
    ("Observation", [("code", "http://loinc.org|4548-4"), ("_include", "Observation:subject")], 4),
    ("Observation", [("code", "http://loinc.org|4548-4"), ("_include", "*")], 4),
])
def test_chains_has_and_sorts_never_read_whole_indexes_per_row(world, rtype, params, expected):
    plans, matches = plan_of(world, rtype, params)
    assert len(matches) == expected
    bad = [p for p in plans if any(pattern.search(p.removeprefix("per row: ")) for pattern in ANYWHERE_BAD)
           or p.startswith("per row: ") and any(pattern.search(p[9:]) for pattern in PER_ROW_BAD)]
    assert not bad, plans
    if any(k == "_include" for k, _ in params):  # the page's references by row id: not every patient, nor
        # every reference of the parameter
        assert not any(re.search(r"resources_type_rid \(type=\?\)|\(pid=\?\)$", p) for p in plans), plans
    if ("code", "http://loinc.org|4548-4") in params and any(k.startswith("subject.") for k, _ in params):
        assert any(p.startswith("per row: SEARCH x USING INDEX idx_reference_rid (rid=?") for p in plans), plans


@pytest.mark.parametrize("rtype,params", [("Patient", [("name:exact", "Aliyeva")]),
                                          ("Organization", [("name:exact", "Klinika")])])
def test_exact_strings_are_found_by_the_value_index(world, rtype, params):
    """Patient names are blind digests (docs/security.md), organisations' names are not: both by index."""
    plans, _ = plan_of(world, rtype, params)
    assert any("idx_string_value (pid=? AND value=?)" in p for p in plans), plans
