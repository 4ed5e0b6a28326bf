"""fhir/vocabulary.py against its source: the generated terminology file holds every concept of the R4
package's complete code systems, and expansion follows compose to the letter where the package says how."""
from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from healthtwin.fhir.outcome import FHIRError
from healthtwin.fhir.vocabulary import Vocabulary, codesystem_from_resource

from ..conftest import r4_package


def _flat(concepts):
    for c in concepts:
        yield c
        yield from _flat(c.get("concept", []))


def test_every_concept_of_the_package_is_looked_up_with_its_display():
    folder = r4_package()
    vocabulary, checked = Vocabulary(), 0
    for path in sorted(folder.glob("CodeSystem-*.json")):
        cs = orjson.loads(path.read_bytes())
        if cs.get("content") != "complete" or not cs.get("url"):
            continue
        for concept in _flat(cs.get("concept", [])):
            found_cs, found = vocabulary.lookup(cs["url"], concept["code"])
            assert found.display == concept.get("display"), (cs["url"], concept["code"])
            assert found_cs.version == (cs["url"].partition("|")[2] or cs.get("version"))
            checked += 1
    assert checked > 19_000


def test_packaged_expansions_agree_with_the_compose_they_came_from():
    """A packaged ValueSet's precomputed expansion equals the expansion of its own compose by this module."""
    folder = r4_package()
    vocabulary, compared = Vocabulary(), 0
    for name in ("ValueSet-administrative-gender.json", "ValueSet-observation-status.json",
                 "ValueSet-v3-ActEncounterCode.json", "ValueSet-encounter-status.json"):
        resource = orjson.loads((folder / name).read_bytes())
        packaged = {(c.system, c.code) for c in vocabulary.expand(vocabulary.valueset(resource["url"]))}
        from_compose = {(c.system, c.code) for c in vocabulary.expand(resource)}
        assert packaged == from_compose and packaged, name
        compared += 1
    assert compared == 4


def test_imports_that_loop_are_refused():
    class Store:  # two stored ValueSets importing each other, found through stored_canonical's query
        def __init__(self):
            self.sets = {u: {"resourceType": "ValueSet", "url": u, "compose": {"include": [{"valueSet": [v]}]}}
                         for u, v in (("urn:a", "urn:b"), ("urn:b", "urn:a"))}

        def query(self, sql, params):  # the canonical-URL lookup: (id, version) rows
            return [(params[1], 1)] if params[1] in self.sets else []

        def vread(self, rtype, rid, version):
            return SimpleNamespace(content=orjson.dumps(self.sets[rid]))
    vocabulary = Vocabulary(Store())
    with pytest.raises(FHIRError) as err:
        vocabulary.expand(vocabulary.valueset("urn:a"))
    assert err.value.status == 422


def test_case_insensitive_code_systems_find_codes_in_any_case():
    cs = codesystem_from_resource({"resourceType": "CodeSystem", "url": "urn:x", "caseSensitive": False,
                                   "content": "complete", "concept": [{"code": "AbC", "display": "a"}]})
    assert cs.find("abc").code == "AbC" and cs.find("ABC").code == "AbC"
    strict = codesystem_from_resource({"resourceType": "CodeSystem", "url": "urn:y", "content": "complete",
                                       "concept": [{"code": "AbC"}]})
    assert strict.find("abc") is None
