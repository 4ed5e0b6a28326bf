"""Checkers for the R4 primitive data types in their JSON form.

Each checker takes the JSON value and returns None when it is valid or a precise message when it is not.
The lexical rules are the regexes the R4 StructureDefinitions carry (extracted into structures.json.gz by
scripts/gen_validation_definitions.py), compiled with re.ASCII because the spec's `\\s`/`\\S` are the XML Schema
/ Java ASCII classes (a non-breaking space is content, not whitespace). A few rules are added on top of the
regexes where the regex alone accepts invalid values: calendar validity of dates, integer ranges, JSON kinds.
"""
from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from datetime import date

Checker = Callable[[object], "str | None"]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_STRING = 1024 * 1024  # R4: strings SHALL NOT exceed 1 MB


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _calendar_ok(text: str) -> bool:
    """The regexes accept 2021-02-30; dates with a day part must exist in the calendar."""
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        day = int(text[8:10])
        if day > 28:
            try:
                date(int(text[0:4]), int(text[5:7]), day)
            except ValueError:
                return False
    return True


def _string_checker(type_name: str, pattern: str | None, dated: bool = False) -> Checker:
    match = re.compile(pattern, re.ASCII).fullmatch if pattern else None

    def check(value: object) -> str | None:
        if type(value) is not str:
            return f"{type_name} must be a JSON string, not {_json_kind(value)} {_describe(value)}"
        if not value:
            return f"{type_name} must not be an empty string"
        if match is not None and match(value) is None:
            return f"{_describe(value)} is not a valid {type_name}"
        if dated and not _calendar_ok(value):
            return f"{_describe(value)} is not a valid {type_name} (no such calendar date)"
        if len(value) > MAX_STRING:
            return f"{type_name} is longer than 1 MB"
        return None
    return check


def _code_checker(pattern: str) -> Checker:
    match = re.compile(pattern, re.ASCII).fullmatch

    def check(value: object) -> str | None:
        if type(value) is not str:
            return f"code must be a JSON string, not {_json_kind(value)} {_describe(value)}"
        if match(value) is None:
            if not value:
                return "code must not be an empty string"
            if value != value.strip():
                return f"code {_describe(value)} has leading or trailing whitespace"
            return f"{_describe(value)} is not a valid code (no tabs, line breaks or double spaces)"
        return None
    return check


def _base64(value: object) -> str | None:
    # Decoding is much faster than the spec regex on multi-megabyte attachments, and rejects the same inputs
    # (characters outside the alphabet, lengths that are not a multiple of 4) apart from embedded whitespace.
    if type(value) is not str:
        return f"base64Binary must be a JSON string, not {_json_kind(value)}"
    if not value:
        return "base64Binary must not be an empty string"
    text = value
    if any(c in text for c in " \r\n\t"):
        text = "".join(text.split())
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return "value is not valid base64 (RFC 4648 alphabet, padded to a multiple of 4)"
    return None


def _boolean(value: object) -> str | None:
    if value is True or value is False:
        return None
    return f"boolean must be JSON true or false, not {_json_kind(value)} {_describe(value)}"


def _number_checker(type_name: str, low: int | None, high: int | None) -> Checker:
    def check(value: object) -> str | None:
        if type(value) is not int:
            return f"{type_name} must be a JSON integer, not {_json_kind(value)} {_describe(value)}"
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{value} is out of range for {type_name} ({low}..{high})"
        return None
    return check


def _decimal(value: object) -> str | None:
    t = type(value)
    if t is float or t is int:
        if t is float and (value != value or value in (float("inf"), float("-inf"))):
            return "decimal must be a finite number"
        return None
    return f"decimal must be a JSON number, not {_json_kind(value)} {_describe(value)}"


def _xhtml(value: object) -> str | None:
    # The narrative content rules (txt-1/txt-2) are checked in invariants.check_narrative.
    if type(value) is not str or not value:
        return "xhtml must be a non-empty JSON string"
    return None


def build_checkers(regexes: dict[str, str]) -> dict[str, Checker]:
    """Map every R4 primitive type name to its checker, given the regexes from the generated definitions."""
    checkers: dict[str, Checker] = {
        "boolean": _boolean,
        "integer": _number_checker("integer", INT32_MIN, INT32_MAX),
        "positiveInt": _number_checker("positiveInt", 1, INT32_MAX),
        "unsignedInt": _number_checker("unsignedInt", 0, INT32_MAX),
        "decimal": _decimal,
        "base64Binary": _base64,
        "xhtml": _xhtml,
        "code": _code_checker(regexes.get("code", r"[^\s]+(\s[^\s]+)*")),
    }
    for name in ("string", "markdown", "id", "uri", "url", "canonical", "oid", "uuid", "date", "dateTime",
                 "instant", "time"):
        checkers[name] = _string_checker(name, regexes.get(name), dated=name in ("date", "dateTime", "instant"))
    return checkers


JSON_KIND = _json_kind
