"""The index rows of the registry's ImmunizationRecommendation, extracted in one walk of the resource.

Why: a bulk refresh writes one recommendation per child, ~40 index rows each (a vaccine group's token, its
status, its dates, the composites of group and date; ~58 before t_concept stopped repeating a display as text), and the compiled extractor (fhir/extract.py), which walks each
parameter's path on its own, read each entry's vaccineCode three times and its dateCriterion four times: a
quarter of the refresh's CPU on 2026-12-02. Here each entry is walked once and a date string parsed once per
process (the same due dates recur across a cohort), with the same converters, so the rows are the compiled
extractor's, in its order.

It is exact only for the parameters it was written for (`SIGNATURE`: R4's and the due lists', due.py): the
search registry uses it while ImmunizationRecommendation's parameters are exactly those (SearchRegistry.
specialise), and a SearchParameter added for the type brings the compiled extractor back. A resource with an
element this walk does not read (meta.profile, meta.security, meta.source, supporting information or
immunizations) or a shape it does not expect (an entry that is not an object) is handed to the compiled
extractor. tests/registries/test_immunization_index_rows.py compares both on generated and altered resources."""
from __future__ import annotations

from itertools import product
from typing import Any, Callable

import orjson

from ...fhir.extract import d_prim, r_identifier, r_reference, t_coding, t_concept, t_identifier, \
    t_identifier_of_type
from ...fhir.fhirpath_compile import _walk
from . import due

TYPE = "ImmunizationRecommendation"
_R4 = {  # R4's parameters of the type (and the common ones), as fhir/search_params.py loads them
    ("_content", "special", None, ()), ("_filter", "special", None, ()), ("_text", "special", None, ()),
    ("_id", "token", "Resource.id", ()), ("_lastUpdated", "date", "Resource.meta.lastUpdated", ()),
    ("_profile", "uri", "Resource.meta.profile", ()), ("_security", "token", "Resource.meta.security", ()),
    ("_source", "uri", "Resource.meta.source", ()), ("_tag", "token", "Resource.meta.tag", ()),
    ("date", "date", "ImmunizationRecommendation.date", ()),
    ("identifier", "token", "ImmunizationRecommendation.identifier", ()),
    ("information", "reference", "ImmunizationRecommendation.recommendation.supportingPatientInformation", ()),
    ("patient", "reference", "ImmunizationRecommendation.patient", ()),
    ("status", "token", "ImmunizationRecommendation.recommendation.forecastStatus", ()),
    ("support", "reference", "ImmunizationRecommendation.recommendation.supportingImmunization", ()),
    ("target-disease", "token", "ImmunizationRecommendation.recommendation.targetDisease", ()),
    ("vaccine-type", "token", "ImmunizationRecommendation.recommendation.vaccineCode", ()),
}
SIGNATURE = frozenset(_R4 | {(d["code"], d["type"], d["expression"],
                              tuple((c["definition"], c["expression"]) for c in d.get("component") or ()))
                             for d in due.DEFINITIONS if TYPE in d["base"]})
_UNREAD_META = ("profile", "security", "source")
_UNREAD_ENTRY = ("supportingPatientInformation", "supportingImmunization")
_DATES: dict[str, tuple] = {}
_ENTRIES: dict[bytes, tuple[tuple, ...]] = {}


def _listed(value: Any) -> Any:
    return value if type(value) is list else (value,)


def _remembered(memo: dict, key: Any, make: Callable[[Any], Any]) -> Any:
    """memo[key], made on first use; the memo starts afresh past 100,000 keys, so a long run stays bounded."""
    found = memo.get(key)
    if found is None:
        if len(memo) > 100_000:
            memo.clear()
        found = memo[key] = make(key)
    return found


def _date_rows(value: Any) -> tuple:
    """d_prim, remembered per string: a cohort's due dates are a few thousand distinct days."""
    if type(value) is not str:
        return d_prim(value)
    return _remembered(_DATES, value, d_prim)


def _kind(criterion: Any) -> Any:
    """The criterion's code where `code.coding.code` is exactly one value (what `= '30980-7'` compares), else
    None: read directly for the usual single coding, else walked as the compiled path walks it."""
    code = criterion.get("code") if type(criterion) is dict else None
    coding = code.get("coding") if type(code) is dict else None
    if type(coding) is list and len(coding) == 1 and type(coding[0]) is dict and type(coding[0].get("code")) is str:
        return coding[0]["code"]
    values = _walk(criterion, ("code", "coding", "code"))
    return values[0] if len(values) == 1 and type(values[0]) is str else None


def _walk_entry(entry: dict) -> tuple[tuple, ...]:
    """One recommendation entry's values and rows: its vaccine group's, due and overdue dates' (values, for the
    composites), its status and disease rows, then its group, due and overdue rows."""
    group: list[tuple] = []
    if entry.get("vaccineCode") is not None:
        group = [b for x in _listed(entry["vaccineCode"]) for b in t_concept(x)]
    when_due: list[tuple] = []
    when_overdue: list[tuple] = []
    if entry.get("dateCriterion") is not None:
        for criterion in _listed(entry["dateCriterion"]):
            kind = _kind(criterion)
            into = when_due if kind == due.RECOMMENDED else when_overdue if kind == due.PAST_DUE else None
            value = criterion.get("value") if into is not None else None
            if value is not None:
                into += [b for x in _listed(value) for b in _date_rows(x)]
    status: list[tuple] = []
    if entry.get("forecastStatus") is not None:
        status = [("status",) + b for x in _listed(entry["forecastStatus"]) for b in t_concept(x)]
    disease: list[tuple] = []
    if entry.get("targetDisease") is not None:
        disease = [("target-disease",) + b for x in _listed(entry["targetDisease"]) for b in t_concept(x)]
    return (tuple(group), tuple(when_due), tuple(when_overdue), tuple(status), tuple(disease),
            tuple(("vaccine-type",) + b for b in group), tuple(("due-date",) + b for b in when_due),
            tuple(("overdue-date",) + b for b in when_overdue))


def _entry_rows(entry: dict) -> tuple[tuple, ...]:
    """_walk_entry, remembered per entry (its JSON): across a cohort most entries recur exactly (a group
    complete, or due on the same day for children born the same day), and serialising one is a fifth of
    walking it. The key is the entry's JSON, so an entry built in Python with a tuple or a NaN (which JSON
    cannot carry) would share the key of its list or null form; entries reach here parsed from JSON or built
    by the engine, which uses lists. An entry that cannot be serialised at all is walked every time."""
    try:
        key = orjson.dumps(entry)
    except TypeError:
        return _walk_entry(entry)
    return _remembered(_ENTRIES, key, lambda _: _walk_entry(entry))


def specialised(generic: Callable[[dict], list[tuple]]) -> Callable[[dict], list[tuple]]:
    """The one-walk extraction, with `generic` (the compiled extractor) for what it does not handle."""
    def extract(res: dict) -> list[tuple]:
        meta, entries = res.get("meta"), res.get("recommendation")
        if meta is not None and (type(meta) is not dict or any(k in meta for k in _UNREAD_META)):
            return generic(res)
        if entries is not None:
            entries = _listed(entries)
            if any(type(e) is not dict or any(e.get(k) is not None for k in _UNREAD_ENTRY) for e in entries):
                return generic(res)
        rows: list[tuple] = []
        if meta is not None and meta.get("tag") is not None:
            rows += [("_tag",) + b for x in _listed(meta["tag"]) for b in t_coding(x)]
        if res.get("date") is not None:
            rows += [("date",) + b for x in _listed(res["date"]) for b in _date_rows(x)]
        if res.get("identifier") is not None:
            idents = _listed(res["identifier"])
            rows += [("identifier",) + b for x in idents for b in t_identifier(x)]
            rows += [("identifier:of-type",) + b for x in idents for b in t_identifier_of_type(x)]
        status: list[tuple] = []
        disease: list[tuple] = []
        groups: list[tuple] = []
        due_rows: list[tuple] = []
        overdue_rows: list[tuple] = []
        due_pairs: dict[tuple, None] = {}
        overdue_pairs: dict[tuple, None] = {}
        for entry in entries or ():
            group, when_due, when_overdue, entry_status, entry_disease, group_rows, entry_due, entry_overdue = \
                _entry_rows(entry)
            if group and when_due:
                due_pairs.update(dict.fromkeys(product(group, when_due)))
            if group and when_overdue:
                overdue_pairs.update(dict.fromkeys(product(group, when_overdue)))
            status += entry_status
            disease += entry_disease
            groups += group_rows
            due_rows += entry_due
            overdue_rows += entry_overdue
        rows += status + disease + groups + due_rows + overdue_rows
        if res.get("patient") is not None:
            refs = _listed(res["patient"])
            rows += [("patient",) + b for x in refs for b in r_reference(x)]
            rows += [("patient:identifier",) + b for x in refs for b in r_identifier(x)]
        out = list(dict.fromkeys(rows))
        out += [("vaccine-type-due-date", "composite", list(p)) for p in due_pairs]
        out += [("vaccine-type-overdue-date", "composite", list(p)) for p in overdue_pairs]
        return out
    return extract


def register(registry: Any) -> None:
    registry.specialise(TYPE, SIGNATURE, specialised)
