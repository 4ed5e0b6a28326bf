"""The public-health service of each district: its centre (an Organization) and its epidemiologist (a
Practitioner and the PractitionerRole that alerts are addressed to).

Generated from the seed alone, after the other institutions and from a random stream of its own, so adding
them changed none of the ids or values generated before them. The PractitionerRole carries the identifier
the detection run routes by (`https://health.gov.az/fhir/sid/district-epidemiologist`, value: the district
as patients' addresses name it, e.g. "Sumqayıt" or "Binəqədi rayonu"), so the twin finds the recipient of
a district's alert by a search, without knowing the generator's ids.
"""
from __future__ import annotations

import random
from collections.abc import Iterator

from . import names
from .common import SYS_TAX, Resource, cc
from .geography import DISTRICTS, District

SYS_DISTRICT_EPIDEMIOLOGIST = "https://health.gov.az/fhir/sid/district-epidemiologist"
ROLE_SYS = "https://health.gov.az/fhir/CodeSystem/practitioner-role"  # national roles the HL7 set lacks
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
PUBLIC_HEALTH_PARENT = "org-tabib"  # institutions.TABIB_ID: the centres report to the ministry's body


def centre_id(d: District) -> str:
    return f"org-phc-{d.slug}"


def epidemiologist_role_id(d: District) -> str:
    return f"prole-epi-{d.slug}"


def generate_public_health(seed: int) -> Iterator[tuple[str, Resource]]:
    """One centre, one epidemiologist and their role per district, in a fixed order (seed only)."""
    rng = random.Random(f"public-health-{seed}")
    for d in DISTRICTS:
        address = {"use": "work", "city": "Bakı" if d.region == "baki" else d.name, "district": d.label,
                   "state": d.region_name, "country": "AZ"}
        yield "Organization", {
            "resourceType": "Organization", "id": centre_id(d), "active": True,
            "identifier": [{"system": SYS_TAX, "value": f"{rng.randrange(10**9, 10**10)}"}],
            "type": [cc(ORG_TYPE, "govt", "Government")],
            "name": f"{d.name} Gigiyena və Epidemiologiya Mərkəzi", "address": [address],
            "partOf": {"reference": f"Organization/{PUBLIC_HEALTH_PARENT}"},
        }
        sex = "female" if rng.random() < 0.55 else "male"
        fam_m, fam_f = names.surname(rng)
        prid = f"prac-epi-{d.slug}"
        yield "Practitioner", {
            "resourceType": "Practitioner", "id": prid, "active": True,
            "name": [names.human_name(fam_m if sex == "male" else fam_f, names.given_name(rng, sex),
                                      names.given_name(rng, "male"), sex)],
            "telecom": [{"system": "phone", "value": names.mobile(rng), "use": "work"}], "gender": sex,
        }
        yield "PractitionerRole", {
            "resourceType": "PractitionerRole", "id": epidemiologist_role_id(d), "active": True,
            "identifier": [{"system": SYS_DISTRICT_EPIDEMIOLOGIST, "value": d.label}],
            "practitioner": {"reference": f"Practitioner/{prid}"},
            "organization": {"reference": f"Organization/{centre_id(d)}"},
            "code": [cc(ROLE_SYS, "epidemiologist", "District epidemiologist")],
        }
