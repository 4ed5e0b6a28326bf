"""The live registry keeps the schedule HEALTHTWIN_IMMUNIZATION_SCHEDULE names (aze by default, cdc, who): the
write rule and the batch refresh write that schedule's recommendations, the due lists search them, the
operations and the registry's coverage default to it, and the analytics indicators (`immunization_status`,
`vaccination_coverage_at_age`) count it; an unknown value stops the command with a message.
Each configuration runs in a process of its own (schedule_choice_run.py), as a server would, on SQLite and
PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(kind: str, schedule: str | None, tmp_path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    env.pop("HEALTHTWIN_IMMUNIZATION_SCHEDULE", None)
    if schedule:
        env["HEALTHTWIN_IMMUNIZATION_SCHEDULE"] = schedule
    done = subprocess.run([sys.executable, str(ROOT / "tests/registries/schedule_choice_run.py"), kind, str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and "PostgreSQL tests skipped" in done.stderr:
        pytest.skip("PostgreSQL tests skipped: no server")
    assert done.returncode == 0, done.stderr[-3000:]
    return orjson.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("schedule", ["cdc", "who"])
def test_the_registry_keeps_the_configured_schedule(kind, schedule, tmp_path):
    if kind == "postgres" and os.environ.get("HEALTHTWIN_TEST_POSTGRES") != "1" and schedule == "who":
        pytest.skip("one schedule is enough on PostgreSQL unless HEALTHTWIN_TEST_POSTGRES=1")
    got = _run(kind, schedule, tmp_path)
    assert got["live"] == [f"imr-{schedule}-{got['child']}"]  # the write rule, as the dose was recorded
    assert got["refreshed"] > 0 and got["ids"] and all(i.startswith(f"imr-{schedule}-") for i in got["ids"])
    assert got["tags"] == [schedule]
    # the schedule's own vaccine groups, in the lists and in the operation's default
    from healthtwin.registries.immunization import rules
    own = set(rules.load(schedule).groups)
    assert set(got["groups"]) <= own and got["operation_groups"] and set(got["operation_groups"]) <= own
    if schedule == "cdc":
        assert set(got["groups"]) - set(rules.load("aze").groups)  # not the national calendar's groups
    assert got["overdue_listed"] == got["overdue_counted"] and any(got["overdue_counted"].values())
    assert got["coverage_is_configured"][schedule]
    # the analytics indicators count the same schedule: its groups, the lists' overdue, the registry's coverage
    assert got["indicator_groups"] == got["groups"] and got["indicator_overdue"] == got["overdue_counted"]
    assert got["indicator_coverage_agrees"]


def test_by_default_it_is_the_national_calendar(tmp_path):
    got = _run("sqlite", None, tmp_path)
    assert got["live"] == [f"imr-aze-{got['child']}"] and got["tags"] == ["aze"]
    assert {"MMR", "DTP", "HepB"} <= set(got["groups"]) and set(got["operation_groups"]) <= set(got["groups"])
    assert got["overdue_listed"] == got["overdue_counted"] and got["coverage_is_configured"]["aze"]
    assert got["indicator_groups"] == got["groups"] and got["indicator_overdue"] == got["overdue_counted"]
    assert got["indicator_coverage_agrees"]


def test_an_unknown_schedule_stops_the_refresh_and_the_server(tmp_path, monkeypatch):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HEALTHTWIN_IMMUNIZATION_SCHEDULE="usa")
    done = subprocess.run([sys.executable, "-m", "healthtwin", "immunization", "refresh", "--data-dir",
                           str(tmp_path / "data")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "HEALTHTWIN_IMMUNIZATION_SCHEDULE is one of aze, cdc, who, not 'usa'" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was opened or written
    from healthtwin.registries.immunization import plugin
    monkeypatch.setenv("HEALTHTWIN_IMMUNIZATION_SCHEDULE", "usa")
    with pytest.raises(ValueError, match="HEALTHTWIN_IMMUNIZATION_SCHEDULE"):
        plugin.contribution(None)
