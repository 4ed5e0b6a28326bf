"""Regular expressions that come from callers: compiled by RE2, which matches in linear time.

Why: Python's `re` backtracks, so a pattern such as `a(?:.|.|.|.)*Z` can hold the worker (and the GIL) for
hours, and no guard on the pattern's shape catches every such case. RE2 (the `google-re2` package) never
backtracks: matching costs time proportional to the text, whatever the pattern. It refuses what needs
backtracking (back-references, look-around); those patterns are answered as unsupported.

Every pattern a caller can supply goes through here: `$expand` regex filters, FHIRPath `matches()` and
`replaceMatches()` in ViewDefinitions, FHIRPath Patch paths, SearchParameter expressions and profile
invariants (the last three through fhirpathpy, whose own implementation uses `re`: see FHIRPATHPY_FUNCTIONS).
Patterns written in this code base itself keep using `re`.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import re2

MAX_PATTERN = 1000  # characters: a guard for the compiled program's memory, not for time
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a caller's bad pattern is answered, not logged to stderr by the C++ library
_DOTALL = re2.Options()
_DOTALL.log_errors = False
_DOTALL.dot_nl = True
_GROUP_REF = re.compile(r"\$(\d+)")


class RegexError(ValueError):
    """A caller's pattern that is too long, invalid, or needs backtracking."""


@lru_cache(maxsize=512)
def compile_pattern(pattern: str, dotall: bool = False) -> Any:
    """An RE2 pattern object (`search`, `fullmatch`, `sub` as in `re`), or RegexError saying why not."""
    if not isinstance(pattern, str):
        raise RegexError("a regular expression must be a string")
    if len(pattern) > MAX_PATTERN:
        raise RegexError(f"the regular expression is longer than {MAX_PATTERN} characters")
    try:
        return re2.compile(pattern, options=_DOTALL if dotall else _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RegexError(f"the regular expression is invalid or unsupported (no back-references or "
                         f"look-around): {detail}") from None


def matches(text: str, pattern: str) -> bool:
    """FHIRPath `matches()`: the pattern found anywhere in the text, `.` matching newlines too."""
    return compile_pattern(pattern, True).search(text) is not None


def replace_matches(text: str, pattern: str, substitution: str) -> str:
    """FHIRPath `replaceMatches()`: `$1` in the substitution names the first group."""
    return compile_pattern(pattern).sub(_GROUP_REF.sub(r"\\\1", substitution.replace("\\", "\\\\")), text)


def _singleton(coll: list) -> str | None:
    if len(coll) != 1 or not isinstance(coll[0], str):
        raise TypeError("expected a single string")
    return coll[0]


def _fp_matches(coll: list, pattern: Any) -> Any:
    if not pattern or not coll or not isinstance(pattern, str):
        return []
    return matches(_singleton(coll), pattern)


def _fp_replace_matches(coll: list, pattern: Any, substitution: Any) -> Any:
    if not coll or not isinstance(pattern, str) or not isinstance(substitution, str):
        return []
    return replace_matches(_singleton(coll), pattern, substitution)


# Merged into the `userInvocationTable` of every fhirpathpy compile/evaluate: it replaces fhirpathpy's
# `re`-based matches() and replaceMatches().
FHIRPATHPY_FUNCTIONS: dict[str, dict[str, Any]] = {
    "matches": {"fn": _fp_matches, "arity": {1: ["String"]}, "nullable_input": True},
    "replaceMatches": {"fn": _fp_replace_matches, "arity": {2: ["String", "String"]}, "nullable_input": True},
}
