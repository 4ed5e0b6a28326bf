"""FHIR PATCH: JSON Patch (RFC 6902) and FHIRPath Patch (FHIR R4, fhirpatch.html).

Both functions work on a deep copy and return it, so a failed patch never leaves a half-modified
resource behind (the caller keeps the original).

FHIRPath Patch needs to *modify* the node a path selects, which a FHIRPath engine cannot do: it
returns values, not places. So paths are resolved to Locations (parent dict + JSON key + list
index + FHIR type) by healthtwin.fhir.fhirpath.select. Element cardinality and types come
from the R4 shape table (xml_json.shape_of / resolve_key), which tells whether a new element
repeats and how a choice element is keyed (`deceased` + Boolean -> `deceasedBoolean`).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from healthtwin.fhir.fhirpath import STEP_RE, FhirPathError, Location, root_location, select, split_steps
from healthtwin.fhir.xml_json import ElementShape, is_primitive, is_subtype, resolve_key, shape_of, type_suffix


class PatchError(Exception):
    """A patch that is malformed (status 400) or cannot be applied / gives an invalid result (422)."""

    def __init__(self, message: str, status: int = 422, location: str | None = None) -> None:
        super().__init__(message if location is None else f"{message} (at {location})")
        self.message = message
        self.status = status
        self.location = location


# --------------------------------------------------------------------------- JSON Patch

_MISSING = object()


def _pointer(ptr: Any, where: str) -> list[str]:
    if not isinstance(ptr, str) or (ptr and not ptr.startswith("/")):
        raise PatchError(f"invalid JSON pointer {ptr!r}", 400, where)
    # RFC 6901: ~1 before ~0, so that "~01" becomes "~1" and not "/".
    return [t.replace("~1", "/").replace("~0", "~") for t in ptr.split("/")[1:]]


def _array_index(token: str, size: int, where: str, allow_end: bool) -> int:
    if allow_end and token == "-":
        return size
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise PatchError(f"invalid array index {token!r}", 422, where)
    index = int(token)
    if index > size or (index == size and not allow_end):
        raise PatchError(f"array index {index} out of range", 422, where)
    return index


def _resolve(doc: Any, tokens: list[str], where: str) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path /{'/'.join(tokens)} does not exist", 422, where)
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(token, len(node), where, False)]
        else:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist", 422, where)
    return node


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python's ==, true != 1 and "10" != 10, but 1 == 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _ptr_add(doc: Any, tokens: list[str], value: Any, where: str) -> Any:
    if not tokens:
        return value  # adding at the root replaces the whole document
    parent = _resolve(doc, tokens[:-1], where)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_array_index(last, len(parent), where, True), value)
    else:
        raise PatchError(f"cannot add to a non-container at /{'/'.join(tokens)}", 422, where)
    return doc


def _ptr_remove(doc: Any, tokens: list[str], where: str) -> Any:
    if not tokens:
        raise PatchError("cannot remove the whole document", 422, where)
    parent = _resolve(doc, tokens[:-1], where)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist", 422, where)
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_array_index(last, len(parent), where, False))
    raise PatchError(f"path /{'/'.join(tokens)} does not exist", 422, where)


def apply_json_patch(resource: dict[str, Any], patch: list[Any]) -> dict[str, Any]:
    """Apply an RFC 6902 JSON Patch; returns a new dict, `resource` is left untouched."""
    if not isinstance(patch, list):
        raise PatchError("a JSON Patch must be an array of operations", 400)
    doc: Any = copy.deepcopy(resource)
    for i, op in enumerate(patch):
        where = f"patch[{i}]"
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise PatchError("operation must be an object with an 'op' member", 400, where)
        kind = op["op"]
        if kind not in ("add", "remove", "replace", "move", "copy", "test"):
            raise PatchError(f"unknown operation {kind!r}", 400, where)
        path = _pointer(op.get("path", _MISSING), where)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"'{kind}' needs a 'value'", 400, where)
        if kind in ("move", "copy"):
            src = _pointer(op.get("from", _MISSING), where)
        if kind == "add":
            doc = _ptr_add(doc, path, copy.deepcopy(op["value"]), where)
        elif kind == "remove":
            _ptr_remove(doc, path, where)
        elif kind == "replace":
            _resolve(doc, path, where)  # the target must exist (unlike add)
            if path:
                _ptr_remove(doc, path, where)
            doc = _ptr_add(doc, path, copy.deepcopy(op["value"]), where)
        elif kind == "move":
            if path[: len(src)] == src and len(path) > len(src):
                raise PatchError("cannot move a value into one of its own children", 422, where)
            if path != src:
                doc = _ptr_add(doc, path, _ptr_remove(doc, src, where), where)
        elif kind == "copy":
            doc = _ptr_add(doc, path, copy.deepcopy(_resolve(doc, src, where)), where)
        elif not _json_equal(_resolve(doc, path, where), op["value"]):
            raise PatchError(f"test failed: value at {op['path']} differs", 422, where)
    if not isinstance(doc, dict):
        raise PatchError("the patched document is not a JSON object", 422)
    if "resourceType" in resource and doc.get("resourceType") != resource["resourceType"]:
        raise PatchError("a patch cannot change the resourceType", 422)
    return doc


# --------------------------------------------------------------------------- FHIRPath Patch


def _one(resource: dict[str, Any], path: str, what: str) -> Location:
    locs = select(resource, path)
    if not locs:
        raise PatchError(f"No content found at {path} when {what}", 422)
    if len(locs) > 1:
        raise PatchError(f"Multiple elements found at {path} when {what}", 422)
    return locs[0]


@dataclass
class _Value:
    """A value taken from a Parameters `value` part: FHIR type, JSON value, primitive `_` part."""

    type: str | None
    json: Any
    ext: dict[str, Any] | None = None


def _part_value(part: dict[str, Any], struct: str | None, where: str) -> _Value:
    """Decode value[x] (or nested `part`s, the "anonymous type" for backbone elements)."""
    keys = [k for k in part if k.startswith("value") and len(k) > 5]
    if len(keys) > 1:
        raise PatchError("a value part holds several value[x]", 400, where)
    if keys:
        key = keys[0]
        resolved = resolve_key("Parameters.parameter", key)
        type_code = resolved[1] if resolved else key[5].lower() + key[6:]
        ext = part.get("_" + key)
        return _Value(type_code, copy.deepcopy(part[key]), copy.deepcopy(ext) if isinstance(ext, dict) else None)
    if isinstance(part.get("resource"), dict):
        return _Value("Resource", copy.deepcopy(part["resource"]))
    if "part" not in part:
        raise PatchError("the value part has no value[x] and no parts", 400, where)
    out: dict[str, Any] = {}
    for sub in part["part"]:
        name = sub.get("name")
        if not isinstance(name, str):
            raise PatchError("a part has no name", 400, where)
        shape = shape_of(struct, name) if struct else None
        value = _part_value(sub, shape.types[0] if shape and not shape.is_choice else None, where)
        _store(out, struct, name, value, where, repeat_if_present=True)
    return _Value(None, out)


def _check_type(shape: ElementShape | None, value: _Value, name: str, where: str) -> str | None:
    """The concrete type for `value` in this element; 422 when it clearly does not fit."""
    if shape is None or value.type is None:
        return shape.types[0] if shape is not None and not shape.is_choice else value.type
    for t in shape.types:
        if t == value.type or is_subtype(value.type, t):
            return t
    if not shape.is_choice and is_primitive(value.type) and is_primitive(shape.types[0]):
        return shape.types[0]  # e.g. valueString for a code/xhtml element: same JSON shape
    raise PatchError(f"a {value.type} cannot be used for element {name} ({'|'.join(shape.types)})", 422, where)


def _key_for(shape: ElementShape | None, name: str, type_code: str | None) -> str:
    return name + type_suffix(type_code) if shape is not None and shape.is_choice and type_code else name


def _store(obj: dict[str, Any], struct: str | None, name: str, value: _Value, where: str,
           repeat_if_present: bool = False) -> None:
    """Add `value` as child `name` of `obj` (appending when the element repeats)."""
    resolved = resolve_key(struct, name) if struct else None
    shape = resolved[0] if resolved else (shape_of(struct, name) if struct else None)
    if resolved and not resolved[0].is_choice:
        name = resolved[0].name
    elif resolved:  # name given with its type suffix, e.g. deceasedBoolean
        name, value = resolved[0].name, _Value(value.type or resolved[1], value.json, value.ext)
    type_code = _check_type(shape, value, name, where)
    key = _key_for(shape, name, type_code)
    repeats = shape.is_array if shape is not None else (isinstance(obj.get(key), list) or
                                                         (repeat_if_present and key in obj))
    if repeats:
        items = obj.get(key)
        if items is not None and not isinstance(items, list):
            items = obj[key] = [items]
        _insert(obj, key, len(items or []), value)
        return
    if shape is not None and shape.is_choice:
        taken = [k for k in obj if not k.startswith("_") and (r := resolve_key(struct or "", k)) and r[0] == shape]
    else:
        taken = [key] if obj.get(key) is not None else []
    if taken:  # only an extension-only primitive (`_birthDate` without a value) may be added to
        raise PatchError(f"element {name} already has a value (use replace)", 422, where)
    if value.json is not None:
        obj[key] = value.json
    if value.ext:
        obj.setdefault("_" + key, {}).update(value.ext)


def _insert(obj: dict[str, Any], key: str, index: int, value: _Value) -> None:
    """Insert into a list, keeping a primitive's `_key` list index-aligned."""
    items = obj.setdefault(key, [])
    ext = obj.get("_" + key)
    items.insert(index, value.json)
    if isinstance(ext, list) or value.ext:
        if not isinstance(ext, list):
            ext = obj["_" + key] = [None] * (len(items) - 1)
        ext.insert(index, value.ext)


def _remove_at(obj: dict[str, Any], key: str, index: int | None) -> _Value:
    """Remove an element (and its `_key` part); empty lists disappear, as FHIR JSON requires."""
    if index is None:
        return _Value(None, obj.pop(key, None), obj.pop("_" + key, None))
    json_value = obj[key].pop(index) if isinstance(obj.get(key), list) else None
    ext = obj.get("_" + key)
    ext_value = ext.pop(index) if isinstance(ext, list) and index < len(ext) else None
    for k in (key, "_" + key):
        if isinstance(obj.get(k), list) and all(x is None for x in obj[k]):
            del obj[k]
    return _Value(None, json_value, ext_value)


def _list_target(resource: dict[str, Any], path: str, what: str) -> tuple[dict[str, Any], str, ElementShape | None]:
    """insert/move name the list itself: evaluate the parent, the last step names the element."""
    steps = split_steps(path)
    m = STEP_RE.match(steps[-1])
    if not m or m["call"] is not None or m["idx"]:
        raise PatchError(f"the path of {what} must end with the name of a repeating element", 400)
    parent = _one(resource, ".".join(steps[:-1]), what) if len(steps) > 1 else root_location(resource)
    node = parent.value()
    if not isinstance(node, dict):
        raise PatchError(f"{path} is not a list of elements", 422)
    struct = parent.struct()
    shape = shape_of(struct, m["name"]) if struct else None
    if (shape is not None and not shape.is_array) or not isinstance(node.get(m["name"], []), list):
        raise PatchError(f"{path} is not a repeating element", 422)
    return node, m["name"], shape


def _operation(param: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    if param.get("name") != "operation":
        raise PatchError(f"unexpected parameter {param.get('name')!r} (expected 'operation')", 400, where)
    parts: dict[str, dict[str, Any]] = {}
    for part in param.get("part", []):
        pname = part.get("name") if isinstance(part, dict) else None
        if pname not in ("type", "path", "name", "value", "index", "source", "destination"):
            raise PatchError(f"unknown operation part {pname!r}", 400, where)
        if pname in parts:
            raise PatchError(f"operation part {pname!r} is repeated", 400, where)
        parts[pname] = part
    return parts


def _scalar(parts: dict[str, dict[str, Any]], name: str, key: str, where: str) -> Any:
    if name not in parts or key not in parts[name]:
        raise PatchError(f"operation needs a '{name}' part with {key}", 400, where)
    value = parts[name][key]
    if key == "valueInteger" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise PatchError(f"'{name}' must be a non-negative integer", 400, where)
    return value


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """Apply a FHIR R4 FHIRPath Patch (a Parameters resource); returns a new dict."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise PatchError("a FHIRPath Patch must be a Parameters resource", 400)
    if not isinstance(parameters.get("parameter", []), list):
        raise PatchError("Parameters.parameter must be an array", 400)
    doc = copy.deepcopy(resource)
    for i, param in enumerate(parameters.get("parameter", [])):
        where = f"Parameters.parameter[{i}]"
        parts = _operation(param, where)
        kind = _scalar(parts, "type", "valueCode", where)
        path = _scalar(parts, "path", "valueString", where)
        try:
            _apply_one(doc, kind, path, parts, where)
        except FhirPathError as exc:
            raise PatchError(exc.message, exc.status, where) from exc
        except PatchError as exc:
            if exc.location is None:
                raise PatchError(exc.message, exc.status, where) from exc
            raise
    _prune(doc)
    return doc


def _prune(node: Any) -> bool:
    """Drop objects left empty by deletes (FHIR JSON forbids `{}` and `[]`); returns whether
    `node` itself is now empty. Emptied items of `_given`-style lists become null instead, so
    they stay index-aligned with their values."""
    if isinstance(node, dict):
        for key in list(node):
            value = node[key]
            if isinstance(value, list):
                if key.startswith("_"):
                    node[key] = value = [None if _prune(x) else x for x in value]
                else:
                    node[key] = value = [x for x in value if not (isinstance(x, dict) and _prune(x))]
                if all(x is None for x in value):
                    del node[key]
            elif _prune(value):
                del node[key]
        return not node
    return False


def _apply_one(doc: dict[str, Any], kind: str, path: str, parts: dict[str, dict[str, Any]], where: str) -> None:
    if kind == "add":
        name = _scalar(parts, "name", "valueString", where)
        target = _one(doc, path, "adding")
        if target.primitive:
            if name not in ("id", "extension"):
                raise PatchError(f"cannot add {name} to the primitive at {path}", 422)
            holder, struct = target.ext_holder(True), "Element"  # type: tuple[Any, str | None]
        else:
            holder, struct = target.value(), target.struct()
        value = _part_value(_need(parts, "value", where), _child_struct(struct, name), where)
        assert isinstance(holder, dict)
        _store(holder, struct, name, value, where)
    elif kind == "insert":
        index = _scalar(parts, "index", "valueInteger", where)
        obj, key, shape = _list_target(doc, path, "inserting")
        if index > len(obj.get(key, [])):
            raise PatchError(f"index {index} is beyond the end of {path}", 422)
        value = _part_value(_need(parts, "value", where), _child_struct(None, key, shape), where)
        _check_type(shape, value, key, where)
        _insert(obj, key, index, value)
    elif kind == "move":
        source = _scalar(parts, "source", "valueInteger", where)
        destination = _scalar(parts, "destination", "valueInteger", where)
        obj, key, _ = _list_target(doc, path, "moving")
        size = len(obj.get(key, []))
        if source >= size or destination >= size:
            raise PatchError(f"source/destination out of range for {path} ({size} items)", 422)
        _insert(obj, key, destination, _remove_at(obj, key, source))
    elif kind == "delete":
        locs = select(doc, path)
        if len(locs) > 1:
            raise PatchError(f"Multiple elements found at {path} when deleting", 422)
        if locs and locs[0].key == "$" and locs[0].container.get("$") is doc:
            raise PatchError("cannot delete the resource itself", 422)
        if locs:
            _remove_at(locs[0].container, locs[0].key, locs[0].index)
    elif kind == "replace":
        target = _one(doc, path, "replacing")
        if target.key == "$":
            raise PatchError("cannot replace the resource itself", 422)
        name = target.shape.name if target.shape is not None else target.key
        value = _part_value(_need(parts, "value", where), _child_struct(None, name, target.shape), where)
        _replace(target, name, value, where)
    else:
        raise PatchError(f"unknown operation type {kind!r}", 400, where)


def _need(parts: dict[str, dict[str, Any]], name: str, where: str) -> dict[str, Any]:
    if name not in parts:
        raise PatchError(f"operation needs a '{name}' part", 400, where)
    return parts[name]


def _child_struct(struct: str | None, name: str, shape: ElementShape | None = None) -> str | None:
    """The structure an anonymous (parts-built) value of element `name` is defined by."""
    shape = shape if shape is not None else (shape_of(struct, name) if struct else None)
    return shape.types[0] if shape is not None and not shape.is_choice else None


def _replace(target: Location, name: str, value: _Value, where: str) -> None:
    type_code = _check_type(target.shape, value, name, where)
    key = _key_for(target.shape, name, type_code)
    obj, ukey = target.container, "_" + target.key
    if key != target.key:  # a choice element changing type: valueQuantity -> valueString
        _remove_at(obj, target.key, None)
        obj[key] = value.json
        if value.ext:
            obj["_" + key] = value.ext
        return
    if target.index is None:
        obj[key] = value.json
    else:
        obj[key][target.index] = value.json
    # A primitive keeps its id/extensions when only its value is replaced (as servers do for
    # setValue); extensions sent with the new value replace the old ones.
    if value.ext is not None or (ukey in obj and not (target.primitive and is_primitive(value.type or ""))):
        if target.index is None:
            obj.pop(ukey, None)
            if value.ext:
                obj[ukey] = value.ext
        elif isinstance(obj.get(ukey), list) or value.ext:
            holder = obj.setdefault(ukey, [None] * len(obj[key]))
            holder[target.index] = value.ext
            if all(x is None for x in holder):
                del obj[ukey]
