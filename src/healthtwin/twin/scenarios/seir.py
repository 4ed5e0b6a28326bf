"""An age-structured SEIR model with regional mixing and interventions (docs/twin.md, "Scenarios").

Compartments per region r and age group a: S, E, I, R and V (protected by vaccination). With the
prevalence each region sees, q[r, b] = sum over r' of M[r, r'] * I[r', b] / N[r', b], the force of infection is

    lambda[r, a] = beta * masks(t) * sum over b of C(t)[a, b] * q[r, b]
    C(t) = home + school(t) * school + work(t) * work + other(t) * other

(contacts per day by setting, `contacts.py`), and M mixes regions: a share `travel` of each person's
contacts is spread over all regions in proportion to their population, the rest stays at home. Flows:
S -> E at lambda, E -> I at sigma = 1 / latent days, I -> R at gamma = 1 / infectious days; a vaccination
campaign moves S -> V (`interventions.py`). The equations are integrated with fixed-step fourth-order
Runge-Kutta (2 steps a day), so a run is deterministic and every flow that leaves one compartment enters
another: the population is conserved to rounding.

beta is set from R0 as R0 / (spectral radius of the next-generation matrix) (Diekmann, Heesterbeek & Metz
1990): with every contact at its full level and everyone susceptible, one infection in group b causes
beta * C[a, b] * N_a / N_b / gamma infections in group a.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .contacts import AGE_GROUPS, SETTINGS, symmetric
from .interventions import Interventions

STEPS_PER_DAY = 2  # RK4 at half a day: the rates are at most ~1/day, so the step error is far below the data's


@dataclass(frozen=True)
class Pathogen:
    name: str
    r0: float
    latent_days: float
    infectious_days: float
    source: str


# Natural-history defaults; each can be overridden in a run's inputs.
PATHOGENS = {
    "influenza": Pathogen("influenza", 1.3, 2.0, 3.0,
                          "R of seasonal influenza: median 1.28 (Biggerstaff et al. 2014, BMC Infect Dis 14:480); "
                          "latent 2 d, infectious 3 d (Carrat et al. 2008, Am J Epidemiol 167:775)"),
    "measles": Pathogen("measles", 15.0, 10.0, 8.0,
                        "R0 12-18 (Guerra et al. 2017, Lancet Infect Dis 17:e420); latent ~10 d, infectious ~8 d "
                        "(4 days either side of rash onset)"),
    "covid19": Pathogen("covid19", 2.5, 3.0, 5.0,
                        "ancestral SARS-CoV-2: R0 ~2.5, latent ~3 d, infectious ~5 d (Davies et al. 2020, "
                        "Nat Med 26:1205)"),
}


@dataclass
class Population:
    """Persons per region and age group (rows: `regions`; columns: AGE_GROUPS)."""
    regions: list[str]
    sizes: np.ndarray  # shape (R, A)

    def __post_init__(self) -> None:
        self.sizes = np.asarray(self.sizes, dtype=float)
        if self.sizes.shape != (len(self.regions), len(AGE_GROUPS)) or (self.sizes <= 0).any():
            raise ValueError("population sizes must be positive, one row per region and one column per age group")


@dataclass
class Model:
    population: Population
    pathogen: Pathogen
    travel: float = 0.1  # share of contacts made outside one's own region
    immune: float = 0.0  # share immune at the start (R), every group alike
    interventions: Interventions = field(default_factory=Interventions)

    def __post_init__(self) -> None:
        n = self.population.sizes
        self.contacts = {s: symmetric(SETTINGS[s], n.sum(axis=0)) for s in SETTINGS}
        share = n.sum(axis=1) / n.sum()
        r = len(self.population.regions)
        self.mixing = (1 - self.travel) * np.eye(r) + self.travel * np.tile(share, (r, 1))
        self.sigma = 1.0 / self.pathogen.latent_days
        self.gamma = 1.0 / self.pathogen.infectious_days
        self.beta = beta_from_r0(self.pathogen.r0, sum(self.contacts.values()), n.sum(axis=0), self.gamma)

    def force(self, infectious: np.ndarray, day: int) -> np.ndarray:
        q = self.mixing @ (infectious / self.population.sizes)
        return q @ self._contacts_on(day)

    def _contacts_on(self, day: int) -> np.ndarray:
        """beta * C(t)^T of the day (interventions change at the start of a day), computed once a day."""
        if getattr(self, "_day", None) != day:
            w = self.interventions.weights(day)
            self._day, self._c = day, self.beta * sum(w.get(s, 1.0) * m for s, m in self.contacts.items()).T
        return self._c

    def run(self, days: int, seed_infections: np.ndarray, progress: Callable[[float], None] | None = None
            ) -> "Trajectory":
        """Integrates `days` days from `seed_infections` persons in E (shape (R, A)); returns daily values."""
        n = self.population.sizes
        seeds = np.minimum(np.asarray(seed_infections, dtype=float), n * (1 - self.immune))
        y = np.stack([n * (1 - self.immune) - seeds, seeds, np.zeros_like(n), n * self.immune, np.zeros_like(n),
                      np.zeros_like(n)])  # S, E, I, R, V, cumulative infections
        out = np.empty((days + 1, *y.shape))
        out[0] = y
        h = 1.0 / STEPS_PER_DAY
        for d in range(days):
            for k in range(STEPS_PER_DAY):
                t = d + k * h
                k1 = self._rates(y, t)
                k2 = self._rates(y + h / 2 * k1, t)
                k3 = self._rates(y + h / 2 * k2, t)
                k4 = self._rates(y + h * k3, t)
                y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            y = self.interventions.vaccinate(y, d, n)
            out[d + 1] = y
            if progress is not None and d % 10 == 0:
                progress(d / days)
        return Trajectory(self.population.regions, out)

    def _rates(self, y: np.ndarray, day: float) -> np.ndarray:
        s, e, i = y[0], y[1], y[2]
        infection = self.force(i, int(day)) * s
        latent, recovery = self.sigma * e, self.gamma * i
        out = np.empty_like(y)
        out[0], out[1], out[2], out[3], out[4], out[5] = -infection, infection - latent, latent - recovery, \
            recovery, 0.0, infection
        return out


def beta_from_r0(r0: float, contacts: np.ndarray, sizes: np.ndarray, gamma: float) -> float:
    ngm = contacts * sizes[:, None] / sizes[None, :] / gamma
    return float(r0 / max(abs(np.linalg.eigvals(ngm))))


@dataclass
class Trajectory:
    regions: list[str]
    states: np.ndarray  # (days + 1, 6, R, A): S, E, I, R, V, cumulative infections

    @property
    def infections(self) -> np.ndarray:
        """New infections per day, shape (days, R, A)."""
        return np.diff(self.states[:, 5], axis=0)

    @property
    def total(self) -> np.ndarray:
        """Persons alive in the model per day (S+E+I+R+V), shape (days + 1, R, A)."""
        return self.states[:, :5].sum(axis=1)


__all__ = ["AGE_GROUPS", "Model", "PATHOGENS", "Pathogen", "Population", "Trajectory", "beta_from_r0"]
