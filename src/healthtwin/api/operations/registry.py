"""Named operations ($name): where each may be invoked, and the handler. The CapabilityStatement is
generated from this table, so it lists exactly what is implemented."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

Handler = Callable[..., Awaitable]


@dataclass(frozen=True)
class Operation:
    name: str
    types: tuple[str, ...] | None  # None: any type
    system: bool
    type_level: bool
    instance: bool
    handler: Handler
    definition: str


_OPS: list[Operation] = []


def operation(name: str, types=None, system=False, type_level=False, instance=False, definition="",
              methods: tuple[str, ...] = ("GET", "POST")):
    """Registers an operation; `methods` are the HTTP methods it answers (the router refuses others with 405)."""
    def register(fn: Handler) -> Handler:
        fn.methods = methods  # type: ignore[attr-defined]
        _OPS.append(Operation(name, tuple(types) if types else None, system, type_level, instance, fn, definition))
        return fn
    return register


def find(name: str, rtype: str | None, instance: bool) -> Handler | None:
    _load()
    for op in _OPS:
        if op.name != name:
            continue
        if rtype is None and op.system:
            return op.handler
        if rtype is not None and (op.types is None or rtype in op.types):
            if (instance and op.instance) or (not instance and op.type_level):
                return op.handler
    return None


def all_operations() -> list[Operation]:
    _load()
    return list(_OPS)


def _load() -> None:
    # Importing the modules registers their operations.
    from . import (bulk_export, bulk_import, everything, lastn, meta, reindex, security_ops,  # noqa: F401
                   terminology, validate)
    from ...analytics import run_operation  # noqa: F401  ($viewdefinition-run)
