"""The agent-based option: the same epidemic on Starsim (Institute for Disease Modeling; starsim 3.7 from
PyPI, optional extra `scenarios-abm`), for a population of agents synthesised from the twin.

The agents get the twin's age structure (its residents per age group, `record_data.population`) and a random
contact network (`starsim.RandomNet`) with the mean daily contacts of the SEIR model's matrices; Starsim's
SEIR carries the disease with the same latent and infectious periods. Its per-contact transmission
probability p is set so that each infection causes R0 others on average: R0 = contacts * (1 - (1 - p) **
infectious days). What it adds to the compartmental model is chance: a small seed can die out, and a run's
curve is one draw, fixed by its random seed. Regions, the age-specific mixing and the interventions are not
carried over (one well-mixed network), so the agent-based run is a check on the compartmental model's
epidemic, not a second planning tool.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import numpy as np

from .contacts import AGE_BOUNDS, SETTINGS, symmetric


def available() -> str | None:
    """None if Starsim can run here, else why not."""
    try:
        import starsim  # noqa: F401
    except Exception as exc:  # ImportError, or a compiled dependency that does not load
        return f"starsim is not installed or does not load ({exc}); pip install 'healthtwin[scenarios-abm]'"
    return None


def run_agents(x: dict[str, Any], data: dict[str, Any], r0: float, seed_infections: float, rho: float,
               progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    import os
    os.environ.setdefault("STARSIM_INSTALL_FONTS", "0")
    import pandas as pd
    import starsim as ss

    sizes = np.array(data["population"], dtype=float).sum(axis=0)
    n_agents = int(x["agents"])
    ages = np.concatenate([np.arange(lo, min(hi, 99) + 1) for lo, hi in AGE_BOUNDS])
    weights = np.concatenate([np.full(min(hi, 99) - lo + 1, sizes[k] / (min(hi, 99) - lo + 1))
                              for k, (lo, hi) in enumerate(AGE_BOUNDS)])
    age_data = pd.DataFrame({"age": ages, "value": weights / weights.sum()})
    contacts = sum(symmetric(m, sizes) for m in SETTINGS.values())
    mean_contacts = float((contacts.sum(axis=1) * sizes).sum() / sizes.sum())
    days_inf = float(x["infectious_days"])
    p = 1 - (1 - min(r0 / mean_contacts, 0.999)) ** (1 / days_inf)
    start = dt.date.fromisoformat(data["as_of"]) + dt.timedelta(days=1)
    stop = start + dt.timedelta(days=int(x["days"]))
    init = max(seed_infections / max(data["persons"], 1), 1.0 / n_agents)
    # p_death 0: the compartmental model has no deaths, and Starsim's default (1 % of infections) would also
    # make it remove the dead from the network every day, a quarter of a million-agent run's time
    disease = ss.SEIR(beta=ss.perday(p), dur_exp=ss.constant(ss.days(float(x["latent_days"]))),
                      dur_inf=ss.constant(ss.days(days_inf)), init_prev=min(init, 0.5), p_death=0)
    sim = ss.Sim(people=ss.People(n_agents=n_agents, age_data=age_data), diseases=disease,
                 networks=ss.RandomNet(n_contacts=max(1, int(round(mean_contacts)))),
                 start=start.isoformat(), stop=stop.isoformat(), dt=ss.days(1), rand_seed=int(x["seed"]), verbose=0)
    if progress:  # in tenths of the days, so a long run's record shows how far it is (the same draw)
        progress(0.0)
        days = int(x["days"])
        for k in range(1, 10):
            sim.run(until=(start + dt.timedelta(days=days * k // 10)).isoformat())
            progress(k / 10)
    sim.run()
    new = np.asarray(sim.results.seir.new_infections, dtype=float)[:int(x["days"])]
    scale = data["persons"] / n_agents  # agents stand for this many residents each
    return {"engine": f"starsim {ss.__version__}", "agents": n_agents, "residents_per_agent": scale,
            "contacts_per_day": mean_contacts, "transmission_per_contact_day": p, "random_seed": int(x["seed"]),
            "infections": (new * scale).tolist(), "cases": (new * scale * rho).tolist(),
            "attack_rate": float(new.sum() / n_agents)}


__all__ = ["available", "run_agents"]
