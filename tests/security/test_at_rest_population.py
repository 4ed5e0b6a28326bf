"""A generated population loaded into the store and the analytics store: no FIN, name or phone of its people
is in the database's bytes or tables, whatever resource carries it, and the analytics files hold neither the
store's ids nor full birth dates, while the indicators come out as from the clear data."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import ahocorasick
import duckdb
import orjson
import pytest

from healthtwin.analytics.indicators import indicator_views
from healthtwin.analytics.materialize import Materializer, StoreSource
from healthtwin.analytics.refresh import refresh_all
from healthtwin.fhir.extract import normalize
from healthtwin.population import generate
from healthtwin.population.common import SYS_FIN

from .test_at_rest import _dump

PEOPLE = ("Patient", "RelatedPerson", "Practitioner")


def _population(folder: Path) -> dict[str, list[dict]]:
    """A small generated population whose clinical resources also name their people the ways FHIR allows:
    subject.identifier (the FIN) and subject.display, performer/participant/requester displays."""
    generate(folder, 25, 11, start_year=2019, end_date=dt.date(2024, 12, 31))
    res = {f.stem: [orjson.loads(line) for line in f.read_bytes().splitlines()] for f in folder.glob("*.ndjson")}
    patients = {p["id"]: p for p in res["Patient"]}
    pracs = {p["id"]: p for p in res["Practitioner"]}

    def name(person: dict) -> str:
        n = person["name"][0]
        return n.get("text") or " ".join([*n.get("given", []), n.get("family", "")])

    def person_ref(ref: dict) -> None:
        rtype, _, rid = ref.get("reference", "").partition("/")
        if rtype == "Patient" and rid in patients:
            ref["display"] = name(patients[rid])
            ref["identifier"] = {"system": SYS_FIN, "value": patients[rid]["identifier"][0]["value"]}
        elif rtype == "Practitioner" and rid in pracs:
            ref["display"] = name(pracs[rid])

    def walk(node) -> None:
        if isinstance(node, dict):
            if "reference" in node:
                person_ref(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    for rtype, items in res.items():
        if rtype not in PEOPLE and rtype != "Coverage":
            walk(items)
        (folder / f"{rtype}.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in items))
    return res


def _secrets(res: dict[str, list[dict]]) -> tuple[set[str], set[str]]:
    """(exact strings, words) that identify the population's people: FINs and other person identifiers and
    phones, then full names and name parts, in their written and normalised (index) forms."""
    exact, words = set(), set()
    for rtype in (*PEOPLE, "Coverage"):
        for r in res.get(rtype, []):
            exact.update(i["value"] for i in r.get("identifier", []) if rtype != "Practitioner" or
                         "fin" in i.get("system", ""))
            if "subscriberId" in r:
                exact.add(r["subscriberId"])
            exact.update(c["value"] for c in r.get("telecom", []))
            for n in r.get("name", []):
                parts = [n.get("text"), n.get("family"), *n.get("given", [])]
                for part in filter(None, parts):
                    words.update({part, normalize(part)})
    # Names of five letters or more: the dump holds megabytes of ciphertext, read as text, in which a given
    # three-letter name stands alone by chance about once in 30 million bytes (1/256^3, times the odds of a
    # non-word byte either side; CI at 641daa0 found "aga" so on 2026-12-03), and with some 700 names a
    # four-letter one now and then (CI at 6baeb45 found "rauf" in a PostgreSQL dump on 2026-12-06); each
    # letter more makes it 256 times rarer. A real leak shows every name, full names with their spaces too.
    return {s for s in exact if len(s) >= 6}, {w for w in words if len(w) >= 5}


_WORD = re.compile(r"\w")


def _hits(text: str, exact: set[str], words: set[str]) -> set[str]:
    """The secrets found in `text`: exact strings anywhere, names as whole words (a district named after a
    person, İsmayıllı, is not the given name İsmayıl), full names anywhere. One Aho-Corasick pass finds them
    all: a search of the whole text per secret took 77 s for a 25-million-character dump's 3,500 secrets."""
    automaton = ahocorasick.Automaton()
    for w in words:
        automaton.add_word(w, (w, " " not in w))
    for s in exact:  # added last: a string that is both is searched anywhere
        automaton.add_word(s, (s, False))
    automaton.make_automaton()
    found = set()
    for end, (secret, whole_word) in automaton.iter(text):
        start = end - len(secret) + 1
        if whole_word and ((start > 0 and _WORD.match(text[start - 1])) or
                           (end + 1 < len(text) and _WORD.match(text[end + 1]))):
            continue
        found.add(secret)
    return found


def _analytics_text(folder: Path) -> str:
    """Every value of every table in analytics.duckdb and of every Parquet file, as text, plus the raw bytes
    of the files (DuckDB compresses strings, so the raw bytes alone would prove little)."""
    out = []
    con = duckdb.connect(str(folder / "analytics.duckdb"), read_only=True)
    try:
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
            out.extend(repr(row) for row in con.execute(f'SELECT * FROM "{table}"').fetchall())
    finally:
        con.close()
    files = list((folder / "parquet").rglob("*.parquet"))
    assert files, "the views were written to Parquet"
    mem = duckdb.connect()
    for f in files:
        out.extend(repr(row) for row in mem.execute(f"SELECT * FROM read_parquet('{f}')").fetchall())
        out.append(f.read_bytes().decode("utf-8", "replace"))
    out.append((folder / "analytics.duckdb").read_bytes().decode("utf-8", "replace"))
    return "\n".join(out)


def _indicators(folder: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(folder / "analytics.duckdb"), read_only=True)
    try:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE "
                                            "starts_with(table_name, 'ind_')").fetchall()]
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
    finally:
        con.close()


def _refresh(source: StoreSource, folder: Path) -> None:
    mat = Materializer(source, folder, indicator_views())
    try:
        report = refresh_all(mat, full=True)
        assert not report.failed, report.failed
    finally:
        mat.close()


def fin_of(patient: dict) -> str:
    return patient["identifier"][0]["value"]


@pytest.mark.slow
def test_no_identifier_of_the_population_in_clear_at_rest(store, tmp_path):
    from healthtwin.api.services import Services
    from healthtwin.loading import load

    res = _population(tmp_path / "pop")
    exact, words = _secrets(res)
    assert len(exact) > 100 and len(words) > 100
    # The search itself finds a leak: the clear records show their FINs and names, a name inside a longer
    # word is not one.
    clear_text = orjson.dumps(res["Patient"][:3]).decode()
    planted = _hits(clear_text, exact, words)
    assert fin_of(res["Patient"][0]) in planted and res["Patient"][0]["name"][0]["family"] in planted
    word = max((w for w in words if " " not in w), key=len)
    assert _hits(f"x {word} x", set(), {word}) == {word} and not _hits(f"x {word}li x", set(), {word})
    report = load(Services.build(store), [str(tmp_path / "pop")], workers=1)
    assert not report.errors and report.created == sum(len(v) for v in res.values())

    # The API still sees everything, and the searches people use still find it.
    patient = res["Patient"][0]
    fin = fin_of(patient)
    encounters = sorted(e["id"] for e in res["Encounter"] if e["subject"]["reference"] == f"Patient/{patient['id']}")
    from healthtwin.store.search import run_search
    services = Services.build(store)

    def ids(rtype: str, *params: tuple[str, str]) -> list[str]:
        return sorted(s.id for s in run_search(store, services.registry, services.parser.parse([rtype], list(params))).matches)
    assert ids("Patient", ("identifier", f"{SYS_FIN}|{fin}")) == [patient["id"]]
    assert ids("Patient", ("family", patient["name"][0]["family"][:4])).count(patient["id"]) == 1
    assert ids("Encounter", ("subject:identifier", f"{SYS_FIN}|{fin}")) == encounters
    assert ids("Encounter", ("subject", f"Patient/{patient['id']}")) == encounters
    assert orjson.loads(store.read("Encounter", encounters[0]).content)["subject"]["identifier"]["value"] == fin

    analytics, clear = tmp_path / "analytics", tmp_path / "analytics-clear"
    _refresh(StoreSource(store), analytics)
    _refresh(StoreSource(store, keys=False), clear)  # the same views over the clear form, for comparison

    raw = _dump(store).decode("utf-8", "replace")
    assert "Consultation" in raw and "enc-" in raw  # clinical data and ids stay clear in the store
    assert not _hits(raw, exact, words)

    text = _analytics_text(analytics)
    assert not _hits(text, exact, words)
    ids_of_store = {r["id"] for items in res.values() for r in items}
    held = set(re.findall(r"[A-Za-z0-9\-.]+", text))
    assert not ids_of_store & held, sorted(ids_of_store & held)[:5]
    # Birth dates: the month, and a day that only encodes what the indicators need (1, 2 or after a death).
    con = duckdb.connect(str(analytics / "analytics.duckdb"), read_only=True)
    births = [b for (b,) in con.execute("SELECT birth_date FROM patient").fetchall()]
    con.close()
    full = {p["birthDate"] for p in res["Patient"]}
    assert births and all(b[:7] in {f[:7] for f in full} for b in births)
    assert sum(b in full for b in births) <= sum(f.endswith(("-01", "-02")) for f in full) + \
        sum("deceasedDateTime" in p for p in res["Patient"])
    # …and every indicator agrees with the one computed from the clear data.
    assert _indicators(analytics) == _indicators(clear) and _indicators(analytics)
