"""How a package plugs into the HTTP application: it hands the composition root one `Contribution`.

api/ defines this interface and never imports the packages that implement it (analytics/, and the
registries, twin, patient index and web pages to come): the composition root (healthtwin/composition.py)
asks each package for its contribution and passes the list to `api.app.assemble`, which
* mounts `routes` (Starlette routes or mounts) beside the FHIR API, matched before the `/fhir` mount;
* registers `operations` (`api.operations.registry.Operation`, described with `registry.define`) in the
  table the router dispatches `$name` from and the CapabilityStatement lists;
* adds `write_rules` (`api.write_rules.WriteRule`) to `Services.write_rules`: checks and reactions that run
  inside the store transaction of every create, update and delete of the types they name;
* calls `start()` at application start-up, in the order of the list, and `stop()` at shutdown, in reverse.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .operations.registry import Operation, register
from .write_rules import WriteRule


@dataclass
class Contribution:
    name: str
    routes: list[Any] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)
    write_rules: list[WriteRule] = field(default_factory=list)
    start: Callable[[], None] | None = None
    stop: Callable[[], None] | None = None


def register_operations(contributions: list[Contribution]) -> None:
    for contribution in contributions:
        for op in contribution.operations:
            register(op)
