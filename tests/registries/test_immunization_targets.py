"""The rules read once (targets.py, series_state.SeriesPlan): the same answers as reading the rule dictionaries."""
from __future__ import annotations

from datetime import date

import pytest

from healthtwin.registries.immunization import dates, engine, rules, targets
from healthtwin.registries.immunization.patient import Dose, Patient
from healthtwin.registries.immunization.skip import in_force


@pytest.mark.parametrize("key", sorted(rules.SCHEDULES))
def test_every_target_dose_of_the_committed_schedules_reads_as_its_rows_say(key):
    for antigen in rules.load(key).antigens.values():
        for series in antigen["series"]:
            for raw in series["seriesDose"]:
                t = targets.target(raw)
                assert targets.target(raw) is t  # read once
                for when in (date(2000, 1, 1), date(2026, 12, 2)):
                    assert t.ages.at(when) == [r for r in raw.get("age", []) if in_force(r, when)]
                    assert [iv.row for iv in t.intervals.at(when)] == [
                        r for r in raw.get("interval", []) if in_force(r, when)]
                for cvx, rows in t.preferable.items():
                    assert len(rows) == sum(1 for v in raw.get("preferableVaccine", []) if v["cvx"] == cvx)


def test_rows_come_into_and_go_out_of_force_on_their_dates():
    rows = [{"minInt": "4 weeks", "effectiveDate": "2020-01-01", "cessationDate": "2022-01-01"},
            {"minInt": "8 weeks"}]
    dated = targets.Dated(rows)
    assert dated.at(date(2019, 12, 31)) == [rows[1]]
    assert dated.at(date(2020, 1, 1)) == rows
    assert dated.at(date(2022, 1, 1)) == [rows[1]]
    assert targets.Dated([{"minInt": "4 weeks"}]).spans is None  # always in force: no test per date


def test_age_dates_are_those_of_the_age_row_and_a_duration_never_asked_for_is_never_read():
    raw = {"age": [{"absMinAge": "6 weeks - 4 days", "minAge": "6 weeks", "maxAge": "5 years",
                    "latestRecAge": "24 hours"}], "seriesDose": []}
    t = targets.Target(raw)
    birth = date(2025, 1, 31)
    ages = t.age_dates(birth, date(2026, 1, 1))
    assert ages.absolute == dates.add(birth, "6 weeks - 4 days")
    assert ages.minimum == dates.add(birth, "6 weeks") and ages.maximum == date(2030, 1, 31)
    assert ages.earliest_rec is None
    assert t.age_dates(birth, date(2027, 1, 1)) is ages  # kept per date of birth
    with pytest.raises(ValueError):
        ages.latest_rec


def test_age_dates_kept_per_birth_stay_bounded():
    t = targets.Target({"age": [{"minAge": "2 months"}]})
    for day in range(targets.BIRTHS_KEPT + 10):
        birth = date.fromordinal(date(1950, 1, 1).toordinal() + day)
        assert t.age_dates(birth, date(2026, 1, 1)).minimum == dates.add(birth, "2 months")
    assert len(t.by_birth) <= targets.BIRTHS_KEPT


def test_doses_added_after_the_patient_was_made_are_seen_by_the_live_virus_checks():
    aze = rules.load("aze")
    birth, on = date(2019, 1, 1), date(2025, 1, 10)
    mmr = Dose("a", date(2020, 1, 10), "03")
    yellow_fever = Dose("yf", date(2025, 1, 1), "37")  # live: MMR waits 28 days after it
    whole = Patient(birth, "Female", on, [mmr, yellow_fever])
    late = Patient(birth, "Female", on, [mmr])
    late.doses.append(yellow_fever)  # the list changed after construction: assess indexes it again
    a, b = engine.assess(whole, aze), engine.assess(late, aze)
    assert [(g.group, g.status, g.earliest) for g in a] == [(g.group, g.status, g.earliest) for g in b]
    assert next(g for g in b if g.group == "MMR").earliest == date(2025, 1, 29)  # not the 6-year age, 2025-01-01
