"""What the patient index adds to the HTTP application (api/plugins.py): the FIN's uniqueness among active
Patients as a write rule (fin.py)."""
from __future__ import annotations

from functools import partial
from typing import Any

from ..api.plugins import Contribution
from ..api.write_rules import WriteRule
from . import fin


def contribution(services: Any, on_duplicate: str = "refuse") -> Contribution:
    if on_duplicate not in fin.POLICIES:
        raise ValueError(f"HEALTHTWIN_MPI_ON_DUPLICATE is one of {', '.join(fin.POLICIES)}, not {on_duplicate!r}")
    rules = [WriteRule("mpi-fin-unique", ("Patient",), check=partial(fin.check_unique, policy=on_duplicate))]
    return Contribution("mpi", write_rules=rules)
