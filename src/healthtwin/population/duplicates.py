"""Dirty duplicates: the second (and third) Patient record an institution makes for a citizen already registered,
with the truth beside it, so the patient index (mpi/) is measured on a population whose answer is known.

A citizen gets another record when an institution registers them without finding the existing one. Which
institution did it decides how the copy differs (`SOURCES`): a district hospital reads the ID card more often
than an emergency team, a private clinic in Baku fills Russian-language forms more often than a polyclinic.
Each difference is drawn independently at the source's rate:

* `fin-missing` (no FIN written; always for a child under one, whose FIN is issued later), `fin-typo` (one
  character);
* `russian` (the name written in Cyrillic as a Russian form spells it: Мамедов), `russian-latin` (its
  Russian-style Latin: Mamedov, Guseynov), `english` (the passport's Latin: Mammadov, Huseynov);
* `typo` (one edit in the first name or surname: a substitution, deletion, insertion or transposition);
* `patronymic` (written inside the first name, left out, or in its Russian form -ovich/-ovna);
* `suffix` (the surname's ending changed: Həsənov → Həsənli, → Həsənzadə);
* `date-swap` (day and month swapped), `date-typo` (one digit), `jan1` (an estimated age: 1 January of the
  year);
* `moved` (an address in another district).

Rates (per citizen, and per copy by source) are documented in docs/mpi.md; `DUPLICATE_RATE` is the share of
citizens with at least one extra record, within the 5-10 % commonly reported for hospital patient indexes.
The copies carry no clinical resources and never change the clean population: their draws come from a
generator of their own, so the same seed gives the same citizens with or without duplicates.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

from . import geography
from .common import SYS_FIN, Resource

DUPLICATE_RATE = 0.08  # citizens with at least one extra record
SECOND_COPY = 0.2  # of those, the share with a second extra record
SYS_MRN = "https://health.gov.az/fhir/sid/mrn"  # an institution's own record number (+ "/<organization id>")


@dataclass(frozen=True)
class Source:
    """An institution kind that registers citizens on its own, and how often each difference appears in its
    records (probability per copy)."""

    kind: str
    share: float  # share of the duplicate records made by this kind
    fin_missing: float
    fin_typo: float
    russian: float  # Cyrillic, Russian-style Latin or English passport form, split 50/35/15 when drawn
    typo: float
    patronymic: float
    suffix: float
    date_swap: float
    date_typo: float
    jan1: float
    moved: float


SOURCES: tuple[Source, ...] = (
    Source("hospital", 0.35, 0.15, 0.01, 0.15, 0.08, 0.30, 0.03, 0.03, 0.02, 0.01, 0.10),
    Source("polyclinic", 0.30, 0.20, 0.01, 0.20, 0.10, 0.35, 0.05, 0.04, 0.03, 0.03, 0.60),
    Source("private", 0.20, 0.40, 0.01, 0.50, 0.12, 0.50, 0.05, 0.06, 0.03, 0.02, 0.20),
    Source("emergency", 0.15, 0.60, 0.00, 0.25, 0.20, 0.60, 0.03, 0.05, 0.05, 0.15, 0.30),
)

_TO_CYRILLIC = [("ə", "е"), ("q", "г"), ("ğ", "г"), ("h", "г"), ("x", "х"), ("c", "дж"), ("ç", "ч"), ("ş", "ш"),
                ("j", "ж"), ("ö", "ё"), ("ü", "ю"), ("ı", "ы"), ("a", "а"), ("b", "б"), ("d", "д"), ("e", "е"),
                ("f", "ф"), ("g", "г"), ("i", "и"), ("k", "к"), ("l", "л"), ("m", "м"), ("n", "н"), ("o", "о"),
                ("p", "п"), ("r", "р"), ("s", "с"), ("t", "т"), ("u", "у"), ("v", "в"), ("y", "й"), ("z", "з")]
_CYR = dict(_TO_CYRILLIC)
_RUSSIAN_LATIN = {"е": "e", "г": "g", "х": "kh", "дж": "dzh", "ч": "ch", "ш": "sh", "ж": "zh", "ё": "yo", "ю": "yu",
                  "ы": "y", "й": "y", "а": "a", "б": "b", "д": "d", "ф": "f", "и": "i", "к": "k", "л": "l", "м": "m",
                  "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "в": "v", "з": "z", "я": "ya"}
_ENGLISH = str.maketrans({"ə": "a", "ı": "i", "ş": "sh", "ç": "ch", "ğ": "gh", "c": "j", "x": "kh", "q": "g",
                          "ö": "o", "ü": "u", "Ə": "A", "I": "I", "İ": "I", "Ş": "Sh", "Ç": "Ch", "C": "J",
                          "X": "Kh", "Q": "G", "Ö": "O", "Ü": "U"})
_LETTERS = "abcdefgiklmnoprstuvyzəğışçöü"


def _az_lower(text: str) -> str:
    return text.replace("I", "ı").replace("İ", "i").lower()


def _cap(text: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


def to_cyrillic(name: str) -> str:
    """A Russian form's spelling of an Azerbaijani Latin name (Məmmədov → Мамедов, Hüseynov → Гюсейнов)."""
    low = _az_lower(name)
    out = []
    for i, ch in enumerate(low):
        if ch == "ə":
            out.append("а" if i == 0 or low[i - 1] == " " else "е")
        elif ch == "y" and i + 1 < len(low) and low[i + 1] == "a":
            out.append("")  # ya → я below
        elif ch == "a" and i > 0 and low[i - 1] == "y":
            out.append("я")
        elif ch == "m" and i > 0 and low[i - 1] == "m":
            out.append("")  # Məmmədov → Мамедов: Russian forms drop the double m
        else:
            out.append(_CYR.get(ch, ch))
    text = "".join(out)
    for azeri, russian in (("ыйе", "ие"), ("ый", "и"), ("йы", "й"), ("ийе", "ие"), ("айе", "ае")):
        text = text.replace(azeri, russian)  # Hacıyev → Гаджиев, Əliyev → Алиев, İsmayılov → Исмайлов
    return _cap(text)


def russian_latin(name: str) -> str:
    """The Russian-style Latin of a name (Mamedov, Guseynov, Dzhafarov)."""
    cyr = to_cyrillic(name).lower()
    out, i = [], 0
    while i < len(cyr):
        if cyr.startswith("дж", i):
            out.append("dzh")
            i += 2
            continue
        out.append(_RUSSIAN_LATIN.get(cyr[i], cyr[i]))
        i += 1
    return _cap("".join(out))


def typo(rng: random.Random, word: str) -> str:
    if len(word) < 3:
        return word
    i = rng.randrange(1, len(word))  # first letters are rarely mistyped
    op = rng.randrange(4)
    if op == 0:
        return word[:i] + rng.choice(_LETTERS) + word[i + 1:]
    if op == 1:
        return word[:i] + word[i + 1:]
    if op == 2:
        return word[:i] + rng.choice(_LETTERS) + word[i:]
    j = min(i + 1, len(word) - 1)
    chars = list(word)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def _suffix_change(rng: random.Random, family: str) -> str:
    for ending in ("yeva", "ova", "eva", "yev", "ov", "ev"):
        if family.endswith(ending):
            stem = family[: -len(ending)]
            return stem + ("li" if rng.random() < 0.7 else "zadə")
    for ending in ("zadə", "li", "lı", "lu"):
        if family.endswith(ending):
            return family[: -len(ending)] + "ov"
    return family


def _date(rng: random.Random, birth: str, source: Source, changes: list[str]) -> str:
    y, m, d = birth.split("-")
    if rng.random() < source.jan1:
        changes.append("jan1")
        return f"{y}-01-01"
    if rng.random() < source.date_swap and int(d) <= 12 and d != m:
        changes.append("date-swap")
        return f"{y}-{d}-{m}"
    if rng.random() < source.date_typo:
        changes.append("date-typo")
        if rng.random() < 0.5:
            day = int(d[0] + str(rng.randrange(10))) if d[0] != "0" else int("0" + str(rng.randrange(1, 10)))
            return f"{y}-{m}-{max(1, min(day, 28)):02d}"
        return f"{y[:3]}{rng.randrange(10)}-{m}-{d}"
    return birth


def _name(rng: random.Random, name: dict[str, Any], sex: str, source: Source, changes: list[str]) -> dict:
    family = name["family"]
    given, patronymic = name["given"][0], (name["given"][1] if len(name["given"]) > 1 else "")
    if rng.random() < source.suffix:
        changed = _suffix_change(rng, family)
        if changed != family:
            changes.append("suffix")
            family = changed
    if rng.random() < source.typo:
        changes.append("typo")
        if rng.random() < 0.5:
            given = typo(rng, given)
        else:
            family = typo(rng, family)
    form = None
    if rng.random() < source.patronymic and patronymic:
        changes.append("patronymic")
        form = rng.choice(("inside", "dropped", "russian"))
    script = None
    if rng.random() < source.russian:
        script = rng.choices(("russian", "russian-latin", "english"), (0.5, 0.35, 0.15))[0]
        changes.append(script)
    father = patronymic.rsplit(" ", 1)[0] if patronymic else ""

    def spell(text: str) -> str:
        if script == "russian":
            return to_cyrillic(text)
        if script == "russian-latin":
            return russian_latin(text)
        if script == "english":
            return text.translate(_ENGLISH)
        return text
    family, given = spell(family), spell(given)
    if form == "russian":
        ending = "ovich" if sex == "male" else "ovna"
        pat = spell(father) + (("ович" if sex == "male" else "овна") if script == "russian" else ending)
    elif patronymic:
        word = patronymic.rsplit(" ", 1)[1]
        if script in ("russian-latin", "english"):
            word = {"oğlu": "ogly", "qızı": "kyzy"}.get(word, word) if script == "russian-latin" else word.translate(_ENGLISH)
        elif script == "russian":
            word = {"oğlu": "оглы", "qızı": "кызы"}.get(word, word)
        pat = f"{spell(father)} {word}"
    else:
        pat = ""
    if form == "dropped" or not pat:
        given_parts = [given]
    elif form == "inside":
        given_parts = [f"{given} {pat}"]
    else:
        given_parts = [given, pat]
    return {"use": "official", "text": " ".join([family, *given_parts]), "family": family, "given": given_parts}


def duplicates_of(patient: Resource, idx: int, seed: int, infant: bool = False) -> list[tuple[Resource, dict[str, Any]]]:
    """The extra records institutions made for this citizen (`infant`: under one, so without a FIN yet), each
    with its truth ({of, source, changes})."""
    rng = random.Random(((seed << 32) + idx) ^ 0x0D0B_1E5E_ED)
    if rng.random() >= DUPLICATE_RATE:
        return []
    copies = 2 if rng.random() < SECOND_COPY else 1
    out = []
    for k in range(1, copies + 1):
        source = rng.choices(SOURCES, [s.share for s in SOURCES])[0]
        changes: list[str] = []
        dup = copy.deepcopy(patient)
        dup["id"] = f"dup-{idx}-{k}"
        org = f"{source.kind}-{idx % 97}"
        ids: list[dict[str, Any]] = [{"system": f"{SYS_MRN}/{org}", "value": f"{source.kind[:1].upper()}{idx}{k}"}]
        fin = next((i["value"] for i in patient.get("identifier", []) if i.get("system") == SYS_FIN), None)
        if fin and (infant or rng.random() < source.fin_missing):
            changes.append("fin-missing")
        elif fin:
            if rng.random() < source.fin_typo:
                changes.append("fin-typo")
                pos = rng.randrange(len(fin))
                fin = fin[:pos] + rng.choice("23456789ABCDEFGHJKMNPQRSTUVWXYZ".replace(fin[pos], "")) + fin[pos + 1:]
            ids.insert(0, {"use": "official", "system": SYS_FIN, "value": fin})
        dup["identifier"] = ids
        dup["name"] = [_name(rng, patient["name"][0], patient.get("gender", ""), source, changes)]
        dup["birthDate"] = _date(rng, patient["birthDate"], source, changes)
        if rng.random() < source.moved:
            changes.append("moved")
            dup["address"] = [geography.address(rng, geography.sample_district(rng))]
        dup.pop("link", None)  # the mother's RelatedPerson is known to the first record only
        dup.pop("extension", None)
        if rng.random() < 0.5:
            dup.pop("telecom", None)  # a phone number is asked for half the time
        out.append((dup, {"of": patient["id"], "source": source.kind, "changes": changes}))
    return out

