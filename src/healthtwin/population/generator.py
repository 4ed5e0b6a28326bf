"""Orchestration: one person at a time, written as FHIR Bulk Data NDJSON (one file per resource type).

Determinism and sharding: person ``i`` is generated from ``Random((seed << 32) + i)`` and all its ids
contain ``i``, so a person's resources are identical whichever shard produces them. Shard ``(k, n)``
produces persons ``i ≡ k (mod n)``; the union of all shards is byte-for-byte the unsharded population.
Institutions depend on the seed only; shard 0 writes them, every shard references them.
Memory is flat: a person's resources are flushed before the next person is drawn.
"""
from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from . import allergies, conditions, demography, duplicates, geography, names, observations, vaccination
from .common import SYS_FIN, Person, Resource, cc, dstr, dtstr
from .encounters import Run, render
from .events import Events
from .institutions import build_sites, generate_institutions
from .terminology import national_terminology
from .insurance import coverage

WINDOW_YEARS = 6  # default window: the five calendar years before the end date's, and that year up to it
HISTORY_YEARS = 10  # immunization registry history loaded before the window (covers every child's series)
_NI = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NI",
                   "display": "National unique individual identifier"}], "text": "FİN"}
_AZ = [{"language": cc("urn:ietf:bcp:47", "az", "Azerbaijani"), "preferred": True}]
_MTH = [cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "MTH", "mother")]
EXT_MMN = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
Progress = Callable[[int, int], None]


def _death_day(p: Person, start: int, end: int) -> int | None:
    """Annual death probability by age/sex, multiplied by the person's present chronic conditions."""
    d = max(start, p.birth)
    while d <= end:
        seg = min(end, d + 364)
        mult = 1.0
        for key, onset in p.conds.items():
            if onset <= d:
                mult *= conditions.CHRONIC_BY_KEY[key].death_mult
        q = demography.annual_death_probability(p.age_at(d), p.sex) * min(mult, 10.0)
        if p.rng.random() < q * (seg - d + 1) / 365.25:
            return d + p.rng.randrange(seg - d + 1)
        d = seg + 1
    return None


def _person(idx: int, seed: int, run: Run, sites: list[Any], dirty: bool = False,
            patients_only: bool = False) -> list[tuple[str, Resource]]:
    """The person's resources; `dirty` adds the duplicate Patients institutions made (duplicates.py), each as
    ("Patient", resource) with its truth on `Person.events` under "duplicates"; `patients_only` stops after
    the Patient (the patient index's benchmark needs no clinical history)."""
    rng = random.Random((seed << 32) + idx)
    p = Person(idx, rng)
    age, sex = demography.sample_age_sex(rng)
    p.sex, p.age_end = sex, age
    p.birth = run.end - int(age * 365.25) - (0 if age >= 1 / 365 else 0)
    p.district = geography.sample_district(rng)
    site = sites[p.district.index]
    fam_m, fam_f = names.surname(rng)
    p.family = fam_m if sex == "male" else fam_f
    p.given = names.given_name(rng, sex)
    father = names.given_name(rng, "male")
    p.fin = demography.fin(idx, seed)
    p.conds = {k: p.birth + int(a * 365.25) for k, a in conditions.sample_chronic(rng, age, sex).items()}
    observations.init_state(p)
    p.death = _death_day(p, run.start, run.end)
    p.win_start = max(run.start, p.birth)
    p.win_end = p.death if p.death is not None else run.end
    p.conds = {k: v for k, v in p.conds.items() if v <= p.win_end}
    gp = site.pracs["ped" if age < 15 else "gp"][idx % len(site.pracs["ped" if age < 15 else "gp"])]
    poly = site.polyclinics[idx % len(site.polyclinics)]

    patient: Resource = {"resourceType": "Patient", "id": p.pid}
    child = age < 18
    if child:
        m_fam = names.surname(rng)[1]
        m_given, m_father = names.given_name(rng, "female"), names.given_name(rng, "male")
        patient["extension"] = [{"url": EXT_MMN, "valueString": m_fam}]
    patient.update({
        "identifier": [{"use": "official", "type": _NI, "system": SYS_FIN, "value": p.fin}],
        "active": True, "name": [names.human_name(p.family, p.given, father, sex)],
        "telecom": [{"system": "phone", "value": names.mobile(rng), "use": "mobile"}],
        "gender": sex, "birthDate": dstr(p.birth),
    })
    if p.death is not None:
        patient["deceasedDateTime"] = dtstr(p.death, 300 + rng.randrange(1000))
    else:
        patient["deceasedBoolean"] = False
    patient["address"] = [geography.address(rng, p.district)]
    patient["communication"] = _AZ
    patient["generalPractitioner"] = [{"reference": f"Practitioner/{gp}"}]
    patient["managingOrganization"] = {"reference": f"Organization/{poly}"}
    if child:
        patient["link"] = [{"other": {"reference": f"RelatedPerson/rp-{idx}"}, "type": "seealso"}]
    p.emit("Patient", patient)
    if dirty:
        for dup, truth in duplicates.duplicates_of(patient, idx, seed, infant=age < 1):
            p.emit("Patient", dup)
            run.duplicates[dup["id"]] = truth
    if patients_only:
        return p.out
    if child:
        p.emit("RelatedPerson", {
            "resourceType": "RelatedPerson", "id": f"rp-{idx}", "active": True, "patient": p.ref,
            "relationship": _MTH, "name": [names.human_name(m_fam, m_given, m_father, "female")],
            "telecom": [{"system": "phone", "value": names.mobile(rng), "use": "mobile"}], "gender": "female",
            "birthDate": dstr(p.birth - int(rng.uniform(19.0, 40.0) * 365.25)),
        })
    p.coverage_ref = coverage(p)
    if p.birth > run.history_start - 40 * 365:  # MCV status matters for the measles event even pre-history
        p.mcv_doses = vaccination.immunize(p, run.history_start, p.win_end, _first(site.pracs["nurse"], idx),
                                           run.events.mcv_factor(p))
    render(p, run, site)
    allergies.record(p, run.history_start)  # last, and from its own hash: nothing else changes
    return p.out


def _first(lst: list[str], idx: int) -> str:
    return lst[idx % len(lst)]


def window(start_year: int | None, end_date: dt.date | None) -> tuple[int, dt.date]:
    """The generated window: it ends today unless `end_date` is given (give one for reproducible output) and
    starts on 1 January, `WINDOW_YEARS - 1` years before the end's year unless `start_year` is given."""
    end = end_date or dt.date.today()
    return (end.year - WINDOW_YEARS + 1 if start_year is None else start_year), end


def generate_stream(patients: int, seed: int, shard: tuple[int, int] = (0, 1), start_year: int | None = None,
                    end_date: dt.date | None = None, events: set[str] | None = None,
                    progress: Progress | None = None,
                    ground_truth: dict[str, Any] | None = None, dirty: bool = False,
                    patients_only: bool = False) -> Iterator[tuple[str, Resource]]:
    """Yield ``(resource_type, resource)`` for this shard, institutions and the national terminology first
    (shard 0 only).

    Resources may share immutable sub-dicts (codings); copy before mutating nested parts.
    If ``ground_truth`` is given it is filled with the planted events' ground truth once exhausted, and with
    ``mpi_duplicates`` (each duplicate Patient's id → {of, source, changes}) when ``dirty`` adds them.
    ``patients_only`` yields the Patients alone (no institutions, terminology or clinical history).
    """
    k, n = shard
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"bad shard {shard!r}: need 0 <= i < n")
    if patients < 0:
        raise ValueError("patients must be >= 0")
    start_year, end_date = window(start_year, end_date)
    start = dt.date(start_year, 1, 1).toordinal()
    end = end_date.toordinal()
    if end < start:
        raise ValueError("end_date is before start_year")
    sites = build_sites(seed)
    ev = Events(events, seed, start, end, patients, sites)
    run = Run(start, end, dt.date(start_year - HISTORY_YEARS, 1, 1).toordinal(), ev, sites)
    if k == 0 and not patients_only:
        yield from generate_institutions(seed)
        yield from national_terminology()
    total = len(range(k, patients, n))
    done = 0
    step = max(1, min(1000, total // 100))  # about every 1 %: often enough for a bar's time left
    for i in range(k, patients, n):
        yield from _person(i, seed, run, sites, dirty, patients_only)
        done += 1
        if progress is not None and (done % step == 0 or done == total):
            progress(done, total)
    if ground_truth is not None:
        ground_truth.update(ev.ground_truth(shard))
        if dirty:
            ground_truth["mpi_duplicates"] = run.duplicates


def write_ndjson_stream(fp: IO[bytes] | IO[str], patients: int, seed: int, shard: tuple[int, int] = (0, 1),
                        start_year: int | None = None, end_date: dt.date | None = None,
                        events: set[str] | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Write all resources of this shard as one mixed NDJSON stream (e.g. stdout for ``--out -``).

    Returns ``{"counts": {type: n}, "ground_truth": {...}}``; ground truth is not in the stream.
    """
    start_year, end_date = window(start_year, end_date)
    raw: Any = getattr(fp, "buffer", fp)  # text streams (sys.stdout) expose their binary buffer
    write = raw.write
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    counts: dict[str, int] = {}
    truth: dict[str, Any] = {}
    for rtype, res in generate_stream(patients, seed, shard, start_year, end_date, events, progress, truth):
        write(dumps(res, option=opt))
        counts[rtype] = counts.get(rtype, 0) + 1
    return {"counts": dict(sorted(counts.items())), "ground_truth": truth}


def generate(out_dir: Path, patients: int, seed: int, shard: tuple[int, int] = (0, 1),
             start_year: int | None = None, end_date: dt.date | None = None,
             events: set[str] | None = None, progress: Progress | None = None,
             dirty: bool = False) -> dict[str, Any]:
    """Write ``<Type>.ndjson`` files, ``manifest.json`` and ``ground_truth/*.json``; return the manifest.
    ``dirty`` adds the duplicate Patients institutions made, their truth in ground_truth/mpi_duplicates.json."""
    start_year, end_date = window(start_year, end_date)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    counts: dict[str, int] = {}
    truth: dict[str, Any] = {}
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    try:
        for rtype, res in generate_stream(patients, seed, shard, start_year, end_date, events, progress, truth,
                                          dirty=dirty):
            f = files.get(rtype)
            if f is None:
                f = files[rtype] = open(out / f"{rtype}.ndjson", "wb", buffering=1 << 20)  # noqa: SIM115
                counts[rtype] = 0
            f.write(dumps(res, option=opt))
            counts[rtype] += 1
    finally:
        for f in files.values():
            f.close()
    gt_dir = out / "ground_truth"
    if truth:
        gt_dir.mkdir(exist_ok=True)
        for name, body in sorted(truth.items()):
            (gt_dir / f"{name}.json").write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    manifest = {
        # Deterministic on purpose (same seed -> same bytes): the "export" is as of the end of the window.
        "transactionTime": f"{end_date.isoformat()}T23:59:59+04:00",
        "request": (f"healthtwin:generate?patients={patients}&seed={seed}&shard={shard[0]}/{shard[1]}"
                    f"&start_year={start_year}&end_date={end_date.isoformat()}"
                    f"&events={','.join(sorted(set(truth) - {'mpi_duplicates'})) or 'none'}"
                    + ("&duplicates=true" if dirty else "")),
        "requiresAccessToken": False,
        "output": [{"type": t, "url": f"{t}.ndjson", "count": counts[t]} for t in sorted(counts)],
        "error": [],
    }
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest
