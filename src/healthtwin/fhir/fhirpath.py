"""FHIRPath over FHIR JSON that answers *where*, not just *what*.

fhirpathpy evaluates expressions to values (copies), but FHIRPath Patch has to modify the
selected element in place. `select()` walks the simple path subset used by patches, step by step,
and returns Locations (parent dict + JSON key + list index + FHIR type). Supported steps: member
names (choice elements by bare name, e.g. `value` -> `valueQuantity`), `[n]` indexers, `where()`
(criteria evaluated by fhirpathpy on one candidate at a time), `ofType()`/`as()`, `extension(url)`,
and first/last/tail/skip/take/single. Anything else is reported as unsupported (status 400).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from fhirpathpy import evaluate as fp_evaluate
from fhirpathpy.models import models as fp_models

from healthtwin.fhir.regex import FHIRPATHPY_FUNCTIONS
from healthtwin.fhir.xml_json import ElementShape, is_primitive, is_subtype, resolve_key


class FhirPathError(Exception):
    """Path syntax/unsupported step (status 400) or an ambiguous selection (422)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Location:
    """One element selected by a path: `container[key]` or `container[key][index]`.

    For primitives the id/extensions live in the `_key` sibling (index-aligned for lists).
    `type` is the concrete FHIR type (or a backbone structure path); None when unknown."""

    container: dict[str, Any]
    key: str
    index: int | None
    type: str | None
    shape: ElementShape | None

    def value(self) -> Any:
        v = self.container.get(self.key)
        return v[self.index] if self.index is not None and isinstance(v, list) else v

    @property
    def primitive(self) -> bool:
        return is_primitive(self.type) if self.type else not isinstance(self.value(), dict)

    def struct(self) -> str | None:
        """Where the children of this element are defined (contained resources: their type)."""
        v = self.value()
        if self.type == "Resource" or (isinstance(v, dict) and "resourceType" in v):
            return v.get("resourceType") if isinstance(v, dict) else None
        return self.type

    def ext_holder(self, create: bool) -> dict[str, Any] | None:
        """The `_key` object of a primitive (created on demand for `add ... extension`)."""
        ukey = "_" + self.key
        if self.index is None:
            if create and not isinstance(self.container.get(ukey), dict):
                self.container[ukey] = {}
            held = self.container.get(ukey)
            return held if isinstance(held, dict) else None
        lst = self.container.get(ukey)
        if not isinstance(lst, list):
            if not create:
                return None
            lst = self.container[ukey] = [None] * len(self.container.get(self.key) or [])
        if create and lst[self.index] is None:
            lst[self.index] = {}
        held = lst[self.index] if self.index < len(lst) else None
        return held if isinstance(held, dict) else None


_IDENT = r"(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
STEP_RE = re.compile(rf"^(?P<name>{_IDENT})(?P<call>\((?P<args>.*)\))?(?P<idx>(?:\[\s*\d+\s*\])*)$", re.S)
_COLLECTION_FUNCS = {"first", "last", "tail", "skip", "take", "single"}
_R4 = fp_models["r4"]


def split_steps(path: str) -> list[str]:
    """Split at top-level dots (not inside brackets or string literals)."""
    steps: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in path:
        if quote:
            quote = "" if ch == quote and (not cur or cur[-1] != "\\") else quote
        elif ch in "'`\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "." and depth == 0:
            steps.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    steps.append("".join(cur).strip())
    if depth != 0 or quote or any(not s for s in steps):
        raise FhirPathError(f"invalid FHIRPath expression {path!r}", 400)
    return steps


def _children(loc: Location, name: str) -> list[Location]:
    """All child elements called `name` (choice elements match by their bare name)."""
    if loc.primitive:
        holder = loc.ext_holder(False)  # a primitive's only children are id and extension
        if holder is None or name not in ("id", "extension"):
            return []
        return _children(Location({"$": holder}, "$", None, "Element", None), name)
    node = loc.value()
    if not isinstance(node, dict):
        return []
    struct = loc.struct()
    keys = [k for k in node if not k.startswith("_") and (k == name or k.startswith(name))]
    keys += [k[1:] for k in node if k.startswith("_") and k[1:] not in node and k[1:].startswith(name)]
    found: list[Location] = []
    for key in keys:
        resolved = resolve_key(struct, key) if struct else None
        if key != name and (resolved is None or resolved[0].name != name):
            continue
        shape, type_code = resolved if resolved else (None, None)
        present = node.get(key, node.get("_" + key))
        if isinstance(present, list):
            found.extend(Location(node, key, i, type_code, shape) for i in range(len(present)))
        else:
            found.append(Location(node, key, None, type_code, shape))
    return found


def _filter(loc: Location, step: str, resource: dict[str, Any]) -> bool:
    """Keep `loc` if `where(criteria)` evaluated on it alone is not empty."""
    item = copy.deepcopy(loc.value())  # fhirpathpy annotates its input in place
    # Telling fhirpathpy the item's type lets criteria use choice elements (`value.ofType(...)`).
    base = loc.struct() if loc.type == "Resource" else loc.type
    expr: str | dict[str, str] = {"expression": step, "base": base} if base else step
    # %resource is rarely used in patch paths; copying the whole resource per candidate is not free.
    env = {"resource": copy.deepcopy(resource)} if "%" in step else None
    try:
        result = fp_evaluate(item, expr, env, _R4, {"userInvocationTable": FHIRPATHPY_FUNCTIONS})
    except Exception as exc:  # fhirpathpy raises assorted exception types
        raise FhirPathError(f"cannot evaluate {step!r}: {exc}", 400) from exc
    return len(result) > 0


def _apply_step(locs: list[Location], step: str, resource: dict[str, Any]) -> list[Location]:
    m = STEP_RE.match(step)
    if not m:
        raise FhirPathError(f"unsupported FHIRPath step {step!r}", 400)
    name, args = m["name"].strip("`"), (m["args"] or "").strip()
    if m["call"] is None:
        locs = [c for loc in locs for c in _children(loc, name)]
    elif name in _COLLECTION_FUNCS:
        n = int(args) if args.isdigit() else 1
        if name == "single" and len(locs) > 1:
            raise FhirPathError("single() found several elements", 422)
        locs = {"first": locs[:1], "last": locs[-1:], "tail": locs[1:], "skip": locs[n:],
                "take": locs[:n], "single": locs}[name]
    elif name in ("ofType", "as"):
        locs = [loc for loc in locs if (t := loc.struct() if loc.type == "Resource" else loc.type)
                and (t == args or is_subtype(t, args))]
    elif name == "extension":
        url = args.strip("'\"")
        locs = [c for loc in locs for c in _children(loc, "extension")
                if isinstance(c.value(), dict) and c.value().get("url") == url]
    elif name == "where":
        locs = [loc for loc in locs if _filter(loc, step[: len(step) - len(m["idx"])], resource)]
    else:
        raise FhirPathError(f"unsupported FHIRPath function {name}() in a patch path", 400)
    for index in re.findall(r"\d+", m["idx"]):
        locs = locs[int(index): int(index) + 1]
    return locs


def root_location(resource: dict[str, Any]) -> Location:
    """The resource itself, held in a one-key pseudo container so it is addressed like any node."""
    return Location({"$": resource}, "$", None, resource.get("resourceType"), None)


def select(resource: dict[str, Any], path: str) -> list[Location]:
    """All elements `path` selects, in document order (raises FhirPathError if unsupported)."""
    steps = split_steps(path)
    locs = [root_location(resource)]
    first = STEP_RE.match(steps[0])
    # A leading type name selects the resource itself; otherwise the path starts at its children.
    if first and first["call"] is None and first["name"] in (resource.get("resourceType"), "Resource", "DomainResource"):
        for index in re.findall(r"\d+", first["idx"]):
            locs = locs[int(index): int(index) + 1]
        steps = steps[1:]
    for step in steps:
        locs = _apply_step(locs, step, resource)
    return locs
