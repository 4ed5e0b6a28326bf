"""Every string of the pages is in the az, ru and en catalogues, and no template holds text of its own."""
from __future__ import annotations

import datetime as dt
import re
import string
from html.parser import HTMLParser
from pathlib import Path

from healthtwin.security.scope_words import describe, describe_all
from healthtwin.web.i18n import LANGUAGES, Translator, catalogue, choose

WEB = Path(__file__).resolve().parents[2] / "src" / "healthtwin" / "web"
TEMPLATES = WEB / "templates"


def test_every_key_is_in_every_language_with_the_same_placeholders():
    keys = {lang: set(catalogue(lang)) for lang in LANGUAGES}
    assert keys["az"] == keys["ru"] == keys["en"], {l: keys["en"] ^ k for l, k in keys.items()}
    for key in keys["en"]:
        fields = {lang: set(re.findall(r"\{(\w+)\}", catalogue(lang)[key])) for lang in LANGUAGES}
        assert fields["az"] == fields["ru"] == fields["en"], key
        assert all(catalogue(lang)[key].strip() for lang in LANGUAGES), key


def test_the_languages_differ():
    """A catalogue copied from another would pass the key check: most texts must differ between languages."""
    same = [k for k in catalogue("en") if not k.startswith("lang.") and catalogue("az")[k] == catalogue("en")[k]]
    assert len(same) < 10, same


def test_every_key_the_code_and_templates_name_exists():
    used = set()
    for path in [*TEMPLATES.rglob("*.html"), *WEB.glob("*.py")]:
        used |= set(re.findall(r"""\bt\(\s*['"]([a-z_]+\.[a-z_.\-]+)['"]""", path.read_text()))
    prefixes = {k for k in used if k.endswith(".")}  # t('consent.kind.' ~ kind): the kinds are under the prefix
    missing = sorted(used - prefixes - set(catalogue("en")))
    assert used and not missing, missing
    assert all(any(k.startswith(p) for k in catalogue("en")) for p in prefixes)


class _Text(HTMLParser):
    """The text and the human-read attributes of a template, with the Jinja removed."""
    READ = {"alt", "title", "placeholder", "aria-label", "label"}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_data(self, data: str) -> None:
        self.found.append(data)

    def handle_starttag(self, tag, attrs) -> None:
        self.found += [v or "" for k, v in attrs if k in self.READ]


def _literal_text(source: str) -> str:
    source = re.sub(r"\{#.*?#\}", "", source, flags=re.S)
    source = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", " ", source, flags=re.S)
    parser = _Text()
    parser.feed(source)
    return "".join(parser.found)


def test_no_template_has_untranslated_text():
    allowed = set(string.whitespace + string.punctuation + string.digits) | set("·–—›«»“”")
    offenders = {}
    for path in TEMPLATES.rglob("*.html"):
        left = {c for c in _literal_text(path.read_text()) if c not in allowed}
        if left:
            offenders[path.name] = "".join(sorted(left))
    assert not offenders, offenders
    # and the check itself sees literal text
    assert {c for c in _literal_text("<p>Hello {{ t('x') }}</p>") if c not in allowed} == set("Helo")


def test_templates_have_no_inline_script_or_style():
    for path in TEMPLATES.rglob("*.html"):
        source = path.read_text()
        assert "<style" not in source and " style=" not in source, path.name
        assert not re.search(r"<script(?![^>]*\bsrc=)", source), path.name
        assert not re.search(r"\son[a-z]+=", source), path.name  # no event-handler attributes


def test_dates_and_numbers_in_the_locales_forms():
    day = dt.date(2026, 12, 2)
    assert Translator("az").date(day, "long") == "2 dekabr 2026"
    assert Translator("ru").date(day, "long") == "2 декабря 2026\u202fг."
    assert Translator("en").date(day, "long") == "December 2, 2026"
    assert Translator("az").number(1234.5) == "1.234,5"
    assert Translator("ru").number(1234.5) == "1\xa0234,5"
    assert Translator("en").number(1234.5) == "1,234.5"
    assert Translator("en").date("2026-12") == "Dec 1, 2026" and Translator("en").date("not a date") == "not a date"
    assert Translator("az").money(1234.5, "AZN") == "1.234,50\xa0₼"  # the manat's sign where CLDR has it
    assert Translator("ru").money(42.5, "AZN") == "42,50\xa0AZN" and Translator("en").money(42.5, "AZN") == "AZN42.50"
    assert Translator("en").money(None, "AZN") == "—"


def test_language_choice():
    assert choose(None, None) == "az"
    assert choose(None, "ru-RU,ru;q=0.9,en;q=0.8") == "ru"
    assert choose("en", "ru") == "en"
    assert choose("fr", "de,fr") == "az"


def test_scopes_in_plain_words():
    for lang in LANGUAGES:
        words = describe_all(["openid", "fhirUser", "launch/patient", "user/*.cruds", "patient/Observation.rs"], lang)
        assert len(words) == 5 and not any("/" in w or "*" in w for w in words), words
    assert describe("patient/Observation.rs", "en") == "see: test results and observations, in your own record"
    assert describe("user/*.cruds", "ru").startswith("смотреть и добавлять и изменять и удалять")


def test_every_indicator_and_dimension_has_its_words():
    """The dashboard names each indicator and breakdown in the page's language: an indicator added to
    analytics/indicators/ needs its title and dimensions in the three catalogues."""
    from healthtwin.analytics.indicators import load_indicators
    keys = set(catalogue("en"))
    missing = sorted({f"indicator.{i.name}" for i in load_indicators().values()} - keys
                     | {f"dim.{d}" for i in load_indicators().values() for d in i.dimensions} - keys)
    assert not missing, missing
