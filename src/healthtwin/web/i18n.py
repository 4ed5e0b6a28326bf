"""Translations and locale formats: Azerbaijani (the default), Russian and English.

Each language has one catalogue, `locales/<code>.json`, a flat map from a key to its text; every key is in
all three (tests/web/test_i18n.py checks, and that no template holds text outside a `t()` call). Texts take
`{name}` placeholders filled by `t(key, name=value)`. Dates and numbers are formatted with Babel's CLDR data
(az: "2 dekabr 2026", 1.234,5; ru: "2 декабря 2026 г.", 1 234,5; en: "December 2, 2026", 1,234.5)."""
from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import orjson
from babel.dates import format_date, format_datetime
from babel.numbers import UnknownCurrencyError, format_currency, format_decimal, format_percent

LANGUAGES = ("az", "ru", "en")
DEFAULT = "az"
FOLDER = Path(__file__).parent / "locales"


@lru_cache(maxsize=None)
def catalogue(lang: str) -> dict[str, str]:
    return orjson.loads((FOLDER / f"{lang}.json").read_bytes())


def choose(requested: str | None, accept_language: str | None) -> str:
    """The language asked for (a `lang` cookie or parameter), else the browser's first supported one, else az."""
    if requested in LANGUAGES:
        return requested  # type: ignore[return-value]
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT


class Translator:
    """What templates call: `t(key, **values)`, `date(value)`, `datetime(value)`, `number(value)`."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT
        self.texts = catalogue(self.lang)

    def t(self, key: str, **values: Any) -> str:
        text = self.texts.get(key)
        if text is None:  # a missing key is a bug the catalogue test catches; the page still renders
            text = catalogue("en").get(key, key)
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self.texts

    def maybe(self, prefix: str, code: Any, fallback: Any = "") -> str:
        """The translation of a code (`prefix.code`) if the catalogue has one, else the fallback (a display
        text from the data itself, which is not ours to translate)."""
        key = f"{prefix}.{code}"
        return self.t(key) if key in self.texts else str(fallback if fallback not in (None, "") else code or "")

    def date(self, value: Any, style: str = "medium") -> str:
        parsed = _parse(value)
        if parsed is None:
            return str(value or "")
        if isinstance(parsed, dt.datetime):
            parsed = parsed.date()
        return format_date(parsed, style, locale=self.lang)

    def datetime(self, value: Any) -> str:
        parsed = _parse(value)
        if parsed is None:
            return str(value or "")
        if not isinstance(parsed, dt.datetime):
            return format_date(parsed, "medium", locale=self.lang)
        return format_datetime(parsed, "medium", tzinfo=dt.timezone.utc, locale=self.lang)

    def number(self, value: Any, digits: int = 1) -> str:
        if value is None or value == "":
            return "—"
        try:
            number = float(value)
        except (TypeError, ValueError):
            return str(value)
        if number.is_integer() and digits >= 0 and abs(number) < 1e15:
            return format_decimal(int(number), locale=self.lang)
        return format_decimal(round(number, digits), format=f"#,##0.{'#' * max(digits, 1)}", locale=self.lang)

    def money(self, value: Any, currency: str | None) -> str:
        """An amount in the locale's form for its currency (az "42,50 ₼", ru "42,50 AZN", en "AZN42.50")."""
        if value is None or value == "":
            return "—"
        try:
            return format_currency(float(value), (currency or "AZN").upper(), locale=self.lang)
        except (TypeError, ValueError, UnknownCurrencyError):
            return f"{self.number(value, 2)} {currency or ''}".strip()

    def percent(self, value: Any) -> str:
        return "—" if value is None else format_percent(float(value), "#,##0.#%", locale=self.lang)

    def globals(self) -> dict[str, Callable[..., str] | str]:
        return {"t": self.t, "maybe": self.maybe, "fdate": self.date, "fdatetime": self.datetime,
                "fnum": self.number, "fmoney": self.money, "fpct": self.percent, "lang": self.lang}


def _parse(value: Any) -> dt.date | dt.datetime | None:
    if isinstance(value, (dt.date, dt.datetime)):
        return value
    if not isinstance(value, str) or len(value) < 4:
        return None
    text = value.replace("Z", "+00:00")
    try:
        if len(text) == 4:
            return dt.date(int(text), 1, 1)
        if len(text) == 7:
            return dt.date(int(text[:4]), int(text[5:7]), 1)
        if len(text) == 10:
            return dt.date.fromisoformat(text)
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None
