"""Crisis scenarios (twin/scenarios/): the SEIR model's invariants, interventions, calibration against known
parameters, CHIME's formulas, hospital demand showing the planted crunch, reproducible run records, and the
HTTP routes with their authorization and refusals."""
from __future__ import annotations

import datetime as dt
import os
import time

import numpy as np
import pytest

from healthtwin.twin.scenarios import chime
from healthtwin.twin.scenarios.calibrate import expected, fit, seed_weights
from healthtwin.twin.scenarios.interventions import parse
from healthtwin.twin.scenarios.records import RunStore, provenance
from healthtwin.twin.scenarios.run import InputError, check
from healthtwin.twin.scenarios.runner import reproduce, run_now
from healthtwin.twin.scenarios.seir import PATHOGENS, Model, Population

POP = Population(["a", "b", "c"], np.array([[3e4, 6e4, 4e5, 6e4], [1e4, 3e4, 2e5, 4e4], [5e3, 1e4, 9e4, 2e4]]))


def seeds(n: float = 20.0) -> np.ndarray:
    s = np.zeros((3, 4))
    s[0, 2] = n
    return s


def peak(interventions=None, pathogen="influenza", days=240, **kw) -> float:
    m = Model(POP, PATHOGENS[pathogen], interventions=parse(interventions, days), **kw)
    return float(m.run(days, seeds()).infections.sum(axis=(1, 2)).max())


def test_seir_conserves_the_population_and_stays_non_negative() -> None:
    iv = parse([{"type": "vaccination", "start": 20, "days": 30, "coverage": 0.5, "efficacy": 0.7},
                {"type": "school_closure", "start": 10, "end": 60}, {"type": "masks", "start": 0, "end": 100}], 300)
    for pathogen in ("covid19", "measles"):
        traj = Model(POP, PATHOGENS[pathogen], immune=0.2, interventions=iv).run(300, seeds())
        assert traj.states[-1, 3].sum() > 0.25 * POP.sizes.sum()  # an epidemic took place (0.2 immune before)
        total = traj.total
        assert np.abs(total - POP.sizes[None]).max() < 1e-6 * POP.sizes.max()
        assert traj.states.min() > -1e-6
        cumulative = traj.states[-1, 5].sum() + seeds().sum()  # the seeds start in E
        assert cumulative == pytest.approx(traj.states[-1, 3].sum() - 0.2 * POP.sizes.sum() + traj.states[-1, 1].sum()
                                           + traj.states[-1, 2].sum(), rel=1e-6)  # every infection is in E, I or R
    assert traj.states[-1, 4].sum() > 0  # the campaign protected people


def test_r0_gives_the_growth_rate_of_the_seir_relation() -> None:
    """beta is set from R0 by the next-generation matrix; the simulated early growth rate r must satisfy
    R0 = (1 + r/sigma)(1 + r/gamma) (Wallinga & Lipsitch 2007), whatever the age structure."""
    for pathogen, r0 in (("influenza", 1.6), ("covid19", 2.5), ("measles", 12.0)):
        p = PATHOGENS[pathogen]
        from dataclasses import replace
        m = Model(POP, replace(p, r0=r0), travel=1.0)  # one well-mixed country: a single dominant mode
        inc = m.run(80, seeds(1.0)).infections.sum(axis=(1, 2))
        grow = np.nonzero(inc > 50)[0][0]  # past the initial transient, still far from depletion
        r = np.log(inc[grow + 7] / inc[grow]) / 7
        assert (1 + r * p.latent_days) * (1 + r * p.infectious_days) == pytest.approx(r0, rel=0.05), pathogen


def test_interventions_lower_the_peak() -> None:
    base = peak()
    assert base > 100
    lowered = {
        "school closure": peak([{"type": "school_closure", "start": 0, "end": 240}]),
        "distancing": peak([{"type": "distancing", "start": 0, "end": 240, "reduction": 0.2}]),
        "masks": peak([{"type": "masks", "start": 0, "end": 240, "efficacy": 0.2, "adherence": 0.7}]),
        "vaccination": peak([{"type": "vaccination", "start": 0, "days": 30, "coverage": 0.4, "efficacy": 0.6}]),
    }
    for name, value in lowered.items():
        assert value < 0.9 * base, name
    assert peak([{"type": "distancing", "start": 0, "end": 240, "reduction": 0.3}]) < lowered["distancing"]
    # an intervention that ends before the epidemic takes off changes nothing
    assert peak([{"type": "school_closure", "start": 0, "end": 1}]) == pytest.approx(base, rel=1e-3)


def test_calibration_recovers_known_parameters() -> None:
    model = Model(POP, PATHOGENS["influenza"])
    truth = {"r0": 1.5, "seed": 40.0, "rho": 0.25, "background": 6.0}
    first = np.array([3.0, 1.0, 0.0])
    mu = expected(model, truth["r0"], truth["seed"], truth["rho"], truth["background"], seed_weights(model, first), 14)
    y = np.random.default_rng(7).poisson(mu)
    f = fit(model, y, first)
    assert f.r0 == pytest.approx(truth["r0"], rel=0.05)
    assert f.rho == pytest.approx(truth["rho"], rel=0.25)
    assert f.seed == pytest.approx(truth["seed"], rel=0.5)
    assert f.deviance < 3 * len(y)  # a Poisson fit: deviance about the number of weeks
    assert f.se["r0"] is not None and abs(f.r0 - truth["r0"]) < 3 * f.se["r0"] < 0.2  # an honest, tight interval


def test_chime_formulas() -> None:
    x = chime.ChimeInputs(population=3_600_000, current_hospitalized=69, doubling_days=4, infectious_days=14,
                          relative_contact_rate=0.3, market_share=0.15, hospitalized_rate=0.025)
    beta, gamma, r0, rt = chime.parameters(x)
    growth = 2 ** (1 / 4) - 1
    assert growth == pytest.approx(0.1892, abs=1e-4)  # CHIME: "daily growth rate of 18.92%"
    assert r0 == pytest.approx(3.65, abs=0.005)  # CHIME: "doubling time 4 days, recovery 14 days: R0 3.65"
    infected = 69 / 0.15 / 0.025
    assert beta == pytest.approx((growth + 1 / 14) / (3_600_000 - infected) * 0.7)
    assert rt == pytest.approx(0.7 * r0)
    traj = chime.sir(x, 60)
    s, i, r = 3_600_000 - infected, infected, 0.0
    for d in range(60):  # CHIME's step written out again
        s2, i2, r2 = s - beta * s * i, i + beta * s * i - gamma * i, r + gamma * i
        k = 3_600_000 / (s2 + i2 + r2)
        s, i, r = s2 * k, i2 * k, r2 * k
        assert traj[d + 1] == pytest.approx([s, i, r], rel=1e-12)
    assert np.allclose(traj.sum(axis=1), 3_600_000)
    assert chime.census(np.array([1.0, 2, 3, 4, 5]), 2).tolist() == [1, 3, 5, 7, 9]
    assert chime.census(np.array([1.0, 2, 3]), 5).tolist() == [1, 3, 6]
    out = chime.project(x, 60)
    ever = (traj[:, 1] + traj[:, 2]) * 0.025 * 0.15
    assert out["admits_hospitalized"][1:].sum() == pytest.approx(ever[-1] - ever[0])
    los = x.hospitalized_los
    assert out["census_hospitalized"][30] == pytest.approx(out["admits_hospitalized"][30 - los + 1:31].sum())


def test_inputs_are_checked() -> None:
    for bad, where in (({"pathogen": "plague"}, "pathogen"), ({"days": 0}, "days"), ({"calibration_weeks": 2},
                        "calibration_weeks"), ({"as_of": "yesterday"}, "as_of"), ({"nonsense": 1}, "nonsense"),
                       ({"interventions": [{"type": "curfew"}]}, "interventions[0].type"),
                       ({"interventions": [{"type": "vaccination", "coverage": 1.5}]}, "interventions[0].coverage"),
                       ({"interventions": [{"type": "distancing", "start": 5}]}, "interventions[0].reduction"),
                       ({"bed_scale": -1}, "bed_scale"), ({"severity": {"icu_share": 2}}, "severity"), ([], "")):
        with pytest.raises(InputError) as err:
            check(bad)
        assert err.value.location == where, bad
    x = check({})
    assert x["pathogen"] == "influenza" and x["syndrome"] == "ili" and x["calibration_weeks"] == 8


def _crunch_ratio(record: dict, site: str) -> float:
    (h,) = [h for h in record["results"]["demand"]["hospitals"] if h["hospital"] == site]
    return h["baseline_census"] / h["capacity"]


def test_a_calibrated_run_shows_the_planted_season_and_crunch_and_reproduces(world, tmp_path) -> None:
    mat, ref, truth = world
    runs = RunStore(tmp_path)
    flu = truth["influenza"]
    peak_day = dt.date.fromisoformat(flu["peak_date"])
    rec = run_now(runs, {"as_of": (peak_day - dt.timedelta(days=14)).isoformat(), "calibration_weeks": 8,
                         "days": 60, "bed_scale": "sample"}, mat.con)
    assert rec["status"] == "completed", rec["error"]
    res = rec["results"]
    cal = res["calibration"]
    assert 1.05 < cal["r0"] < 3 and 0 < cal["rho"] <= 1
    assert np.corrcoef(cal["observed"], cal["fitted"])[0, 1] > 0.9
    projected_peak = dt.date.fromisoformat(res["peak"]["day"])
    assert abs((projected_peak - peak_day).days) <= 21  # the season's turn, projected two weeks ahead
    assert res["demand"]["admissions_per_case"] > 0 and len(res["demand"]["hospitals"]) == 83
    again = runs.load(rec["id"])
    assert reproduce(again) == again["results"]
    prov = provenance(again)
    assert prov["resourceType"] == "Provenance" and prov["target"][0]["identifier"]["value"] == rec["id"]
    assert again["code"]["scenarios_sha256"] and again["data"]["observed"] == cal["observed"]

    crunch = truth["hospital_crunch"]
    site = ref.names[crunch["location"].split("/")[1]]  # hospitals are named by their Location's name
    end = dt.date.fromisoformat(crunch["period_end"])
    during = run_now(runs, {"as_of": (end - dt.timedelta(days=3)).isoformat(), "calibration_weeks": 0, "r0": 1.1,
                            "days": 30, "bed_scale": "sample"}, mat.con)
    before = run_now(runs, {"as_of": (end - dt.timedelta(days=120)).isoformat(), "calibration_weeks": 0, "r0": 1.1,
                            "days": 30, "bed_scale": "sample"}, mat.con)
    hospitals = {h["hospital"]: h for h in during["results"]["demand"]["hospitals"]}
    assert hospitals[site]["over_capacity_from"] == during["results"]["days"][0]  # over capacity from day one
    assert hospitals[site]["peak_excess_beds"] > 0
    assert _crunch_ratio(during, site) > 2 * max(_crunch_ratio(before, site), 0.1)
    nat = during["results"]["demand"]["national"]
    assert _crunch_ratio(during, site) > 2 * nat["occupied"][0] / nat["capacity"]


def test_routes_run_jobs_and_refuse_bad_input(world, store) -> None:
    from starlette.testclient import TestClient

    from healthtwin.api.services import Services
    from healthtwin.composition import create_app
    from healthtwin.fhir.outcome import FHIRError
    from healthtwin.twin.scenarios.web import Scenarios

    mat, _, _ = world

    class Policy:
        def authorize(self, ctx, interaction, rtype, resource=None):
            if interaction == "analytics" and ctx.header("x-role") != "analyst":
                raise FHIRError(403, "analytics needs the analyst role", "forbidden")

    services = Services.build(store, Policy())
    scenarios = Scenarios(services, mat.data_dir)
    app = create_app(store, services=services)
    app.router.routes[0:0] = scenarios.routes
    analyst = {"x-role": "analyst"}
    earlier = {run["id"] for run in RunStore(mat.data_dir).list()}  # the session's folder is shared
    with TestClient(app) as c:
        r = c.post("/analytics/scenarios", json={"days": -3}, headers=analyst)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
        assert r.json()["issue"][0]["expression"] == ["days"]
        assert c.post("/analytics/scenarios", content=b"{not json", headers=analyst).status_code == 400
        assert c.post("/analytics/scenarios", json={"days": 10}).status_code == 403
        assert c.get("/analytics/scenarios/" + "0" * 32, headers=analyst).status_code == 404
        assert c.get("/analytics/scenarios/..%2Fsecret", headers=analyst).status_code == 404
        assert {run["id"] for run in RunStore(mat.data_dir).list()} == earlier  # nothing stored for the refused
        r = c.post("/analytics/scenarios", json={"days": 20, "calibration_weeks": 0, "r0": 1.4}, headers=analyst)
        assert r.status_code == 202 and r.headers["content-location"].endswith(r.json()["id"])
        url = "/analytics/scenarios/" + r.json()["id"]
        deadline = time.time() + 60
        while (body := c.get(url, headers=analyst).json())["status"] in ("queued", "running"):
            assert time.time() < deadline
            time.sleep(0.2)
        assert body["status"] == "completed", body["error"]
        assert len(body["results"]["days"]) == 20 and body["provenance"]["resourceType"] == "Provenance"
        assert body["analytics_watermarks"]
        listed = [run["id"] for run in c.get("/analytics/scenarios", headers=analyst).json()["runs"]]
        assert set(listed) == earlier | {body["id"]} and listed[0] == body["id"]  # newest first
    scenarios.stop()


def test_agent_based_option(world) -> None:
    from healthtwin.twin.scenarios.agent import available
    why = available()
    if why is not None:
        pytest.skip(why)
    mat, _, _ = world
    runs = RunStore(mat.data_dir / "abm")
    x = {"model": "agent", "agents": 5000, "days": 40, "calibration_weeks": 0, "r0": 2.0, "seed_infections": 30,
         "seed": 5}
    rec = run_now(runs, x, mat.con)
    assert rec["status"] == "completed", rec["error"]
    agent = rec["results"]["agent"]
    assert agent["engine"].startswith("starsim") and len(agent["infections"]) == 40 and sum(agent["infections"]) > 0
    assert agent["random_seed"] == 5 and rec["seed"] == 5


def test_the_composed_application_routes_scenarios_before_the_analytics_mount(tmp_path) -> None:
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    from healthtwin.request import OpenPolicy
    from healthtwin.store.sqlite import SQLiteStore
    store = SQLiteStore(str(tmp_path / "composed.sqlite"))
    app = build_app(store, AppSettings(data_dir=tmp_path / "data", analytics_dir=tmp_path / "data", rate=None,
                                       audit=False), policy=OpenPolicy())
    with TestClient(app) as client:
        r = client.post("/analytics/scenarios", json={"pathogen": "plague"})
        assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["pathogen"]
        assert client.get("/analytics/scenarios").json() == {"runs": []}
        assert client.get("/analytics/indicators").status_code == 200  # the mount still answers the rest
        for query, where in (("period=2024-W54", "period"), ("period=2024-W01&interval=hour", "interval")):
            r = client.get(f"/analytics/indicators/syndrome_cases?{query}")
            assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
            assert r.json()["issue"][0]["expression"] == [where]
        r = client.post("/analytics/scenarios", json={})  # nothing materialised yet: a clear refusal
        assert r.status_code == 400 and "refresh" in r.json()["issue"][0]["diagnostics"]
        paths = client.get("/openapi.json").json()["paths"]
        assert "post" in paths["/analytics/scenarios"] and "get" in paths["/analytics/scenarios/{run_id}"]


def test_agent_based_epidemic_reaches_the_final_size_of_its_r0() -> None:
    """One well-mixed network: the attack rate must be the classic final size z = 1 - exp(-R0 z) (Kermack &
    McKendrick), which checks the mapping from R0 to Starsim's per-contact transmission."""
    from scipy.optimize import brentq

    from healthtwin.twin.scenarios.agent import available, run_agents
    if available() is not None:
        pytest.skip(available())
    sizes = [[6e4, 1.2e5, 5e5, 6e4]]
    data = {"population": sizes, "persons": float(np.sum(sizes)), "as_of": "2024-01-01"}
    x = {"agents": 10000, "days": 120, "latent_days": 2.0, "infectious_days": 3.0, "seed": 3}
    out = run_agents(x, data, 2.0, 0.002 * np.sum(sizes), 1.0)
    z = brentq(lambda z: z - 1 + np.exp(-2.0 * z), 1e-6, 1)
    assert out["attack_rate"] == pytest.approx(z, abs=0.06)
    assert run_agents(x, data, 2.0, 0.002 * np.sum(sizes), 1.0) == out  # the seed fixes the draw
    seen: list[float] = []  # reporting progress runs it in tenths: the same draw
    assert run_agents(x, data, 2.0, 0.002 * np.sum(sizes), 1.0, seen.append) == out
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[-1] == 0.9 and len(seen) == 10


def _instance(folder, store, owner: bool):
    """One server process's scenario routes on the shared analytics folder, as its own Starlette app."""
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from healthtwin.api.services import Services
    from healthtwin.request import OpenPolicy
    from healthtwin.twin.scenarios.web import Scenarios
    scenarios = Scenarios(Services.build(store, OpenPolicy()), folder, owner=owner, poll=0.1)
    return scenarios, TestClient(Starlette(routes=scenarios.routes))


def _finished(client, run_id: str, seconds: float = 60) -> dict:
    deadline = time.time() + seconds
    while (body := client.get(f"/analytics/scenarios/{run_id}").json())["status"] in ("queued", "running"):
        assert time.time() < deadline, body["status"]
        time.sleep(0.1)
    return body


def test_a_run_posted_to_any_process_is_run_by_the_owner_and_read_from_any(world, tmp_path) -> None:
    """Two application instances on one analytics folder: the follower (no analytics database of its own)
    accepts the POST, the owner runs it, both answer its progress and results; a run left by a process that
    died is run when an owner starts."""
    import subprocess
    import sys

    from healthtwin.store.sqlite import SQLiteStore
    from healthtwin.twin.scenarios import queue
    mat, _, _ = world
    store = SQLiteStore(str(tmp_path / "s.sqlite"))
    owner, at_owner = _instance(mat.data_dir, store, owner=True)
    follower, at_follower = _instance(mat.data_dir, store, owner=False)
    body = {"days": 20, "calibration_weeks": 0, "r0": 1.4}
    r = at_follower.post("/analytics/scenarios", json=body)
    assert r.status_code == 202
    run_id = r.json()["id"]
    time.sleep(0.5)  # no owner runs yet: it waits in the queue, readable from both
    assert at_owner.get(f"/analytics/scenarios/{run_id}").json()["status"] == "queued"
    assert at_follower.get(f"/analytics/scenarios/{run_id}").json()["status"] == "queued"
    owner.start()
    try:
        done = _finished(at_follower, run_id)
        assert done["status"] == "completed", done["error"]
        assert done["ran_by"] == owner.worker.name and done["analytics_watermarks"]
        assert len(done["results"]["days"]) == 20 and done["provenance"]["resourceType"] == "Provenance"
        assert at_owner.get(f"/analytics/scenarios/{run_id}").json() == done
        assert run_id in {run["id"] for run in at_follower.get("/analytics/scenarios").json()["runs"]}
        # a bad input is refused by the follower too, and nothing is queued
        before = RunStore(mat.data_dir).queued()
        assert at_follower.post("/analytics/scenarios", json={"days": -1}).status_code == 400
        assert RunStore(mat.data_dir).queued() == before == []
    finally:
        owner.stop()
    # a run claimed by a process that has since died (a server stopped mid-run) is queued again and run
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    runs = RunStore(mat.data_dir)
    left = runs.new(RunStore(mat.data_dir).load(run_id)["inputs"], None, {})
    left["status"], left["progress"] = "running", 0.4
    runs.save(left)
    import socket
    runs.claim_path(left["id"]).write_text(f"{socket.gethostname()}:{dead.stdout.strip()}:gone")
    again, _ = _instance(mat.data_dir, store, owner=True)
    again.start()
    try:
        assert _finished(at_follower, left["id"])["status"] == "completed"
    finally:
        again.stop()
    assert not runs.claim_path(left["id"]).exists()
    store.close()
    assert queue._alive(os.getpid())


def test_two_owners_on_one_folder_run_each_run_once(world, tmp_path, monkeypatch) -> None:
    from healthtwin.store.sqlite import SQLiteStore
    from healthtwin.twin.scenarios import queue
    mat, _, _ = world
    folder = mat.data_dir
    executed = []
    real = queue.execute

    def counted(runs, record, connect):
        executed.append(record["id"])
        return real(runs, record, connect)
    monkeypatch.setattr(queue, "execute", counted)
    store = SQLiteStore(str(tmp_path / "s.sqlite"))
    first, at_first = _instance(folder, store, owner=True)
    second, at_second = _instance(folder, store, owner=True)
    ids = [at_first.post("/analytics/scenarios", json={"days": 10, "calibration_weeks": 0, "r0": 1.2 + i / 10})
           .json()["id"] for i in range(4)]
    second.start()
    try:
        bodies = [_finished(at_second, i) for i in ids]
    finally:
        first.stop()
        second.stop()
    assert all(b["status"] == "completed" for b in bodies), [b["error"] for b in bodies]
    assert sorted(executed) == sorted(ids)  # each run once, whichever worker took it
    store.close()
