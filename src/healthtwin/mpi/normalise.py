"""Azerbaijani names as one Latin key, whichever script or transliteration an institution wrote them in.

The same surname reaches the index as Məmmədov (official Latin), Мамедов or Mamedov (Russian), Mammadov
(passport English), Мәммәдов (Azerbaijani Cyrillic, before 1991). Three forms are derived here:

* `latin(text)`: Cyrillic (Azerbaijani and Russian letters) transliterated, lower-cased with the Azerbaijani
  dotted/dotless i, and the digraphs of Russian-style Latin (dzh, kh, sh, ch, zh, gh, yu) folded back into the
  Azerbaijani letters they stand for: the form Jaro–Winkler compares;
* `key(text)`: `latin` with the distinctions the transliterations do not keep folded away: ə/a/e, ı/i,
  ö/o, ü/u; q/g/k/ğ/h/x (Qurbanov / Kurbanov / Gurbanov, Həsənov / Гасанов, Xəlilov / Халилов); c/ç/j; ş/s;
  y next to a vowel (Aliyev / Aliev; a vowel's closing y as i: İsmayılov / Исмайлов); doubled letters: Məmmədov, Mamedov, Mammadov and
  Мамедов all become `mamadov`;
* `phonetic(text)`: the key's first letter and its consonants, for typos in vowels.

Surnames change their ending as families change custom (-ov/-ev, -ova/-eva, Russian -ovich/-ovna for
patronymics, Azerbaijani -li/-lı/-lu/-lü and -zadə): `surname_stem` removes the ending, so Həsənov and Həsənli
share a stem and differ in `surname_suffix`. Patronymics are written apart ("Elçin oğlu"), inside the given
name ("Rəşad Elçin oğlu"), in Russian ("Эльчин оглы", "Эльчинович") or left out: `split_given` returns the
first name and the father's name found, whichever way it came.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Azerbaijani Cyrillic (1939-1991) and Russian letters → Azerbaijani Latin. Russian г stands for both q and h
# (Гасанов = Həsənov) and х for x; both fold together in `key`.
_CYRILLIC = {
    "а": "a", "б": "b", "в": "v", "г": "q", "ғ": "ğ", "д": "d", "е": "e", "ё": "yo", "ә": "ə", "ж": "j", "з": "z",
    "и": "i", "й": "y", "ј": "y", "к": "k", "ҝ": "g", "л": "l", "м": "m", "н": "n", "о": "o", "ө": "ö", "п": "p",
    "р": "r", "с": "s", "т": "t", "у": "u", "ү": "ü", "ф": "f", "х": "x", "һ": "h", "ц": "ts", "ч": "ç", "ҹ": "c",
    "ш": "ş", "щ": "şç", "ъ": "", "ы": "ı", "ь": "", "э": "e", "ю": "yu", "я": "ya", "і": "i",
}
# Russian-style Latin digraphs back to one Azerbaijani letter (longest first).
_DIGRAPHS = (("dzh", "c"), ("dj", "c"), ("zh", "j"), ("kh", "x"), ("sh", "ş"), ("ch", "ç"), ("gh", "ğ"))
_SOFT_VOWEL = re.compile(r"(?<=[bcçdfgğhjklmnpqrsştvxz])y([uo])")  # Гюнай gyunay → günay, Шукюров → şükürov
_KEY_FOLD = str.maketrans({"ə": "a", "e": "a", "ä": "a", "ı": "i", "ö": "o", "ü": "u", "q": "k", "g": "k",
                           "ğ": "k", "h": "k", "x": "k", "ç": "c", "j": "c", "ş": "s", "w": "v"})
_Y_CLOSING = re.compile(r"(?<=[aeiou])y(?![aeiou])")  # a vowel's closing y is й or ı: Исмайлов, İsmayılov
_Y_BY_VOWEL = re.compile(r"(?<=[aeiou])y|y(?=[aeiou])")
_NOT_LETTER = re.compile(r"[^a-zəğıöüşç]+")
_DOUBLE = re.compile(r"(.)\1+")
_VOWELS = re.compile(r"[aeiou]")

# Endings, longest first. Patronymic endings (Russian -ovich/-ovna) are not surname endings.
_SURNAME_SUFFIXES = ("zadə", "zade", "zada", "yeva", "yev", "eva", "ova", "ev", "ov", "li", "lı", "lu", "lü")
_PATRONYMIC_WORDS = frozenset({"oğlu", "oglu", "ogly", "oğlı", "qızı", "qizi", "kizi", "kyzy", "gyzy", "gizi",
                               "оглы", "кызы", "гызы"})


def _lower(text: str) -> str:
    # Azerbaijani casing: I is ı and İ is i (Python's lower() would give i and i + combining dot).
    return unicodedata.normalize("NFC", text.replace("I", "ı").replace("İ", "i")).lower()


@lru_cache(maxsize=1 << 16)  # names repeat: a country has far fewer names than people
def latin(text: str | None) -> str:
    """`text` in lower-case Azerbaijani Latin letters, words separated by one space."""
    if not text:
        return ""
    low = _lower(text)
    low = "".join(_CYRILLIC.get(ch, ch) for ch in low)
    for digraph, letter in _DIGRAPHS:
        low = low.replace(digraph, letter)
    low = _SOFT_VOWEL.sub(lambda m: "ü" if m.group(1) == "u" else "ö", low)
    return " ".join(w for w in _NOT_LETTER.split(low) if w)


@lru_cache(maxsize=1 << 16)
def key(text: str | None) -> str:
    """The folded key that Latin, Cyrillic and Russian spellings of one name share (see the module's docstring)."""
    words = []
    for word in latin(text).split():
        folded = _Y_BY_VOWEL.sub("", _Y_CLOSING.sub("i", word.translate(_KEY_FOLD)))
        folded = _DOUBLE.sub(r"\1", folded)
        if folded:
            words.append(folded)
    return " ".join(words)


@lru_cache(maxsize=1 << 16)
def phonetic(text: str | None) -> str:
    """The key's first letter followed by its consonants (vowel typos and omissions fold away)."""
    k = key(text).replace(" ", "")
    if not k:
        return ""
    return _DOUBLE.sub(r"\1", k[0] + _VOWELS.sub("", k[1:]))


@lru_cache(maxsize=1 << 16)
def surname_suffix(text: str | None) -> str:
    """The ending of a surname in `latin` form ('ov', 'ev', 'li', 'zadə'...), '' when it has none of them."""
    word = latin(text).replace(" ", "")
    for suffix in _SURNAME_SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return {"ova": "ov", "yev": "ev", "yeva": "ev", "eva": "ev", "zade": "zadə", "zada": "zadə",
                    "lı": "li", "lu": "li", "lü": "li"}.get(suffix, suffix)
    return ""


@lru_cache(maxsize=1 << 16)
def surname_stem(text: str | None) -> str:
    """The surname's key without its ending: Həsənov, Гасанова, Həsənli and Hasanli share `kasan`."""
    word = latin(text).replace(" ", "")
    for suffix in _SURNAME_SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            word = word[: -len(suffix)]
            break
    return key(word)


def split_given(given: list[str] | str | None, text: str | None = None) -> tuple[str, str]:
    """(first name, father's name) in `latin` form, from a HumanName's given parts (or its text with the
    surname first, when given is absent). The father's name is '' when no patronymic was written."""
    parts = given if isinstance(given, list) else ([given] if given else [])
    words = latin(" ".join(p for p in parts if isinstance(p, str))).split()
    if not words and text:
        words = latin(text).split()[1:]  # "Surname Given Father oğlu"
    if not words:
        return "", ""
    first, rest = words[0], [w for w in words[1:] if w not in _PATRONYMIC_WORDS]
    return first, (rest[0] if rest else "")


def father_from_russian(word: str) -> str:
    """The father's name in a Russian patronymic: elçinoviç → elçin (after `latin`, -ovich reads -oviç)."""
    for ending in ("oviç", "eviç", "ovna", "evna"):
        if word.endswith(ending) and len(word) > len(ending) + 2:
            return word[: -len(ending)]
    return word


def given_and_father(given: list[str] | str | None, text: str | None = None) -> tuple[str, str]:
    """`split_given`, with a Russian patronymic (Rashad Elchinovich) read as the father's name."""
    first, father = split_given(given, text)
    if father:
        return first, father_from_russian(father)
    return first, father
