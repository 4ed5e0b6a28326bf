"""Minimal FHIR R4 XML -> JSON conversion, plus the element shape table it relies on.

FHIR XML does not say which elements are arrays in JSON, nor which elements are primitives
(value attribute + `_name` sibling for id/extensions) versus complex types. Both facts come from
`definitions/xml_shapes.json`, generated from the R4 StructureDefinitions by
`scripts/gen_xml_table.py`. The same table is used by FHIRPath Patch (patch.py) to know whether a
new element repeats and what type it has.

The converter covers what test fixtures and simple clients send: resources, contained resources,
primitives with extensions, choice types and XHTML narrative. Unknown elements degrade gracefully
(repeated -> array, `value` attribute -> string) instead of failing.
"""
from __future__ import annotations

import functools
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"

_INT_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})


@dataclass(frozen=True)
class ElementShape:
    """What the R4 definitions say about one element of a structure."""

    name: str  # bare element name ("value" for value[x])
    types: tuple[str, ...]  # type codes; inline backbones/contentReferences are structure paths
    is_array: bool

    @property
    def is_choice(self) -> bool:
        return len(self.types) > 1


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, str]]:
    # Path-based on purpose: healthtwin/fhir may be a namespace package (no __init__.py).
    text = (Path(__file__).parent / "definitions" / "xml_shapes.json").read_text("utf-8")
    table: dict[str, dict[str, str]] = json.loads(text)
    return table


def is_primitive(type_code: str) -> bool:
    """FHIR convention: primitive type codes start lower-case; structure paths contain a dot."""
    return bool(type_code) and type_code[0].islower() and "." not in type_code


def _spec(struct: str, name: str) -> str | None:
    table = _table()
    seen: set[str] = set()
    cur: str | None = struct
    while cur and cur not in seen:
        seen.add(cur)
        own = table.get(cur)
        if own is not None and name in own:
            return own[name]
        if own is not None and "_base" in own:
            cur = own["_base"]
        elif "." in cur:
            cur = "BackboneElement"  # inline backbone: id/extension/modifierExtension
        else:
            cur = None
    return None


@functools.lru_cache(maxsize=4096)
def shape_of(struct: str, name: str) -> ElementShape | None:
    """The shape of element `name` (bare name, no type suffix) in structure `struct`."""
    spec = _spec(struct, name)
    if spec is None:
        return None
    is_array = spec.endswith("*")
    spec = spec.rstrip("*")
    if spec == "@":
        types: tuple[str, ...] = (f"{struct}.{name}",)
    elif spec.startswith("#"):
        types = (spec[1:],)
    elif spec == "~":
        types = tuple(_table()["_open"]["types"].split("|"))
    else:
        types = tuple(spec.split("|"))
    return ElementShape(name, types, is_array)


def type_suffix(type_code: str) -> str:
    """`dateTime` -> `DateTime`: how a type appears at the end of a choice element's JSON key."""
    return type_code[:1].upper() + type_code[1:]


@functools.lru_cache(maxsize=4096)
def resolve_key(struct: str, key: str) -> tuple[ElementShape, str] | None:
    """Map a JSON key (or XML element name) to (shape, concrete type): `valueQuantity` ->
    (shape of value[x], "Quantity"). None when the definitions do not know the key."""
    shape = shape_of(struct, key)
    if shape is not None and not shape.is_choice:
        return shape, shape.types[0]
    for cut in range(len(key) - 1, 0, -1):
        if not key[cut].isupper():
            continue
        shape = shape_of(struct, key[:cut])
        if shape is not None and shape.is_choice:
            for t in shape.types:
                if type_suffix(t) == key[cut:]:
                    return shape, t
    return None


def is_subtype(type_code: str, ancestor: str) -> bool:
    """True when `type_code` is `ancestor` or derives from it (Age -> Quantity, Patient -> Resource)."""
    table = _table()
    seen: set[str] = set()
    cur: str | None = type_code
    while cur and cur not in seen:
        if cur == ancestor:
            return True
        seen.add(cur)
        cur = table.get(cur, {}).get("_base")
    return False


def child_struct(type_code: str) -> str:
    """Where the children of a value of this type are defined."""
    return type_code


def primitive_from_text(type_code: str, text: str) -> Any:
    """XML attribute text -> JSON value for a primitive type."""
    if type_code == "boolean":
        return text == "true"
    if type_code in _INT_TYPES:
        try:
            return int(text)
        except ValueError:
            return text
    if type_code == "decimal":
        try:
            return int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:
            return text
    return text


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def xhtml_to_string(elem: ET.Element) -> str:
    """Serialize an XHTML element without ElementTree's ns0: prefixes (FHIR wants a plain
    `<div xmlns="http://www.w3.org/1999/xhtml">`)."""
    parts: list[str] = []

    def walk(e: ET.Element, root: bool) -> None:
        attrs = [(_local(k), v) for k, v in e.attrib.items()]
        if root:
            attrs.insert(0, ("xmlns", XHTML_NS))
        attr_text = "".join(f" {k}={quoteattr(v)}" for k, v in attrs)
        parts.append(f"<{_local(e.tag)}{attr_text}")
        if e.text is None and len(e) == 0:
            parts.append("/>")
        else:
            parts.append(">" + escape(e.text or ""))
            for child in e:
                walk(child, False)
                parts.append(escape(child.tail or ""))
            parts.append(f"</{_local(e.tag)}>")

    walk(elem, True)
    return "".join(parts)


def _add(out: dict[str, Any], key: str, value: Any, is_array: bool) -> None:
    if is_array:
        out.setdefault(key, []).append(value)
    elif key in out:
        # Repeated although the definitions say single: keep everything rather than lose data.
        prev = out[key]
        out[key] = (prev if isinstance(prev, list) else [prev]) + [value]
    else:
        out[key] = value


def _convert_children(elem: ET.Element, struct: str, out: dict[str, Any]) -> None:
    # Unknown elements repeated in this parent are arrays even without a definition.
    names = [_local(c.tag) for c in elem if isinstance(c.tag, str)]
    for child in elem:
        if not isinstance(child.tag, str):
            continue  # comments / processing instructions
        name = _local(child.tag)
        resolved = resolve_key(struct, name)
        if resolved is None:
            shape, type_code = None, ("string" if "value" in child.attrib else "?")
            is_array = names.count(name) > 1
        else:
            shape, type_code = resolved
            is_array = shape.is_array
        if type_code == "xhtml" or (child.tag.startswith("{" + XHTML_NS) and shape is None):
            out[name] = xhtml_to_string(child)
            continue
        if type_code == "Resource":
            inner = next((c for c in child if isinstance(c.tag, str)), None)
            if inner is not None:
                _add(out, name, element_to_json(inner), is_array)
            continue
        if is_primitive(type_code):
            value = primitive_from_text(type_code, child.attrib["value"]) if "value" in child.attrib else None
            ext: dict[str, Any] = {}
            if "id" in child.attrib:
                ext["id"] = child.attrib["id"]
            _convert_children(child, "Element", ext)
            if is_array:
                # Always append both so `given` and `_given` stay index-aligned; all-null
                # lists are dropped below.
                _add(out, name, value, True)
                _add(out, "_" + name, ext or None, True)
            else:
                if value is not None:
                    out[name] = value
                if ext:
                    out["_" + name] = ext
            continue
        sub: dict[str, Any] = {k: v for k, v in child.attrib.items() if "}" not in k}
        _convert_children(child, child_struct(type_code), sub)
        _add(out, name, sub, is_array)
    # Drop the null-only halves of primitive arrays (`_given` when no item has extensions).
    for key in [k for k, v in out.items() if isinstance(v, list) and v and all(x is None for x in v)]:
        del out[key]


def element_to_json(elem: ET.Element) -> dict[str, Any]:
    """A FHIR resource element (any namespace prefix) -> FHIR JSON dict."""
    rtype = _local(elem.tag)
    out: dict[str, Any] = {"resourceType": rtype}
    _convert_children(elem, rtype, out)
    return out


def xml_to_json(text: str | bytes) -> dict[str, Any]:
    """FHIR XML resource text -> FHIR JSON dict."""
    # Used for the FHIR Patch test corpus only: the REST API reads no XML bodies (415) and writes no XML (406).
    return element_to_json(ET.fromstring(text))  # nosec B314
