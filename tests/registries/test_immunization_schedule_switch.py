"""After HEALTHTWIN_IMMUNIZATION_SCHEDULE changes, a child's recommendations of the schedule no longer kept go
at the child's next forecast, by the bulk refresh (cohort.py) and by the per-child path the live rule runs
(live.store_current): no due list, count or twin goes on reading a calendar the ministry left. Both databases;
the schedules are passed as the configured tuple would be."""
from __future__ import annotations

import datetime as dt

from healthtwin.api.services import Services
from healthtwin.registries.immunization.cohort import commit_chunk, prepare_chunk
from healthtwin.registries.immunization.due import register
from healthtwin.registries.immunization.live import refresh_in, retired
from healthtwin.registries.immunization.recommendations import recommendation_id

ON = dt.date(2026, 12, 3)
TYPE = "ImmunizationRecommendation"


def _services(store) -> tuple[Services, list[str]]:
    services = Services.build(store)
    register(services.registry)
    pids = [f"sw-{n}" for n in range(3)]
    resources = []
    for n, pid in enumerate(pids):
        resources.append({"resourceType": "Patient", "id": pid, "gender": "female",
                          "birthDate": (ON - dt.timedelta(days=120 + 30 * n)).isoformat()})
        resources.append({"resourceType": "Immunization", "id": f"{pid}-1", "status": "completed",
                          "patient": {"reference": f"Patient/{pid}"}, "primarySource": True,
                          "occurrenceDateTime": (ON - dt.timedelta(days=100)).isoformat(),
                          "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "08"}]}})
    with store.transaction() as tx:
        tx.put_many([(r, store.index_rows_for(r)) for r in resources])
    return services, pids


def _live(store, rid: str) -> bool:
    found = store.read(TYPE, rid)
    return found is not None and not found.deleted


def test_the_refresh_and_the_live_path_drop_a_retired_schedules_recommendations(store):
    services, pids = _services(store)
    assert retired(("cdc",)) == ("aze", "who")
    commit_chunk(services, prepare_chunk(services, pids, ON, ("aze",)), schedules=("aze",))
    assert all(_live(store, recommendation_id(p, "aze")) for p in pids)
    # the bulk refresh under the new schedule: its recommendations written, the old schedule's deleted
    written, _ = commit_chunk(services, prepare_chunk(services, pids, ON, ("cdc",)), schedules=("cdc",))
    assert written == 2 * len(pids)
    assert all(_live(store, recommendation_id(p, "cdc")) and not _live(store, recommendation_id(p, "aze"))
               for p in pids)
    assert store.read(TYPE, recommendation_id(pids[0], "aze")).deleted  # a tombstone: its history is kept
    # again under the same schedule: nothing more to delete, nothing changed
    assert commit_chunk(services, prepare_chunk(services, pids, ON, ("cdc",)), schedules=("cdc",))[0] == 0
    # the per-child path (a dose recorded) after a switch to the WHO schedule
    with store.transaction() as tx:
        refresh_in(tx, services, pids[:1], ON, ("who",))
    assert _live(store, recommendation_id(pids[0], "who")) and not _live(store, recommendation_id(pids[0], "cdc"))
    assert _live(store, recommendation_id(pids[1], "cdc"))  # a child not forecast again keeps its own until then
