"""What the index compares of a Patient: one flat record of normalised fields (normalise.py), the same for the
batch deduplication (Splink, a table of these records) and for `$match` (one record against its candidates)."""
from __future__ import annotations

from typing import Any

from ..security.access import FIN_SYSTEM
from . import normalise

FIELDS = ("unique_id", "fin", "given", "given_key", "given_ph", "father_key", "family", "family_key",
          "family_stem", "family_suffix", "family_ph", "sex", "birth", "birth_year", "birth_month_day", "district")


def _official_name(resource: dict[str, Any]) -> dict[str, Any]:
    names = [n for n in resource.get("name") or () if isinstance(n, dict)]
    for name in names:
        if name.get("use") == "official":
            return name
    return next((n for n in names if n.get("use") not in ("old", "maiden")), names[0] if names else {})


def of_patient(resource: dict[str, Any]) -> dict[str, Any]:
    """The comparison record of a Patient (missing parts are None, which the model treats as "no evidence")."""
    name = _official_name(resource)
    family_text = name.get("family") if isinstance(name.get("family"), str) else None
    if family_text is None and isinstance(name.get("text"), str):
        family_text = name["text"].split(" ", 1)[0]
    given, father = normalise.given_and_father(name.get("given"), name.get("text"))
    fin = next((i.get("value") for i in resource.get("identifier") or ()
                if isinstance(i, dict) and i.get("system") == FIN_SYSTEM and isinstance(i.get("value"), str)), None)
    birth = resource.get("birthDate") if isinstance(resource.get("birthDate"), str) else None
    if birth is not None and len(birth) != 10:
        birth = None  # a partial date (a year alone) compares only by year
    year = (resource.get("birthDate") or "")[:4] or None
    address = next((a for a in resource.get("address") or () if isinstance(a, dict) and a.get("use") != "old"), {})
    district = normalise.key(address.get("district")) or None if isinstance(address.get("district"), str) else None
    family = normalise.latin(family_text)
    return {
        "unique_id": resource.get("id"),
        "fin": fin.strip().upper() if fin else None,
        "given": given or None,
        "given_key": normalise.key(given) or None,
        "given_ph": normalise.phonetic(given) or None,
        "father_key": normalise.key(father) or None,
        "family": family or None,
        "family_key": normalise.key(family) or None,
        "family_stem": normalise.surname_stem(family) or None,
        "family_suffix": normalise.surname_suffix(family) or None,
        "family_ph": normalise.phonetic(normalise.surname_stem(family)) or None,
        "sex": resource.get("gender") if resource.get("gender") in ("male", "female") else None,
        "birth": birth,
        "birth_year": year if year and year.isdigit() else None,
        "birth_month_day": birth[5:] if birth else None,  # MM-DD: blocks a pair whose year was mistyped
        "district": district,
    }
