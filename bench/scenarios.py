"""Scenario speed: the calibrated SEIR run and the agent-based option at a million agents.

    PYTHONPATH=src python bench/scenarios.py [--agents 1000000] [--days 120]

Prints, measured in the same run:
* SEIR: one projection of the 14 regions x 4 age groups for --days days, and a calibration to 8 weeks
  (fitting R0, seed, ascertainment and background by Poisson likelihood), on a synthetic national
  population (the generator's regional shares are not needed for timing);
* agents: our Starsim run (twin age structure, SEIR, random network) with --agents agents, beside two
  anchors: Starsim's plain SIR on a random network with the same agents and days, with 10 contacts a day and
  with our run's contacts (what the engine costs without our set-up), after one small run of each so that
  no timing includes numba's compilation.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import time

import numpy as np

os.environ.setdefault("STARSIM_INSTALL_FONTS", "0")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=120)
    a = ap.parse_args()
    from healthtwin.twin.scenarios.calibrate import expected, fit, seed_weights
    from healthtwin.twin.scenarios.seir import PATHOGENS, Model, Population
    rng = np.random.default_rng(1)
    pop = Population([f"r{i}" for i in range(14)], rng.uniform(0.5, 1.5, (14, 4)) * np.array([6e4, 1.2e5, 5e5, 6e4]))
    m = Model(pop, PATHOGENS["influenza"])
    t = time.perf_counter()
    m.run(a.days, np.full((14, 4), 5.0))
    print(f"SEIR projection, 14 regions x 4 ages, {a.days} days: {time.perf_counter() - t:.3f} s")
    w = seed_weights(m, np.ones(14))
    y = rng.poisson(expected(m, 1.5, 200, 0.2, 20, w, 8))
    t = time.perf_counter()
    f = fit(m, y, np.ones(14))
    print(f"SEIR calibration to 8 weeks: {time.perf_counter() - t:.2f} s (R0 {f.r0:.3f}, truth 1.5)")

    from healthtwin.twin.scenarios.agent import available, run_agents
    if available():
        print("agents: skipped:", available())
        return
    import starsim as ss
    x = {"agents": a.agents, "days": a.days, "latent_days": 2.0, "infectious_days": 3.0, "seed": 1}
    data = {"population": pop.sizes.tolist(), "persons": float(pop.sizes.sum()), "as_of": "2024-01-01"}

    def bare(n_agents: int, contacts: int) -> float:
        """Starsim alone: its plain SIR on a random network, the same days (no age structure, our defaults)."""
        start = dt.date(2024, 1, 2)
        sim = ss.Sim(n_agents=n_agents, diseases=ss.SIR(beta=ss.perday(0.05), init_prev=0.001),
                     networks=ss.RandomNet(n_contacts=contacts), start=start.isoformat(),
                     stop=(start + dt.timedelta(days=a.days)).isoformat(), dt=ss.days(1), rand_seed=1, verbose=0)
        t = time.perf_counter()
        sim.run()
        return time.perf_counter() - t

    run_agents(dict(x, agents=2000), data, 1.5, 2000.0, 0.2)  # numba compiles its kernels once per process:
    bare(2000, 10)                                             # neither timing below pays for it
    contacts = int(round(run_agents(dict(x, agents=2000), data, 1.5, 2000.0, 0.2)["contacts_per_day"]))
    same = bare(a.agents, contacts)  # first, ours between the anchors: a load that drifts favours neither
    t = time.perf_counter()
    out = run_agents(x, data, 1.5, 2000.0, 0.2)
    ours = time.perf_counter() - t
    anchor = bare(a.agents, 10)
    print(f"agents: {a.agents:,} agents x {a.days} days: ours {ours:.1f} s (attack {out['attack_rate']:.3f}, "
          f"{contacts} contacts a day); anchor, Starsim plain SIR, 10 contacts: {anchor:.1f} s (ratio "
          f"{ours / anchor:.2f}); with our {contacts} contacts: {same:.1f} s (ratio {ours / same:.2f}); "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
