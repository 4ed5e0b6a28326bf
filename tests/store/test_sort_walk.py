"""A search sorted by one date, when broad, walks the date's index in sort order (store/search.py,
`_walk_sort`) instead of keying every match. Its pages must be exactly the general plan's: the same resources in
the same order (the key, then row id among ties), whatever the page, the direction, the criteria, periods whose
end orders differently from their start, and resources without the date, which sort last."""
from __future__ import annotations

import pytest

from healthtwin.api.services import Services
from healthtwin.store import search
from tests.conftest import make_store

LOINC = "http://loinc.org"


def _observation(i: int) -> dict:
    obs = {"resourceType": "Observation", "id": f"o{i:03d}", "status": "final",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory" if i % 3 else "vital-signs"}]}],
           "code": {"coding": [{"system": LOINC, "code": "4548-4" if i % 4 else "2345-7"}]},
           "subject": {"reference": f"Patient/p{i % 5}"}}
    if i % 11 == 0:
        pass  # no date at all: sorts last in both directions
    elif i % 7 == 0:  # a period: its end (the descending key) orders otherwise than its start
        obs["effectivePeriod"] = {"start": f"20{10 + i % 9:02d}-01-01", "end": f"20{24 - i % 13:02d}-06-30"}
    else:  # many ties: 23 distinct days among ~140 observations
        obs["effectiveDateTime"] = f"2020-0{1 + i % 9}-{10 + i % 3}"
    return obs


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("walk")
    store = make_store(request.param, folder)
    with store.transaction() as tx:
        for i in range(5):
            tx.update("Patient", f"p{i}", {"resourceType": "Patient", "id": f"p{i}", "gender": "female"})
        for i in range(160):
            obs = _observation(i)
            tx.update("Observation", obs["id"], obs)
    for k in range(12):  # later versions of some, in transactions of their own: distinct _lastUpdated stamps,
        with store.transaction() as tx:  # and ties within each
            for i in range(k, 160, 13):
                obs = {**_observation(i), "note": [{"text": f"round {k}"}]}
                tx.update("Observation", obs["id"], obs)
    with store.transaction() as tx:
        for i in range(60):  # one to three targets each: several index rows per resource, keyed by MIN or MAX
            tx.update("Goal", f"g{i:02d}", {
                "resourceType": "Goal", "id": f"g{i:02d}", "lifecycleStatus": "active",
                "description": {"text": "target"}, "subject": {"reference": f"Patient/p{i % 5}"},
                "target": [{"dueDate": f"2025-0{1 + (i * k) % 9}-0{1 + k}"} for k in range(1, 2 + i % 3)]})
    yield store, Services.build(store, None, None, folder)
    store.close()


def _search(world, params: list[tuple[str, str]], walk: bool, monkeypatch,
            rtype: str = "Observation") -> tuple[list[str], list[str]]:
    """(the page's ids, the statements run), with the walk allowed for any search it takes, or switched off."""
    store, services = world
    monkeypatch.setattr(search, "WALK_MIN_MATCHES", 1)
    monkeypatch.setattr(search, "SORT_WALK_COST", 0)
    monkeypatch.setattr(search, "RID_WALK_COST", 0)
    if not walk:
        monkeypatch.setattr(search, "_walk_sort", lambda *args: None)
        monkeypatch.setattr(search, "_walk_rids", lambda *args: None)
    statements: list[str] = []

    def execute(sql, args):
        statements.append(sql)
        return store.query(sql, args)
    page = search.run_search(store, services.registry, services.parser.parse([rtype], params), execute)
    monkeypatch.undo()
    return [m.id for m in page.matches], statements


def _walked(statements: list[str]) -> bool:
    return any("FROM idx_date s WHERE s.pid" in s or "FROM resources s WHERE s.type" in s for s in statements)


def _walked_by_rid(statements: list[str]) -> bool:
    return any("FROM resources s WHERE s.type" in s and "ORDER BY s.type, s.rid LIMIT" in s for s in statements)


@pytest.mark.parametrize("sort", ["-date", "date"])
@pytest.mark.parametrize("count,offset", [(1, 0), (5, 0), (7, 3), (20, 40), (50, 0)])
@pytest.mark.parametrize("criteria", [[], [("code", f"{LOINC}|4548-4")], [("category", "laboratory")],
                                      [("code", "4548-4"), ("status", "final")]])
def test_the_walk_pages_as_the_general_plan(world, monkeypatch, sort, count, offset, criteria):
    params = [*criteria, ("_sort", sort), ("_count", str(count)), ("_offset", str(offset))]
    walked, statements = _search(world, params, True, monkeypatch)
    general, _ = _search(world, params, False, monkeypatch)
    assert walked == general and walked
    assert _walked(statements)


@pytest.mark.parametrize("sort", ["-_lastUpdated", "_lastUpdated"])
@pytest.mark.parametrize("count,offset", [(1, 0), (6, 4), (20, 30)])
@pytest.mark.parametrize("criteria", [[], [("code", f"{LOINC}|4548-4")], [("_lastUpdated", None),
                                                                          ("category", "laboratory")]])
def test_the_walk_by_last_updated_pages_as_the_general_plan(world, monkeypatch, sort, count, offset, criteria):
    # A criterion on the key itself selects the walk's own end: newer than a date for newest first.
    aligned = "gt2000-01-01" if sort.startswith("-") else "lt2100-01-01"
    criteria = [(k, aligned if v is None else v) for k, v in criteria]
    params = [*criteria, ("_sort", sort), ("_count", str(count)), ("_offset", str(offset))]
    walked, statements = _search(world, params, True, monkeypatch)
    general, _ = _search(world, params, False, monkeypatch)
    assert walked == general and len(walked) == count and _walked(statements)


@pytest.mark.parametrize("sort", ["-target-date", "target-date"])
@pytest.mark.parametrize("count,offset", [(1, 0), (4, 2), (9, 9), (30, 0)])
def test_resources_with_several_dates_are_keyed_by_their_latest_or_earliest(world, monkeypatch, sort, count, offset):
    params = [("_sort", sort), ("_count", str(count)), ("_offset", str(offset))]
    walked, statements = _search(world, params, True, monkeypatch, "Goal")
    general, _ = _search(world, params, False, monkeypatch, "Goal")
    assert walked == general and len(set(walked)) == len(walked) == count and _walked(statements)


def test_a_page_reaching_the_undated_resources_is_the_general_plans(world, monkeypatch):
    """The walk ends at the index's last row; the resources without a date come after, from the general plan."""
    params = [("_sort", "-date"), ("_count", "50"), ("_offset", "130")]
    walked, statements = _search(world, params, True, monkeypatch)
    general, _ = _search(world, params, False, monkeypatch)
    assert walked == general and len(general) == 30 and _walked(statements)
    assert {"o000", "o011", "o154"} <= set(walked)  # undated: last


@pytest.mark.parametrize("params", [
    [("patient", "p1"), ("_sort", "-date")],  # one patient's: narrow by nature
    [("code", f"{LOINC}|4548-4"), ("date", "lt2020-05"), ("_sort", "-date")],  # matches far down the walk
    [("code", f"{LOINC}|4548-4"), ("_sort", "-date,status")],  # two keys
])
def test_narrow_or_misaligned_searches_keep_the_general_plan(world, monkeypatch, params):
    walked, statements = _search(world, params, True, monkeypatch)
    general, _ = _search(world, params, False, monkeypatch)
    assert walked == general and walked and not _walked(statements)


def test_a_rare_code_is_not_walked_at_the_default_threshold(world):
    store, services = world
    statements: list[str] = []

    def execute(sql, args):
        statements.append(sql)
        return store.query(sql, args)
    query = services.parser.parse(["Observation"], [("code", f"{LOINC}|2345-7"), ("_sort", "-date")])
    page = search.run_search(store, services.registry, query, execute)
    assert len(page.matches) == 40 and not _walked(statements)


def test_sqlite_walks_the_date_index_in_order(world, monkeypatch):
    store, _ = world
    if store.dialect != "sqlite":
        pytest.skip("SQLite's plan; PostgreSQL's is chosen by cost")
    for sort, index in (("-date", "idx_date_hi"), ("date", "idx_date_range")):
        _, statements = _search(world, [("code", f"{LOINC}|4548-4"), ("_sort", sort)], True, monkeypatch)
        walk = next(s for s in statements if "FROM idx_date s WHERE s.pid" in s)
        args = _args_of(world, walk, sort)
        plan = [r[-1] for r in store.query("EXPLAIN QUERY PLAN " + walk, args)]
        assert any(f"COVERING INDEX {index} (pid=?" in p for p in plan), plan
        assert not any(p.startswith("SCAN r0") or "TEMP B-TREE" in p for p in plan), plan


def _args_of(world, sql: str, sort: str) -> list:
    """Arguments for one walk statement, captured by running the search again."""
    store, services = world
    captured: dict[str, list] = {}

    def execute(text, args):
        captured.setdefault(text, list(args))
        return store.query(text, args)
    old_min, old_cost = search.WALK_MIN_MATCHES, search.SORT_WALK_COST
    search.WALK_MIN_MATCHES, search.SORT_WALK_COST = 1, 0
    try:
        search.run_search(store, services.registry, services.parser.parse(
            ["Observation"], [("code", f"{LOINC}|4548-4"), ("_sort", sort)]), execute)
    finally:
        search.WALK_MIN_MATCHES, search.SORT_WALK_COST = old_min, old_cost
    return captured[sql]


@pytest.mark.parametrize("criteria", [[("code", f"{LOINC}|4548-4")], [("code", f"{LOINC}|4548-4"), ("status", "final")],
                                      [("category", "laboratory")]])
def test_a_sorted_search_counts_as_the_unsorted_one(world, criteria):
    """`_total=accurate` is the same with `_sort`; an exact code is counted on its index range alone, as it is
    without a sort, not through the set the general plan gathers."""
    store, services = world
    totals, counts = [], []
    for sort in ([], [("_sort", "-date")]):
        statements: list[str] = []

        def execute(sql, args):
            statements.append(sql)
            return store.query(sql, args)
        query = services.parser.parse(["Observation"], [*criteria, *sort, ("_total", "accurate")])
        totals.append(search.run_search(store, services.registry, query, execute).total)
        counts.append([s for s in statements if s.startswith("SELECT COUNT(*) FROM") and " m" not in s[-3:]])
    assert totals[0] == totals[1] > 0
    by_index = criteria[0][1].startswith(LOINC)
    for count in counts:
        assert len(count) == 1 and ("FROM idx_token d WHERE" in count[0]) == by_index, count


def test_a_walk_that_reads_its_budget_gives_the_search_back(world, monkeypatch):
    """Past its budget of index rows the walk stops and the general plan answers: the page is the same."""
    params = [("code", f"{LOINC}|2345-7"), ("_sort", "-date"), ("_count", "20")]
    monkeypatch.setattr(search, "WALK_MAX_ROWS", 60)
    walked, statements = _search(world, params, True, monkeypatch)
    monkeypatch.setattr(search, "WALK_MAX_ROWS", 60)
    general, _ = _search(world, params, False, monkeypatch)
    windows = [s for s in statements if "FROM idx_date s WHERE s.pid" in s]
    assert walked == general and len(walked) == 20
    assert len(windows) == 1 and any("ORDER BY" in s and "MAX(s.hi)" in s for s in statements)


@pytest.mark.parametrize("criteria", [[("category", "laboratory")], [("date", "ge2020-03")], [("code", "4548-4")],
                                      [("status", "final"), ("category", "vital-signs")]])
@pytest.mark.parametrize("count,offset", [(1, 0), (7, 3), (25, 50)])
def test_an_unsorted_broad_search_walks_the_rows_in_order(world, monkeypatch, criteria, count, offset):
    """Without `_sort`, a broad search's page comes from the type's rows in row-id order, probed one by one:
    the same page as the general plan's, `_offset` and `_after` paging alike (SQLite only: PostgreSQL plans these
    well itself)."""
    if world[0].dialect != "sqlite":
        pytest.skip("the row-id walk is SQLite's")
    params = [*criteria, ("_count", str(count)), ("_offset", str(offset))]
    walked, statements = _search(world, params, True, monkeypatch)
    general, _ = _search(world, params, False, monkeypatch)
    assert walked == general and walked and _walked_by_rid(statements)
    store, services = world
    last = store.read("Observation", walked[-1])  # the next page after the last one: `_after=<its row id>`
    rid = store.query("SELECT rid FROM resources WHERE type = 'Observation' AND id = ?", [last.id])[0][0]
    after = [*criteria, ("_count", str(count)), ("_after", str(rid)), ("_offset", "2")]  # _after wins
    walked, statements = _search(world, after, True, monkeypatch)
    general, _ = _search(world, after, False, monkeypatch)
    assert walked == general and _walked_by_rid(statements)
