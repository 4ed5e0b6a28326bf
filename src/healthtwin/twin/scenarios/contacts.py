"""Contacts per day by setting and age group, the mixing of the SEIR model.

The matrices are POLYMOD's (Mossong et al. 2008, PLoS Med 5:e74: diaries of 7,290 participants in eight
European countries) averaged and aggregated by us to four age groups; they are approximate. No survey of
Azerbaijan exists to our knowledge; Prem et al. (2021, PLoS Comput Biol 17:e1009098) project matrices for
177 countries, and a run can use such a matrix in place of these when it is at hand. Entry [a, b] is the
mean number of contacts a person of group a has with persons of group b per day; `symmetric` makes them
reciprocal for the twin's population (C[a, b] N_a = C[b, a] N_b), since every contact has two ends.
"""
from __future__ import annotations

import numpy as np

AGE_GROUPS = ("0-4", "5-14", "15-64", "65+")
AGE_BOUNDS = ((0, 4), (5, 14), (15, 64), (65, 200))

SETTINGS = {
    "home": np.array([[1.0, 1.2, 2.0, 0.3], [0.6, 1.5, 2.3, 0.3], [0.3, 0.7, 1.8, 0.3], [0.2, 0.3, 1.0, 0.9]]),
    "school": np.array([[1.5, 0.5, 0.3, 0.0], [0.2, 6.0, 0.8, 0.0], [0.05, 0.3, 0.4, 0.0], [0.0, 0.0, 0.05, 0.0]]),
    "work": np.array([[0.0, 0.0, 0.1, 0.0], [0.0, 0.1, 0.3, 0.0], [0.0, 0.1, 3.5, 0.1], [0.0, 0.0, 0.5, 0.1]]),
    "other": np.array([[0.8, 0.5, 1.5, 0.3], [0.3, 2.0, 2.0, 0.3], [0.2, 0.5, 3.0, 0.5], [0.2, 0.3, 1.5, 1.0]]),
}


def symmetric(contacts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The reciprocal matrix nearest the survey's: total contacts between two groups averaged both ways."""
    total = contacts * sizes[:, None]
    return (total + total.T) / 2 / sizes[:, None]


def age_group(age: int) -> int:
    for k, (lo, hi) in enumerate(AGE_BOUNDS):
        if lo <= age <= hi:
            return k
    raise ValueError(f"age {age}")
