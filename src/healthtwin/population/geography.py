"""The 14 economic regions of Azerbaijan (2021 division) with their districts and population shares.

Regional shares: State Statistics Committee, population at 1 January 2024 (see docs/population.md).
District weights inside a region are approximate district populations in thousands (model input used
only to split the region's share); they need not sum to anything.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

# (region slug, name, share % of national population, relative vaccination-coverage factor,
#  [(district slug, name, weight, urban)])
# The vaccination factor encodes the usual gradient (capital and Nakhchivan slightly above, resettlement
# and mountain districts below); it is renormalised so the national mean equals the WUENIC target.
_REGIONS: list[tuple[str, str, float, float, list[tuple[str, str, float, bool]]]] = [
    ("baki", "Bakı", 23.0, 1.02, [
        ("binaqadi", "Binəqədi", 265, True), ("qaradag", "Qaradağ", 125, True), ("xatai", "Xətai", 290, True),
        ("xazar", "Xəzər", 170, True), ("narimanov", "Nərimanov", 180, True), ("nasimi", "Nəsimi", 225, True),
        ("nizami", "Nizami", 200, True), ("pirallahi", "Pirallahı", 20, True), ("sabuncu", "Sabunçu", 250, True),
        ("sabail", "Səbail", 100, True), ("suraxani", "Suraxanı", 220, True), ("yasamal", "Yasamal", 250, True)]),
    ("abseron-xizi", "Abşeron-Xızı", 8.6, 1.0, [
        ("sumqayit", "Sumqayıt", 460, True), ("abseron", "Abşeron", 220, False), ("xizi", "Xızı", 17, False)]),
    ("ganca-daskasan", "Gəncə-Daşkəsən", 5.9, 1.0, [
        ("ganca", "Gəncə", 335, True), ("daskasan", "Daşkəsən", 35, False), ("goygol", "Göygöl", 65, False),
        ("samux", "Samux", 60, False), ("naftalan", "Naftalan", 10, True)]),
    ("qazax-tovuz", "Qazax-Tovuz", 6.7, 0.99, [
        ("qazax", "Qazax", 100, False), ("agstafa", "Ağstafa", 88, False), ("tovuz", "Tovuz", 180, False),
        ("samkir", "Şəmkir", 215, False), ("gadabay", "Gədəbəy", 100, False)]),
    ("quba-xacmaz", "Quba-Xaçmaz", 5.4, 0.98, [
        ("quba", "Quba", 165, False), ("qusar", "Qusar", 98, False), ("xacmaz", "Xaçmaz", 175, False),
        ("sabran", "Şabran", 60, False), ("siyazan", "Siyəzən", 42, False)]),
    ("qarabag", "Qarabağ", 7.3, 0.96, [
        ("agdam", "Ağdam", 210, False), ("agcabadi", "Ağcabədi", 135, False), ("barda", "Bərdə", 160, False),
        ("fuzuli", "Füzuli", 135, False), ("tartar", "Tərtər", 105, False), ("xocali", "Xocalı", 29, False),
        ("xocavand", "Xocavənd", 45, False), ("susa", "Şuşa", 33, True), ("xankandi", "Xankəndi", 60, True)]),
    ("lankaran-astara", "Lənkəran-Astara", 9.2, 0.98, [
        ("lankaran", "Lənkəran", 230, False), ("astara", "Astara", 110, False), ("lerik", "Lerik", 85, False),
        ("yardimli", "Yardımlı", 62, False), ("masalli", "Masallı", 225, False), ("calilabad", "Cəlilabad", 225, False)]),
    ("markazi-aran", "Mərkəzi Aran", 7.1, 0.99, [
        ("mingacevir", "Mingəçevir", 105, True), ("yevlax", "Yevlax", 130, False), ("agdas", "Ağdaş", 110, False),
        ("goycay", "Göyçay", 125, False), ("ucar", "Ucar", 88, False), ("zardab", "Zərdab", 60, False),
        ("kurdamir", "Kürdəmir", 115, False)]),
    ("mil-mugan", "Mil-Muğan", 5.1, 0.98, [
        ("imisli", "İmişli", 130, False), ("beylaqan", "Beyləqan", 100, False), ("saatli", "Saatlı", 110, False),
        ("sabirabad", "Sabirabad", 175, False)]),
    ("dagliq-sirvan", "Dağlıq Şirvan", 3.1, 0.97, [
        ("samaxi", "Şamaxı", 105, False), ("agsu", "Ağsu", 80, False), ("ismayilli", "İsmayıllı", 90, False),
        ("qobustan", "Qobustan", 48, False)]),
    ("naxcivan", "Naxçıvan", 4.6, 1.02, [
        ("naxcivan-s", "Naxçıvan şəhəri", 95, True), ("babak", "Babək", 75, False), ("culfa", "Culfa", 45, False),
        ("kangarli", "Kəngərli", 30, False), ("ordubad", "Ordubad", 50, False), ("sadarak", "Sədərək", 16, False),
        ("sahbuz", "Şahbuz", 25, False), ("sarur", "Şərur", 118, False)]),
    ("saki-zaqatala", "Şəki-Zaqatala", 6.1, 0.98, [
        ("saki", "Şəki", 185, False), ("zaqatala", "Zaqatala", 130, False), ("balakan", "Balakən", 100, False),
        ("qax", "Qax", 58, False), ("qabala", "Qəbələ", 105, False), ("oguz", "Oğuz", 45, False)]),
    ("sirvan-salyan", "Şirvan-Salyan", 4.9, 0.98, [
        ("sirvan", "Şirvan", 90, True), ("salyan", "Salyan", 135, False), ("neftcala", "Neftçala", 90, False),
        ("haciqabul", "Hacıqabul", 75, False)]),
    ("sarqi-zangazur", "Şərqi Zəngəzur", 3.0, 0.95, [
        ("cabrayil", "Cəbrayıl", 82, False), ("kalbacar", "Kəlbəcər", 95, False), ("qubadli", "Qubadlı", 40, False),
        ("lacin", "Laçın", 78, False), ("zangilan", "Zəngilan", 45, False)]),
]

VILLAGES = ["Aşağı", "Yuxarı", "Yeni", "Köhnə", "Orta", "Böyük", "Kiçik", "Qızıl", "Ağ", "Qara"]
STREETS = ["Nizami", "Füzuli", "Səməd Vurğun", "Azadlıq", "Neftçilər", "Heydər Əliyev", "Natəvan", "Cavid",
           "Üzeyir Hacıbəyov", "Məmməd Əmin Rəsulzadə", "Xətai", "Bülbül", "Sabir", "28 May", "İstiqlaliyyət"]


@dataclass(frozen=True)
class District:
    slug: str
    name: str
    region: str
    region_name: str
    share: float  # fraction of the national population
    urban: bool  # a city of republican subordination (all residents urban)
    vacc_factor: float
    index: int

    @property
    def label(self) -> str:
        """Official style: Baku districts are 'rayonu' of the city, cities stand alone."""
        return self.name if self.urban and self.region != "baki" else f"{self.name} rayonu"


def _build() -> tuple[list[District], dict[str, float]]:
    out: list[District] = []
    region_share = {}
    total_share = sum(r[2] for r in _REGIONS)
    mean_factor = sum(r[2] * r[3] for r in _REGIONS) / total_share
    for slug, name, share, factor, dists in _REGIONS:
        region_share[slug] = share / total_share
        wsum = sum(d[2] for d in dists)
        for dslug, dname, w, urban in dists:
            out.append(District(dslug, dname, slug, name, share / total_share * w / wsum, urban,
                                factor / mean_factor, len(out)))
    return out, region_share


DISTRICTS, REGION_SHARE = _build()
BY_SLUG = {d.slug: d for d in DISTRICTS}
REGION_NAMES = {r[0]: r[1] for r in _REGIONS}
_CUM: list[float] = []
_acc = 0.0
for _d in DISTRICTS:
    _acc += _d.share
    _CUM.append(_acc)
# National urban share is 54.5 % (SSC 2024); residents of non-city districts live in the district
# centre with this probability so that the national figure is met.
_URBAN_CITY = sum(d.share for d in DISTRICTS if d.urban)
RURAL_DISTRICT_URBAN_P = max(0.0, (0.545 - _URBAN_CITY) / (1.0 - _URBAN_CITY))


def sample_district(rng: random.Random) -> District:
    return DISTRICTS[min(bisect.bisect_left(_CUM, rng.random() * _acc), len(DISTRICTS) - 1)]


def address(rng: random.Random, d: District) -> dict[str, object]:
    """A FHIR Address: district in Address.district, economic region in Address.state."""
    urban = d.urban or rng.random() < RURAL_DISTRICT_URBAN_P
    if d.region == "baki":
        city = "Bakı"
    elif urban:
        city = d.name.replace(" şəhəri", "")
    else:
        city = f"{VILLAGES[rng.randrange(len(VILLAGES))]} {d.name} kəndi"
    line = f"{STREETS[rng.randrange(len(STREETS))]} küç. {rng.randrange(1, 180)}"
    if urban and rng.random() < 0.7:
        line += f", m. {rng.randrange(1, 120)}"
    return {"use": "home", "type": "physical", "line": [line], "city": city, "district": d.label,
            "state": d.region_name, "postalCode": f"AZ{1000 + d.index * 37 % 8000:04d}", "country": "AZ",
            "extension": [{"url": EXT_URBAN, "valueBoolean": urban}]}


EXT_URBAN = "https://health.gov.az/fhir/StructureDefinition/address-urban"
