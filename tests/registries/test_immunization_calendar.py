"""Azerbaijan's calendar (scripts/aze_calendar.py → schedules/aze.json.gz) recognises every vaccine the
population generator gives on the national calendar: a dose whose CVX the schedule does not map counts for
nothing, and the child then shows overdue for vaccines it had (the pentavalent coded 102 once did)."""
from __future__ import annotations

from datetime import date, timedelta

from healthtwin.population.vaccination import SCHEDULE as GENERATED
from healthtwin.registries.immunization import engine, rules
from healthtwin.registries.immunization.patient import Dose, Patient

# What the generator gives, by the calendar's vaccine group: the group names differ (the generator's IPV
# and OPV doses are both the Polio group; its DT booster is the DTP group's last dose).
GROUP = {"HepB": "HepB", "BCG": "BCG", "Polio": "Polio", "IPV": "Polio", "DTP": "DTP", "DT": "DTP",
         "PCV": "PCV", "MCV": "MMR"}


def _schedule() -> rules.Schedule:
    return rules.load("aze")


def test_every_generated_calendar_vaccine_maps_to_an_antigen_of_its_group():
    schedule = _schedule()
    groups = {g.name: set(g.antigens) for g in schedule.groups.values()}
    for dose in (d for d in GENERATED if d.enabled):
        antigens = {a.antigen for a in schedule.cvx_antigens.get(rules.norm_cvx(dose.cvx), [])}
        assert antigens & groups[GROUP[dose.series]], f"{dose.key} (CVX {dose.cvx}) counts for no antigen of " \
                                                     f"{GROUP[dose.series]}"


def test_a_child_given_the_generated_doses_on_time_is_not_overdue():
    birth = date(2020, 1, 15)
    doses = [Dose(id=d.key, given=birth + timedelta(days=d.age_days), cvx=d.cvx) for d in GENERATED if d.enabled]
    child = Patient(birth=birth, gender="Female", assessment=birth + timedelta(days=2191 + 30), doses=doses)
    forecasts = {f.group: f for f in engine.assess(child, _schedule())}
    for group in ("HepB", "DTP", "Hib", "Polio", "PCV", "MMR", "BCG"):
        found = forecasts.get(group)
        assert found is not None, f"no forecast for {group}"
        assert found.status in ("Complete", "Aged Out", "Not Complete"), (group, found.status)
        if found.status == "Not Complete":  # a dose still to come must not be one the child already had
            assert found.past_due is None or found.past_due > child.assessment, (group, found.past_due)
    for group in ("HepB", "DTP", "Hib", "PCV", "MMR"):
        assert forecasts[group].status in ("Complete", "Aged Out"), (group, forecasts[group].status)
