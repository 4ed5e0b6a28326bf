"""The clinical life of one person inside the window: encounters and everything attached to them.

Planned contacts (diagnoses, follow-ups, acute episodes, check-ups, admissions, planted events, death)
are collected, sorted by day and then rendered, so each person's resources come out chronologically.
"""
from __future__ import annotations

from datetime import date as _date
from typing import Any

from . import conditions as C
from . import medications, observations
from .common import ACT, ICD10, SNOMED, UCUM, Person, cc, dstr, dtstr, poisson, year_of
from .events import Events
from .institutions import Site
from .insurance import claim_and_eob

_CLASS = {"AMB": {"system": ACT, "code": "AMB", "display": "ambulatory"},
          "EMER": {"system": ACT, "code": "EMER", "display": "emergency"},
          "IMP": {"system": ACT, "code": "IMP", "display": "inpatient encounter"}}
ENCOUNTER_TYPES = {k: [cc(SNOMED, c, d)] for k, c, d in (
    ("checkup", "410620009", "Well child visit"), ("adult_check", "185349003", "Encounter for check up"),
    ("consult", "11429006", "Consultation"), ("fu", "390906007", "Follow-up encounter"),
    ("emer", "50849002", "Emergency room admission"), ("imp", "32485007", "Hospital admission"),
    ("birth", "169836001", "Birth of child"))}
_PART = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PPRF",
                      "display": "primary performer"}]}]
_ADMIT = {k: cc("http://terminology.hl7.org/CodeSystem/admit-source", k, d)
          for k, d in (("emd", "From accident/emergency department"), ("gp", "General Practitioner referral"),
                       ("born", "Born in hospital"))}
_DISCH = {k: cc("http://terminology.hl7.org/CodeSystem/discharge-disposition", k, d)
          for k, d in (("home", "Home"), ("exp", "Expired"))}
# procedure key -> (SNOMED, display, tariff code)
PROCS = {"ecg": ("29303009", "Electrocardiographic procedure", "PROC-ECG"),
         "spiro": ("127783003", "Spirometry", "PROC-SPIRO"),
         "mammo": ("71651007", "Mammography", "PROC-MAMMO"),
         "pci": ("415070008", "Percutaneous coronary intervention", "PROC-PCI"),
         "append": ("80146002", "Excision of appendix", "PROC-APPEND"),
         "dial": ("302497006", "Hemodialysis", "PROC-DIAL"),
         "transf": ("116859006", "Transfusion of blood product", "PROC-TRANSF"),
         "chemo": ("367336001", "Chemotherapy", "PROC-CHEMO")}
_PCODE = {k: cc(SNOMED, v[0], v[1]) for k, v in PROCS.items()}
MEASLES = ("14189004", "Measles", "B05.9", "Measles without complication")
# Reasons (ICD-10) for the admissions of the planted capacity crunch: by the condition behind it, else by age.
CRUNCH_REASONS = {"ihd": ("I21.9", "Acute myocardial infarction, unspecified"),
                  "copd": ("J44.1", "Chronic obstructive pulmonary disease with acute exacerbation, unspecified"),
                  "younger": ("R69", "Illness, unspecified"), "older": ("I50.9", "Heart failure, unspecified")}
BIRTH_REASON = ("Z38.0", "Singleton, born in hospital")
_FU_SPECIALIST = {"htn": "card", "ihd": "card", "t2dm": "endo"}


class Run:
    """Run-wide constants shared by all persons of a shard."""

    def __init__(self, start: int, end: int, history_start: int, events: Events, sites: list[Site]) -> None:
        self.start, self.end, self.history_start, self.events, self.sites = start, end, history_start, events, sites
        self.duplicates: dict[str, dict] = {}  # dirty duplicate Patients' truth (population/duplicates.py)


def _pick(p: Person, lst: list[str]) -> str:
    return lst[p.rng.randrange(len(lst))]


def encounter(p: Person, run: Run, site: Site, cls: str, etype: str, day: int, minute: int, end_day: int,
              prac: str, reason: tuple[str, str] | None = None, planted: bool = False,
              died: bool = False) -> tuple[str, dict[str, str]]:
    eid = p.new_id("enc")
    org = site.hospital if cls != "AMB" else site.polyclinics[p.idx % len(site.polyclinics)]
    end_min = minute + (20 + p.rng.randrange(25) if cls == "AMB" else 180 + p.rng.randrange(240))
    res: dict[str, Any] = {
        "resourceType": "Encounter", "id": eid, "status": "finished", "class": _CLASS[cls], "type": ENCOUNTER_TYPES[etype],
        "subject": p.ref,
        "participant": [{"type": _PART, "individual": {"reference": f"Practitioner/{prac}"}}],
        "period": {"start": dtstr(day, minute), "end": dtstr(end_day, end_min if end_day == day else 660)},
    }
    if cls == "IMP":
        res["length"] = {"value": max(1, end_day - day), "unit": "days", "system": UCUM, "code": "d"}
        res["hospitalization"] = {"admitSource": _ADMIT["born" if etype == "birth" else ("emd" if p.rng.random() < 0.6 else "gp")],
                                  "dischargeDisposition": _DISCH["exp" if died else "home"]}
        res["location"] = [{"location": {"reference": f"Location/{site.location}"}, "status": "completed",
                            "period": res["period"]}]
        run.events.note_stay(site.location, eid, day, end_day, planted)
    else:
        res["length"] = {"value": (end_min - minute) if cls == "AMB" else end_min - minute, "unit": "minutes",
                         "system": UCUM, "code": "min"}
    if reason:
        res["reasonCode"] = [{"coding": [{"system": ICD10, "code": reason[0], "display": reason[1]}], "text": reason[1]}]
    res["serviceProvider"] = {"reference": f"Organization/{org}"}
    p.emit("Encounter", res)
    return eid, {"reference": f"Encounter/{eid}"}


def _procedure(p: Person, key: str, enc: dict[str, str], day: int, minute: int, prac: str) -> None:
    p.emit("Procedure", {"resourceType": "Procedure", "id": p.new_id("prc"), "status": "completed",
                         "code": _PCODE[key], "subject": p.ref, "encounter": enc,
                         "performedDateTime": dtstr(day, minute + 30),
                         "performer": [{"actor": {"reference": f"Practitioner/{prac}"}}]})


def _segments_rate(p: Person, rate_fn: Any, lo: int, hi: int) -> list[int]:
    """Days of a Poisson process with a per-year (age-dependent) rate over [lo, hi]."""
    out: list[int] = []
    d = lo
    while d <= hi:
        seg_end = min(hi, d + 365)
        lam = rate_fn(p.age_at(d)) * (seg_end - d + 1) / 365.25
        for _ in range(poisson(p.rng, lam)):
            out.append(d + p.rng.randrange(seg_end - d + 1))
        d = seg_end + 1
    return out


def plan(p: Person, run: Run) -> list[tuple[int, int, str, Any]]:
    """(day, order, kind, payload) contacts of this person inside its window."""
    rng, lo, hi = p.rng, p.win_start, p.win_end
    items: list[tuple[int, int, str, Any]] = []
    if p.birth >= run.start:
        items.append((p.birth, 0, "birth", None))
    for key, onset in p.conds.items():
        spec = C.CHRONIC_BY_KEY[key]
        if lo <= onset <= hi:
            items.append((onset, 1, "dx", key))
        first = max(lo, onset + 1)
        if spec.visits_per_year > 0 and first <= hi:
            for d in _segments_rate(p, lambda a, v=spec.visits_per_year: v, first, hi):
                items.append((d, 2, "fu", key))
        if key == "ihd" or key == "copd":
            for d in _segments_rate(p, lambda a, k=key: 0.03 if k == "ihd" else 0.12, first, hi):
                items.append((d, 3, "adm", key))
    # Acute episodes: per calendar year draw a full year's episodes on the seasonal profile and keep
    # those inside the window (exact thinning, so partial years get the right seasonal share).
    for year in range(year_of(lo), year_of(hi) + 1):
        jan1 = _date(year, 1, 1).toordinal()
        age = p.age_at(jan1 + 182)
        for a in C.ACUTE:
            for _k in range(poisson(rng, C.acute_rate(a, age))):
                day = jan1 + C.day_of_year(rng, a.key)
                if lo <= day <= hi:
                    items.append((day, 4, "acute", a.key))
    for d in _segments_rate(p, lambda a: 1.2 if a < 6 else (0.25 if a < 18 else 0.35), lo, hi):
        items.append((d, 5, "check", None))
    for d in _segments_rate(p, lambda a: 0.02 if a < 15 else (0.04 if a < 65 else 0.10), lo, hi):
        items.append((d, 3, "adm", None))
    ev = run.events
    for d in ev.flu_extra_days(p):
        items.append((d, 4, "acute", "ili*"))
    m = ev.measles_onset(p)
    if m is not None:
        items.append((m, 4, "measles", None))
    for d in ev.crunch_days(p):
        items.append((d, 3, "adm", "crunch"))
    if p.death is not None:
        items.append((p.death, 9, "death", None))
    items.sort(key=lambda t: (t[0], t[1]))
    return items


def render(p: Person, run: Run, site: Site) -> None:
    rng = p.rng
    lab_ref = [{"reference": f"Organization/{site.lab}"}]
    pharm = {"reference": f"Organization/{site.pharmacy}"}
    cond_ids: dict[str, str] = {}
    # Chronic conditions diagnosed before the window are part of the problem list from the start.
    for key, onset in p.conds.items():
        if onset < p.win_start:
            spec = C.CHRONIC_BY_KEY[key]
            cid = p.new_id("cnd")
            cond_ids[key] = cid
            p.emit("Condition", C.condition_resource(p, cid, spec.snomed, spec.snomed_display, spec.icd10,
                                                     spec.icd_display, onset, None, None, None))
    for day, _o, kind, payload in plan(p, run):
        if day > p.win_end or day < p.win_start:
            continue
        minute = 480 + rng.randrange(540)
        child = p.age_at(day) < 15
        gp = _pick(p, site.pracs["ped" if child else "gp"])
        if kind in ("dx", "fu"):
            spec = C.CHRONIC_BY_KEY[payload]
            prac = _pick(p, site.pracs[_FU_SPECIALIST.get(payload, "gp") if not child else "ped"])
            eid, enc = encounter(p, run, site, "AMB", "consult" if kind == "dx" else "fu", day, minute, day, prac,
                                 (spec.icd10, spec.icd_display))
            if kind == "dx":
                cid = p.new_id("cnd")
                cond_ids[payload] = cid
                p.emit("Condition", C.condition_resource(p, cid, spec.snomed, spec.snomed_display, spec.icd10,
                                                         spec.icd_display, day, None, eid, prac))
            perf = [{"reference": f"Practitioner/{prac}"}]
            observations.vitals(p, enc, day, minute, perf)
            panel = observations.PANELS.get(payload, ())
            if panel:
                observations.labs(p, enc, day, minute, panel, lab_ref, prac)
            items = [("AMB-SPEC" if prac != gp else "AMB-GP", 1)]
            if panel:
                items.append(("LAB-HBA1C" if payload == "t2dm" else "LAB-BASIC", len(panel)))
            proc = None
            if payload in ("ihd", "htn") and rng.random() < 0.3:
                proc = "ecg"
            elif payload in ("copd", "asthma") and rng.random() < 0.3:
                proc = "spiro"
            elif payload == "thal_major":
                proc = "transf"
            elif payload == "ckd" and p.age_at(day) > 60 and rng.random() < 0.05:
                proc = "dial"
            elif payload.endswith("_ca") and day - p.conds[payload] < 365:
                proc = "chemo"
            if proc:
                _procedure(p, proc, enc, day, minute, prac)
                items.append((PROCS[proc][2], 1))
            if payload in medications.DRUGS:
                medications.prescribe(p, payload, enc, day, minute, {"reference": f"Practitioner/{prac}"}, pharm,
                                      cond_ids.get(payload))
            claim_and_eob(p, eid, {"reference": f"Organization/{site.polyclinics[p.idx % len(site.polyclinics)]}"},
                          False, day, day, items, cond_ids.get(payload))
        elif kind == "acute" or kind == "measles":
            _acute(p, run, site, day, minute, kind, payload, gp, lab_ref, pharm)
        elif kind == "check":
            eid, enc = encounter(p, run, site, "AMB", "checkup" if child else "adult_check", day, minute, day, gp)
            observations.vitals(p, enc, day, minute, [{"reference": f"Practitioner/{gp}"}])
            items = [("AMB-PED" if child else "AMB-GP", 1)]
            if not child and rng.random() < 0.4:
                observations.labs(p, enc, day, minute, observations.PANELS["checkup"], lab_ref, gp)
                items.append(("LAB-BASIC", 3))
            if p.sex == "female" and 50 <= p.age_at(day) < 70 and rng.random() < 0.25:
                _procedure(p, "mammo", enc, day, minute, gp)
                items.append(("PROC-MAMMO", 1))
            claim_and_eob(p, eid, {"reference": f"Organization/{site.polyclinics[p.idx % len(site.polyclinics)]}"},
                          False, day, day, items, None)
        elif kind == "adm":
            _admission(p, run, site, day, minute, payload, cond_ids, lab_ref)
        elif kind == "birth":
            ob = _pick(p, site.pracs["ped"])
            los = 2 + rng.randrange(3)
            eid, _enc = encounter(p, run, site, "IMP", "birth", day, minute, day + los, ob, BIRTH_REASON)
            claim_and_eob(p, eid, {"reference": f"Organization/{site.hospital}"}, True, day, day + los, [("BIRTH", 1)], None)
        elif kind == "death":
            _death(p, run, site, day, minute, cond_ids)


def _acute(p: Person, run: Run, site: Site, day: int, minute: int, kind: str, key: str | None, gp: str,
           lab_ref: list[dict[str, str]], pharm: dict[str, str]) -> None:
    rng = p.rng
    planted = key == "ili*"
    if kind == "measles":
        snomed, display, icd, icd_display = MEASLES
        a = None
        p_emer, p_imp, los_rng, fever, drug = 0.5, 0.12, (3, 7), 2.0, "measles"
    else:
        a = C.ACUTE_BY_KEY["ili" if planted else key]
        snomed, display, icd, icd_display = a.snomed, a.display, a.icd10, a.icd_display
        p_emer, p_imp, los_rng = a.p_emer, a.p_imp, a.los
        fever = {"ili": 1.6, "pneumonia": 1.5, "otitis": 0.8, "pharyngitis": 0.9, "gastro": 0.7}.get(a.key, 0.0)
        drug = a.key
    r = rng.random()
    cls = "IMP" if r < p_imp else ("EMER" if r < p_imp + p_emer else "AMB")
    los = rng.randint(*los_rng) if cls == "IMP" else 0
    end_day = min(day + los, p.win_end)
    prac = _pick(p, site.pracs["emer" if cls == "EMER" else ("int" if cls == "IMP" else ("ped" if p.age_at(day) < 15 else "gp"))])
    eid, enc = encounter(p, run, site, cls, "emer" if cls == "EMER" else ("imp" if cls == "IMP" else "consult"),
                         day, minute, end_day, prac, (icd, icd_display))
    cid = p.new_id("cnd")
    abate = day + (los or 7) + rng.randrange(7)
    p.emit("Condition", C.condition_resource(p, cid, snomed, display, icd, icd_display, day,
                                             abate if abate <= run.end else None, eid, prac, "encounter-diagnosis"))
    observations.vitals(p, enc, day, minute, [{"reference": f"Practitioner/{prac}"}], fever)
    items: list[tuple[str, int]] = [("EMER", 1)] if cls == "EMER" else ([("IMP-DAY", max(1, los))] if cls == "IMP" else [("AMB-GP", 1)])
    if cls != "AMB" or (a is not None and a.key == "pneumonia"):
        observations.labs(p, enc, day, minute, observations.PANELS["acute"], lab_ref, prac, acute=True)
        items.append(("LAB-BASIC", 2))
    if a is not None and a.key == "appendicitis":
        _procedure(p, "append", enc, day, minute, prac)
        items.append(("PROC-APPEND", 1))
    if drug in medications.DRUGS and rng.random() < 0.8:
        medications.prescribe(p, drug, enc, day, minute, {"reference": f"Practitioner/{prac}"}, pharm, cid)
    org = site.hospital if cls != "AMB" else site.polyclinics[p.idx % len(site.polyclinics)]
    claim_and_eob(p, eid, {"reference": f"Organization/{org}"}, cls == "IMP", day, end_day, items, cid)
    ev = run.events
    if planted:
        ev.flu_cases.append((eid, day))
    elif kind == "measles":
        ev.measles_cases.append({"patient": f"Patient/{p.pid}", "encounter": f"Encounter/{eid}",
                                 "condition": f"Condition/{cid}", "onset": dstr(day),
                                 "age_years": round(p.age_at(day), 1), "mcv_doses_before": sum(1 for d in p.mcv_doses if d < day),
                                 "hospitalized": cls == "IMP"})


def _admission(p: Person, run: Run, site: Site, day: int, minute: int, key: str | None, cond_ids: dict[str, str],
               lab_ref: list[dict[str, str]]) -> None:
    rng = p.rng
    planted = key == "crunch"
    if planted:
        site = run.events.crunch_site
    los = 2 + int(rng.expovariate(1 / 5.0))
    if planted:
        los = int(los * 1.5) + 1
    end_day = min(day + los, p.win_end)
    prac = _pick(p, site.pracs["int"])
    reason = CRUNCH_REASONS.get(key) or CRUNCH_REASONS["younger" if p.age_at(day) < 50 else "older"]
    eid, enc = encounter(p, run, site, "IMP", "imp", day, minute, end_day, prac, reason, planted)
    observations.vitals(p, enc, day, minute, [{"reference": f"Practitioner/{prac}"}])
    observations.labs(p, enc, day, minute, ("wbc", "crp", "hb", "creat"), lab_ref, prac)
    items = [("IMP-DAY", max(1, end_day - day)), ("LAB-BASIC", 4)]
    if key == "ihd" and rng.random() < 0.5:
        _procedure(p, "pci", enc, day, minute, prac)
        items.append(("PROC-PCI", 1))
    claim_and_eob(p, eid, {"reference": f"Organization/{site.hospital}"}, True, day, end_day, items,
                  cond_ids.get(key or ""))


def _cause(p: Person, day: int) -> tuple[str, str]:
    best = None
    for key, onset in p.conds.items():
        spec = C.CHRONIC_BY_KEY[key]
        if spec.cause_of_death and onset <= day and (best is None or spec.death_mult > best.death_mult):
            best = spec
    age = p.age_at(day)
    if best is not None and p.rng.random() < 0.75:
        code = best.cause_of_death or best.icd10
        return code, C.CAUSE_DISPLAY.get(code, best.icd_display)
    pool = C.INFANT_CAUSES if age < 1 else (C.YOUNG_CAUSES if age < 45 else C.OTHER_CAUSES)
    return pool[p.rng.randrange(len(pool))]


def _death(p: Person, run: Run, site: Site, day: int, minute: int, cond_ids: dict[str, str]) -> None:
    icd, display = _cause(p, day)
    enc = None
    prac = _pick(p, site.pracs["int"])
    if p.rng.random() < 0.45:  # in-hospital deaths end an admission
        start = max(p.win_start, day - 1 - p.rng.randrange(6))
        eid, enc = encounter(p, run, site, "IMP", "imp", start, minute, day, prac, (icd, display), died=True)
        claim_and_eob(p, eid, {"reference": f"Organization/{site.hospital}"}, True, start, day,
                      [("IMP-DAY", max(1, day - start))], None)
    obs: dict[str, Any] = {"resourceType": "Observation", "id": p.new_id("obs"), "status": "final",
                           "code": observations.CAUSE_OF_DEATH, "subject": p.ref, "effectiveDateTime": dtstr(day, minute),
                           "performer": [{"reference": f"Practitioner/{prac}"}],
                           "valueCodeableConcept": {"coding": [{"system": ICD10, "code": icd, "display": display}], "text": display}}
    if enc:
        obs["encounter"] = enc
    p.emit("Observation", obs)
