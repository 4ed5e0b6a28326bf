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


def define(name: str, types=None, system=False, type_level=False, instance=False, definition="",
           methods: tuple[str, ...] = ("GET", "POST")) -> Callable[[Handler], Operation]:
    """Describes an operation without registering it: what a package contributes (api/plugins.py).
    `methods` are the HTTP methods it answers (the router refuses others with 405)."""
    def describe(fn: Handler) -> Operation:
        fn.methods = methods  # type: ignore[attr-defined]
        return Operation(name, tuple(types) if types else None, system, type_level, instance, fn, definition)
    return describe


def register(op: Operation) -> None:
    """Adds an operation to the table, once (an application built twice in one process registers it again)."""
    if op not in _OPS:
        _OPS.append(op)


def operation(name: str, types=None, system=False, type_level=False, instance=False, definition="",
              methods: tuple[str, ...] = ("GET", "POST")):
    """Registers an operation of api/ itself; other packages contribute theirs through api/plugins.py."""
    def decorate(fn: Handler) -> Handler:
        register(define(name, types, system, type_level, instance, definition, methods)(fn))
        return fn
    return decorate


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
    # Importing the modules registers their operations; other packages' come through api/plugins.py.
    from . import (bulk_export, bulk_import, everything, lastn, meta, reindex, security_ops,  # noqa: F401
                   terminology, validate)
