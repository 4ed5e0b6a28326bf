"""AllergyIntolerance: the drug allergies on a resident's record, so the prescribing checks (registries/
prescribing/checks.py) act on generated data.

Three drug classes, each recorded independently with the share of residents who carry the label in published
record studies (docs/population.md "Statistics and their sources"):
* penicillins, ATC `J01C`: 5.9 % (UK primary-care records, West et al., Clin Exp Allergy 2019);
* sulfonamide antibacterials, ATC `J01E` (sulfonamides and trimethoprim): 3.4 %, the penicillin share times
  the sulfonamide-to-penicillin ratio of a large US record study (7.4 % / 12.8 %, Zhou et al., Allergy 2016);
* NSAIDs, ATC `M01A`: 1.0 %, within the 0.5-1.9 % of the general population with NSAID hypersensitivity
  (EAACI position paper, Kowalski et al., Allergy 2011).
Infants under one have none (no exposure yet). The code is the ATC class (what the checks match: `J01C` covers
`J01CA04` amoxicillin) with its name as text; most labels are unconfirmed, a few anaphylaxis `high`.

Determinism: the draws come from a hash of the person's FIN and the class, never from the person's random
stream, so every other resource of the population is byte-for-byte what it was without allergies.
"""
from __future__ import annotations

import hashlib

from .common import ATC, SNOMED, Person, Resource, dstr

_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
# (key, ATC class, name, share of residents, reactions: (SNOMED code, display, share of labels))
CLASSES: tuple[tuple[str, str, str, float, tuple[tuple[str, str, float], ...]], ...] = (
    ("penicillin", "J01C", "penicillins", 0.059,
     (("271807003", "Eruption of skin", 0.6), ("126485001", "Urticaria", 0.35), ("39579001", "Anaphylaxis", 0.05))),
    ("sulfonamide", "J01E", "sulfonamides and trimethoprim", 0.034,
     (("271807003", "Eruption of skin", 0.8), ("126485001", "Urticaria", 0.18), ("39579001", "Anaphylaxis", 0.02))),
    ("nsaid", "M01A", "non-steroidal anti-inflammatory drugs", 0.010,
     (("126485001", "Urticaria", 0.6), ("195967001", "Asthma", 0.37), ("39579001", "Anaphylaxis", 0.03))),
)
CONFIRMED_SHARE = 0.2  # most labels are the patient's report, never tested (West et al.: over 90 % not allergic)


def _uniforms(p: Person, key: str) -> tuple[float, float, float, float]:
    digest = hashlib.blake2b(f"{p.fin}/allergy/{key}".encode(), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "big") / 2**32 for i in (0, 4, 8, 12))  # type: ignore[return-value]


def record(p: Person, start: int) -> int:
    """Emit the person's drug allergies, recorded between `start` (or their first birthday) and the window's end;
    returns how many."""
    first = max(start, p.birth + 366)
    if first > p.win_end:
        return 0
    n = 0
    for key, code, name, share, reactions in CLASSES:
        has, when, which, confirmed = _uniforms(p, key)
        if has >= share:
            continue
        cumulative, reaction = 0.0, reactions[-1]
        for r in reactions:
            cumulative += r[2]
            if which < cumulative:
                reaction = r
                break
        severe = reaction[0] == "39579001"
        res: Resource = {
            "resourceType": "AllergyIntolerance", "id": f"alg-{p.idx}-{key}",
            "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": _VERIFICATION,
                                               "code": "confirmed" if confirmed < CONFIRMED_SHARE else "unconfirmed"}]},
            "type": "allergy", "category": ["medication"], "criticality": "high" if severe else "low",
            "code": {"coding": [{"system": ATC, "code": code, "display": name}], "text": name},
            "patient": p.ref, "recordedDate": dstr(first + int(when * (p.win_end - first + 1))),
            "reaction": [{"manifestation": [{"coding": [{"system": SNOMED, "code": reaction[0],
                                                         "display": reaction[1]}], "text": reaction[1]}],
                          "severity": "severe" if severe else "mild"}],
        }
        p.emit("AllergyIntolerance", res)
        n += 1
    return n
