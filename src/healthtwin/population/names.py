"""Azerbaijani personal names in the official Latin script (ə ğ ı ö ü ş ç).

Convention used in the generated HumanName (documented in docs/population.md):
  family = surname (gendered -ov/-ova, -yev/-yeva; ungendered -li/-lı/-lu/-zadə),
  given  = [first name, patronymic], where the patronymic is the father's name + "oğlu" (son) or
           "qızı" (daughter), exactly as written in Azerbaijani identity documents,
  text   = "Surname Given Father oğlu".
"""
from __future__ import annotations

import random

MALE = ("Əli Məmməd Hüseyn Həsən Rəşad Elvin Orxan Tural Kamran Nicat Ramil Elçin Vüsal Anar Murad Fərid "
        "Ayxan Yusif Ömər Rauf Səbuhi İlkin Emil Cavid Tofiq Vaqif Şahin Zaur Elnur Rövşən Namiq İlham Fuad "
        "Rüstəm Nurlan Kənan Uğur Əhməd Mirzə Araz Toğrul Rəsul İbrahim Səməd Coşqun Vüqar Fizuli Eldar "
        "Azər Teymur Hikmət Ülvi Nihad Zaid Musa İsmayıl Ağa Arif Bəxtiyar Çingiz Fəxri Qasım Şəmil").split()
FEMALE = ("Aysel Leyla Günay Nərmin Aytən Səbinə Xədicə Fatimə Zəhra Nigar Aynur Lalə Sevinc Könül Türkan "
          "Nərgiz Ülviyyə Şəbnəm Gülnar Rəna Aygün Məryəm Ayan Zeynəb Əminə Vüsalə İlahə Səidə Gülşən "
          "Məleykə Çinarə Röya Gülər Aidə Arzu Elmira Firuzə Həcər Jalə Kəmalə Lamiyə Mehriban Nazlı "
          "Pərvin Sona Təranə Ulduz Yeganə Zərifə Ayşən Fidan Nuray Sədaqət Şəfəq Xanım Dilarə Əsmər").split()
# Surname stems taking -ov/-ova (-yev/-yeva after a vowel-final stem is encoded in the stem itself).
_OV = ("Əliyev Məmmədov Həsənov Hüseynov Quliyev İsmayılov Abbasov Rəhimov Babayev Cəfərov Nəsirov Səfərov "
       "Orucov Mustafayev Qasımov Sultanov Kərimov Rzayev Əhmədov Bağırov İbrahimov Zeynalov Şükürov Vəliyev "
       "Nağıyev Süleymanov Məhərrəmov Paşayev Xəlilov Allahverdiyev Qənbərov Hacıyev Novruzov Salmanov "
       "Əsgərov Musayev Ağayev Tağıyev Bayramov Yusifov Rüstəmov Məlikov Heydərov Kazımov Şirinov").split()
_UNGENDERED = ("Həsənli Rüstəmli Cəfərli Nəsibli Abbaslı Əlizadə Mirzəzadə Quluzadə Hacızadə Əfəndizadə "
               "Vəkilli Şahbazlı Qarayevli Məmmədli Sadıqlı Bəylərli Tahirli Cəlilli Ağalarlı Rəsulzadə").split()
SURNAMES: list[tuple[str, str]] = [(s, s + "a") for s in _OV] + [(s, s) for s in _UNGENDERED]
# -ov/-yev forms dominate in Azerbaijan; -li and -zadə forms are rarer (weight ~1/6 of the draws).
_SURNAME_P_UNGENDERED = 0.16

MOBILE_PREFIX = ("50", "51", "55", "70", "77", "99", "10")


def given_name(rng: random.Random, sex: str) -> str:
    pool = MALE if sex == "male" else FEMALE
    return pool[rng.randrange(len(pool))]


def surname(rng: random.Random) -> tuple[str, str]:
    """(male form, female form) of a family surname."""
    if rng.random() < _SURNAME_P_UNGENDERED:
        s = _UNGENDERED[rng.randrange(len(_UNGENDERED))]
        return s, s
    s = _OV[rng.randrange(len(_OV))]
    return s, s + "a"


def patronymic(father: str, sex: str) -> str:
    return f"{father} {'oğlu' if sex == 'male' else 'qızı'}"


def human_name(family: str, given: str, father: str, sex: str) -> dict[str, object]:
    pat = patronymic(father, sex)
    return {"use": "official", "text": f"{family} {given} {pat}", "family": family, "given": [given, pat]}


def mobile(rng: random.Random) -> str:
    """E.164 Azerbaijani mobile number (+994 + operator prefix + 7 digits)."""
    return f"+994{MOBILE_PREFIX[rng.randrange(len(MOBILE_PREFIX))]}{rng.randrange(2000000, 9999999)}"
