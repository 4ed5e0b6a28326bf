"""Health-care institutions, generated once per run from the seed alone (never from the shard).

Every shard computes the same tables and the same ids, so patient records in any shard can reference
them; only shard 0 writes the institution resources themselves.
Per district: one central (district/city) hospital with a Location carrying its bed count, one or two
polyclinics, a laboratory, a pharmacy and a small roster of practitioners. Nationally: the State Agency
for Mandatory Health Insurance (the payor) and TƏBİB (the body that runs public hospitals). Last, each
district's public-health centre and epidemiologist (public_health.py).
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import names
from .common import EXT, SNOMED, SYS_TAX, Resource, cc
from .geography import DISTRICTS, District
from .public_health import generate_public_health

NATIONAL_POPULATION = 10_180_770  # SSC, 1 January 2024
BEDS_PER_1000 = 4.4  # hospital beds per 1000 population (approximate, see docs)
EXT_BEDS = EXT + "location-bed-count"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
ROLE_SYS = "http://terminology.hl7.org/CodeSystem/practitioner-role"
INSURER_ID = "org-itsda"
TABIB_ID = "org-tabib"
INSURER_REF = {"reference": f"Organization/{INSURER_ID}", "display": "İcbari Tibbi Sığorta üzrə Dövlət Agentliyi"}

# (role key, SNOMED specialty code, display, practitioner-role code)
SPECIALTIES: list[tuple[str, str, str, str]] = [
    ("gp", "419772000", "Family practice", "doctor"),
    ("gp", "419772000", "Family practice", "doctor"),
    ("gp", "419772000", "Family practice", "doctor"),
    ("ped", "394537008", "Pediatric specialty", "doctor"),
    ("card", "394579002", "Cardiology", "doctor"),
    ("endo", "394583002", "Endocrinology", "doctor"),
    ("emer", "773568002", "Emergency medicine", "doctor"),
    ("int", "394802001", "General medicine", "doctor"),
    ("nurse", "224535009", "Registered nurse", "nurse"),
    ("nurse", "224535009", "Registered nurse", "nurse"),
]


@dataclass
class Site:
    """Ids and references a patient record needs for one district."""

    district: District
    hospital: str
    location: str
    polyclinics: list[str]
    lab: str
    pharmacy: str
    beds: int
    pracs: dict[str, list[str]] = field(default_factory=dict)  # role key -> practitioner ids

    def ref(self, rid: str, rtype: str = "Organization") -> dict[str, str]:
        return {"reference": f"{rtype}/{rid}"}


def build_sites(seed: int) -> list[Site]:
    """Deterministic per-district institution ids (cheap; every shard calls it)."""
    sites = []
    for d in DISTRICTS:
        n_poly = 2 if d.share * NATIONAL_POPULATION > 150_000 else 1
        beds = max(20, round(d.share * NATIONAL_POPULATION / 1000 * BEDS_PER_1000))
        site = Site(d, f"org-hosp-{d.slug}", f"loc-hosp-{d.slug}",
                    [f"org-poly-{d.slug}-{k + 1}" for k in range(n_poly)], f"org-lab-{d.slug}",
                    f"org-pharm-{d.slug}", beds)
        for k, (key, *_rest) in enumerate(SPECIALTIES):
            site.pracs.setdefault(key, []).append(f"prac-{d.slug}-{k + 1}")
        sites.append(site)
    return sites


def _org(rid: str, name: str, type_code: str, type_display: str, d: District | None, part_of: str | None,
         rng: random.Random) -> Resource:
    res: Resource = {"resourceType": "Organization", "id": rid,
                     "identifier": [{"system": SYS_TAX, "value": f"{rng.randrange(10**9, 10**10)}"}],
                     "active": True, "type": [cc(ORG_TYPE, type_code, type_display)], "name": name,
                     "telecom": [{"system": "phone", "value": f"+99412{rng.randrange(4000000, 5999999)}", "use": "work"}]}
    if d is not None:
        res["address"] = [{"use": "work", "city": "Bakı" if d.region == "baki" else d.name, "district": d.label,
                           "state": d.region_name, "country": "AZ"}]
    if part_of:
        res["partOf"] = {"reference": f"Organization/{part_of}"}
    return res


def generate_institutions(seed: int) -> Iterator[tuple[str, Resource]]:
    """All institution resources, in a fixed order (depends on the seed only)."""
    rng = random.Random(f"institutions-{seed}")
    yield "Organization", _org(INSURER_ID, "İcbari Tibbi Sığorta üzrə Dövlət Agentliyi", "pay", "Payer", None, None, rng)
    yield "Organization", _org(TABIB_ID, "Tibbi Ərazi Bölmələrinin İdarəetmə Birliyi (TƏBİB)", "govt", "Government",
                               None, None, rng)
    for site in build_sites(seed):
        d = site.district
        hname = f"{d.name} Mərkəzi Xəstəxanası" if d.region != "baki" else f"{d.name} rayon Klinik Xəstəxanası"
        yield "Organization", _org(site.hospital, hname, "prov", "Healthcare Provider", d, TABIB_ID, rng)
        for k, pid in enumerate(site.polyclinics):
            yield "Organization", _org(pid, f"{d.name} {k + 1} saylı Poliklinika", "prov", "Healthcare Provider", d,
                                       TABIB_ID, rng)
        yield "Organization", _org(site.lab, f"{d.name} Diaqnostika Laboratoriyası", "prov", "Healthcare Provider",
                                   d, TABIB_ID, rng)
        yield "Organization", _org(site.pharmacy, f"{d.name} Aptek", "other", "Other", d, None, rng)
        yield "Location", {
            "resourceType": "Location", "id": site.location, "status": "active", "name": hname, "mode": "instance",
            "type": [cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "HOSP", "Hospital")],
            "physicalType": cc("http://terminology.hl7.org/CodeSystem/location-physical-type", "bu", "Building"),
            "address": {"city": "Bakı" if d.region == "baki" else d.name, "district": d.label,
                        "state": d.region_name, "country": "AZ"},
            "managingOrganization": {"reference": f"Organization/{site.hospital}"},
            "extension": [{"url": EXT_BEDS, "valueInteger": site.beds}],
        }
        for k, (key, code, display, role) in enumerate(SPECIALTIES):
            sex = "female" if (role == "nurse" or rng.random() < 0.55) else "male"
            fam_m, fam_f = names.surname(rng)
            prid = f"prac-{d.slug}-{k + 1}"
            yield "Practitioner", {
                "resourceType": "Practitioner", "id": prid, "active": True,
                "name": [names.human_name(fam_m if sex == "male" else fam_f, names.given_name(rng, sex),
                                          names.given_name(rng, "male"), sex)],
                "telecom": [{"system": "phone", "value": names.mobile(rng), "use": "work"}], "gender": sex,
            }
            org = site.hospital if key in ("emer", "card", "int") else site.polyclinics[k % len(site.polyclinics)]
            yield "PractitionerRole", {
                "resourceType": "PractitionerRole", "id": f"prole-{d.slug}-{k + 1}", "active": True,
                "practitioner": {"reference": f"Practitioner/{prid}"},
                "organization": {"reference": f"Organization/{org}"},
                "code": [cc(ROLE_SYS, role, role.capitalize())], "specialty": [cc(SNOMED, code, display)],
            }
    yield from generate_public_health(seed)  # its own random stream: nothing above changes
