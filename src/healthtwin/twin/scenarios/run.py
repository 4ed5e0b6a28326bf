"""One scenario: its inputs checked, the SEIR model calibrated to the record's data and run forward with the
interventions, and the hospital demand it brings against the beds. `simulate(inputs, data)` is a pure
function of the run's inputs and the record's data (`record_data.gather`), which the run record keeps, so
any figure of a run is reproduced by calling it again (`records.py`)."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from .calibrate import fit, seed_weights
from .contacts import AGE_GROUPS
from .demand import Severity, hospital_demand
from .interventions import InterventionError, parse
from .seir import PATHOGENS, Model, Population

NATIONAL_POPULATION = 10_180_770  # the generator's national total (population/institutions.py)
DEFAULT_SYNDROME = {"influenza": "ili", "measles": "measles", "covid19": "covid19"}
KEYS = {"model", "pathogen", "syndrome", "as_of", "calibration_weeks", "days", "r0", "latent_days",
        "infectious_days", "seed_infections", "rho", "travel", "immune", "interventions", "severity", "bed_scale",
        "seed", "agents"}


class InputError(ValueError):
    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.location = location


def _num(inputs: dict[str, Any], key: str, low: float, high: float, default: float | None) -> float | None:
    value = inputs.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InputError(f"{key} must be a number from {low} to {high}", key)
    return float(value)


def check(inputs: Any) -> dict[str, Any]:
    """The inputs with their defaults filled in; InputError names the first bad field."""
    if not isinstance(inputs, dict):
        raise InputError("the body is a JSON object of scenario inputs", "")
    unknown = sorted(set(inputs) - KEYS)
    if unknown:
        raise InputError(f"unknown input '{unknown[0]}'; inputs are {', '.join(sorted(KEYS))}", unknown[0])
    x = dict(inputs)
    x["model"] = x.get("model", "seir")
    if x["model"] not in ("seir", "agent"):
        raise InputError("model is seir or agent", "model")
    x["pathogen"] = x.get("pathogen", "influenza")
    if x["pathogen"] not in PATHOGENS:
        raise InputError(f"pathogen is one of {', '.join(PATHOGENS)}", "pathogen")
    x["syndrome"] = x.get("syndrome", DEFAULT_SYNDROME[x["pathogen"]])
    if not isinstance(x["syndrome"], str):
        raise InputError("syndrome names a group of the series (ili, measles, ...)", "syndrome")
    if x.get("as_of") is not None:
        try:
            dt.date.fromisoformat(str(x["as_of"]))
        except ValueError:
            raise InputError("as_of is a date (YYYY-MM-DD)", "as_of") from None
    x["calibration_weeks"] = int(_num(x, "calibration_weeks", 0, 104, 8) or 0)
    if 0 < x["calibration_weeks"] < 4:
        raise InputError("calibration_weeks is 0 (no calibration) or at least 4", "calibration_weeks")
    x["days"] = int(_num(x, "days", 1, 730, 120) or 120)
    p = PATHOGENS[x["pathogen"]]
    x["latent_days"] = _num(x, "latent_days", 0.1, 60, p.latent_days)
    x["infectious_days"] = _num(x, "infectious_days", 0.1, 60, p.infectious_days)
    x["r0"] = _num(x, "r0", 0.1, 40, None if x["calibration_weeks"] else p.r0)
    if not x["calibration_weeks"]:
        x["seed_infections"] = _num(x, "seed_infections", 0, 1e9, 10)
        x["rho"] = _num(x, "rho", 1e-6, 1, 0.1)
    x["travel"] = _num(x, "travel", 0, 1, 0.1)
    x["immune"] = _num(x, "immune", 0, 0.99, 0.0)
    x["seed"] = int(_num(x, "seed", 0, 2 ** 31 - 1, 1) or 0)
    x["agents"] = int(_num(x, "agents", 1000, 5_000_000, 100_000) or 100_000)
    scale = x.get("bed_scale", 1.0)
    if scale != "sample" and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 10):
        raise InputError("bed_scale is a number from 0 to 10, or \"sample\" (persons / national population)",
                         "bed_scale")
    x["bed_scale"] = scale
    try:
        parse(x.get("interventions"), x["days"])
    except InterventionError as exc:
        raise InputError(str(exc), exc.location) from None
    x["interventions"] = x.get("interventions") or []
    try:
        x["severity"] = Severity.from_inputs(x.get("severity")).as_dict()
    except ValueError as exc:
        raise InputError(str(exc), "severity") from None
    return x


def simulate(x: dict[str, Any], data: dict[str, Any], progress: Callable[[float], None] | None = None
             ) -> dict[str, Any]:
    """The scenario's results from checked inputs `x` and the record's `data`."""
    report = progress or (lambda f: None)
    regions = data["regions"]
    pop = Population(regions, np.array(data["population"], dtype=float))
    pathogen = replace(PATHOGENS[x["pathogen"]], latent_days=x["latent_days"], infectious_days=x["infectious_days"],
                       r0=x["r0"] or PATHOGENS[x["pathogen"]].r0)
    offset = 7 * data["weeks"] if x["calibration_weeks"] else 0
    start = dt.date.fromisoformat(data["as_of"]) + dt.timedelta(days=1)
    interventions = parse([dict(i, start=i.get("start", 0) + offset, end=i.get("end", x["days"]) + offset)
                           if i.get("type") != "vaccination" else dict(i, start=i.get("start", 0) + offset)
                           for i in x["interventions"]], x["days"] + offset)
    model = Model(pop, pathogen, x["travel"], x["immune"], interventions)
    first_cases = np.array([sum(r[:2]) for r in data["observed_by_region"]], dtype=float)
    calibration = None
    if x["calibration_weeks"]:
        report(0.05)
        base = Model(pop, pathogen, x["travel"], x["immune"])  # no intervention acts in the fitted weeks
        f = fit(base, data["observed"], first_cases)
        calibration = {"method": "Poisson maximum likelihood (L-BFGS-B), weekly counts", "r0": f.r0,
                       "seed_infections": f.seed, "rho": f.rho, "background_per_week": f.background,
                       "standard_errors": f.se, "deviance": f.deviance, "weeks": f.weeks,
                       "week_ends": [(start - dt.timedelta(days=1 + 7 * (f.weeks - 1 - w))).isoformat()
                                     for w in range(f.weeks)],
                       "observed": data["observed"], "fitted": f.fitted}
        r0, seed, rho, background = f.r0, f.seed, f.rho, f.background
        model = Model(pop, replace(pathogen, r0=r0), x["travel"], x["immune"], interventions)
    else:
        r0, seed, rho, background = pathogen.r0, x["seed_infections"], x["rho"], 0.0
    report(0.5)
    weights = seed_weights(model, first_cases)
    traj = model.run(offset + x["days"], seed * weights, progress=lambda f: report(0.5 + 0.3 * f))
    infections = traj.infections[offset:]  # (days, R, A), the projection from as_of
    cases = background / 7 + rho * infections.sum(axis=2)  # expected diagnoses per day and region
    scale = data["persons"] / NATIONAL_POPULATION if x["bed_scale"] == "sample" else float(x["bed_scale"])
    severity = Severity.from_inputs(x["severity"])
    demand = hospital_demand(infections, rho, severity, data, scale, start)
    report(0.95)
    days = [(start + dt.timedelta(days=d)).isoformat() for d in range(x["days"])]
    national = infections.sum(axis=(1, 2))
    peak = int(np.argmax(national))
    final = traj.states[-1]
    return {
        "days": days, "regions": regions, "age_groups": list(AGE_GROUPS),
        "parameters": {"r0": r0, "beta": model.beta, "latent_days": pathogen.latent_days,
                       "infectious_days": pathogen.infectious_days, "seed_infections": seed, "rho": rho,
                       "background_per_week": background, "travel": x["travel"], "immune": x["immune"],
                       "bed_scale": scale},
        "calibration": calibration,
        "infections": {"national": national.tolist(), "by_region": infections.sum(axis=2).T.tolist(),
                       "by_age": infections.sum(axis=1).T.tolist()},
        "cases": {"national": cases.sum(axis=1).tolist(), "by_region": cases.T.tolist()},
        "peak": {"day": days[peak], "infections": float(national[peak]), "cases": float(cases.sum(axis=1)[peak])},
        "attack_rate": float((final[3].sum() - pop.sizes.sum() * x["immune"]) / pop.sizes.sum()),
        "vaccinated_protected": float(final[4].sum()),
        "demand": demand,
    }


__all__ = ["InputError", "check", "simulate"]
