"""Caller-supplied regular expressions run on RE2 (linear time): a pattern that makes Python's backtracking
`re` run for seconds (4^n paths over n characters) answers at once wherever a caller can hand one in."""
from __future__ import annotations

import re
import time

import pytest

from healthtwin.analytics.fhirpath_sof import FhirPathError, evaluate
from healthtwin.fhir import regex
from healthtwin.fhir.extract import fhirpathpy_eval

EVIL = "D(?:.|.|.|.)*Z"  # passes a nested-quantifier guard; backtracks over 4^n paths on "D" + n letters
TEXT = "D" + "x" * 14  # Python's re: ~6 s; RE2: microseconds


def _fast(fn, *args, limit: float = 1.0):
    start = time.perf_counter()
    out = fn(*args)
    assert time.perf_counter() - start < limit, "a caller's pattern held the process"
    return out


def test_the_pattern_is_really_exponential_for_backtracking_re():
    start = time.perf_counter()
    re.fullmatch(EVIL, "D" + "x" * 9)
    small = time.perf_counter() - start
    start = time.perf_counter()
    re.fullmatch(EVIL, "D" + "x" * 11)
    assert time.perf_counter() - start > 4 * small  # two more letters, ~16 times the work


@pytest.mark.parametrize("pattern", [EVIL, "(a+)+$", "(a|aa)*b", "(.*a){12}b"])
def test_compiled_patterns_match_in_linear_time(pattern):
    compiled = regex.compile_pattern(pattern)
    assert _fast(compiled.fullmatch, "D" + "a" * 100_000) is None


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=a)a", "[unclosed", "x" * (regex.MAX_PATTERN + 1)])
def test_unsupported_or_invalid_patterns_are_refused_with_a_reason(pattern):
    with pytest.raises(regex.RegexError, match="regular expression"):
        regex.compile_pattern(pattern)


def test_fhirpath_matches_semantics_are_kept():
    assert regex.matches("a\nb", "a.b")  # FHIRPath: `.` matches newlines in matches()
    assert regex.replace_matches("abc-def", r"(\w+)-(\w+)", r"$2 \ $1") == r"def \ abc"


def test_viewdefinition_matches_and_replace_matches_use_re2():
    patient = {"resourceType": "Patient", "name": [{"family": TEXT}]}
    assert _fast(evaluate, f"name.family.matches('{EVIL}')", patient) == [False]
    assert _fast(evaluate, f"name.family.replaceMatches('{EVIL}', 'y')", patient) == [TEXT]
    with pytest.raises(FhirPathError, match="back-references"):
        evaluate(r"name.family.matches('(x)\\1')", patient)


def test_search_parameter_expressions_evaluated_by_fhirpathpy_use_re2():
    fn = fhirpathpy_eval(f"Patient.name.where(family.matches('{EVIL}')).family")
    assert _fast(fn, {"resourceType": "Patient", "name": [{"family": TEXT}]}) == []
    fn = fhirpathpy_eval("Patient.name.family.replaceMatches('(x+)', '<$1>')")
    assert fn({"resourceType": "Patient", "name": [{"family": "Dxxy"}]}) == ["D<xx>y"]


def test_invariants_evaluated_by_fhirpathpy_use_re2():
    from healthtwin.fhir.invariants import _compile
    check = _compile(f"family.matches('{EVIL}')")
    assert _fast(check, {"family": TEXT}) == [False]


# -- a unit code is caller input too: canonicalised on every write of a Quantity and in quantity searches ------------
@pytest.mark.parametrize("code", ["{" * 200_000, "a{" * 100_000, "10*400", "g" + "1" * 10_000])
def test_unit_codes_cannot_stall_or_crash_the_indexer(code):
    from healthtwin.fhir.ucum import canonical
    assert _fast(canonical, 1.0, code) is None  # not a unit understood: indexed without canonical form
    assert canonical(1000.0, "mg") == (1.0, "g")  # real units still are
