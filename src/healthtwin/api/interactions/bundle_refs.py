"""The order a transaction's writes run in, and what follows when a create is answered by a stored resource.

A write rule may answer a create with a resource already stored (`WriteEvent.existing`: the patient index's
certain match, mpi/fin.py). The entry's fullUrl then names that resource, not the id assigned to the create,
so the entries referring to it must be written after it and with their references redirected. Creates are
therefore written each after the creates it refers to (in Bundle order otherwise), then updates and patches.
"""
from __future__ import annotations

from typing import Any

from ...fhir.outcome import FHIRError


def write_order(entries: list) -> list:
    """The POST entries, each after the POSTs its references name (Bundle order where nothing says
    otherwise; in a cycle, Bundle order), then PUT and PATCH in Bundle order. DELETEs have run already."""
    creates = {f"{e.type}/{e.assigned_id}": e for e in entries
               if e.method == "POST" and getattr(e, "assigned_id", None) is not None}
    ordered: list = []
    entered: set[int] = set()
    for root in entries:
        if root.method != "POST" or root.index in entered:
            continue
        entered.add(root.index)
        stack = [(root, iter(root.refers_to))]  # depth first, without recursion: a chain may be long
        while stack:
            entry, deps = stack[-1]
            for ref in deps:
                dep = creates.get(ref)
                if dep is not None and dep.index not in entered:
                    entered.add(dep.index)
                    stack.append((dep, iter(dep.refers_to)))
                    break
            else:
                stack.pop()
                ordered.append(entry)
    return ordered + [e for e in entries if e.method in ("PUT", "PATCH")]


def redirect(entries: list, answered: Any, mapping: dict[str, str]) -> None:
    """`answered` (a POST) was answered with the stored `answered.existing`: its fullUrl, and every reference
    another entry makes to it, now name that resource. An entry written before it that refers to it (the two
    refer to each other) cannot be changed any more: the transaction is refused, nothing is stored."""
    old = f"{answered.type}/{answered.assigned_id}"
    new = f"{answered.existing.type}/{answered.existing.id}"
    if answered.full_url:
        mapping[answered.full_url] = new
    for entry in entries:
        if entry is answered or old not in entry.refers_to:
            continue
        if entry.written:
            raise FHIRError(409, f"{answered.location} is answered with the stored {new} (a create of a resource "
                                 f"already stored), but {entry.location}, which it refers to and which refers to it, "
                                 "was written first: send them in two requests", "conflict", entry.location)
        _replace(entry.resource, old, new)
        del entry.refers_to[old]
        entry.refers_to[new] = None


def _replace(node: Any, old: str, new: str) -> None:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("reference") == old:
                item["reference"] = new
            stack.extend(v for v in item.values() if type(v) is dict or type(v) is list)
        elif isinstance(item, list):
            stack.extend(v for v in item if type(v) is dict or type(v) is list)
