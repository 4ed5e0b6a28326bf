"""`healthtwin demo` (behind `make demo`): generate a population, load it into the embedded store, serve.

Generation and loading are skipped when the data folder already holds the same population, so a second
`make demo` starts serving at once. The build leaves the analytics views current (their watermarks are
the store's, taken after the load), so the server's first refresh reads only what changed since.

Each demo role gets a token and a typical task on the demo data (printed as commands to paste into a shell):
the demo adds, for citizen `pat-0`, what a clinician, a laboratory and a pharmacy of the citizen's district
have business with today: an active EpisodeOfCare at the citizen's polyclinic, an open laboratory order and an
open prescription with a national prescription number.
"""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from .config import Settings

log = logging.getLogger("healthtwin.demo")

FORMAT = 2  # of the data folder a demo builds: a folder built by an earlier format is rebuilt
ORDER_ID, PRESCRIPTION_ID, EPISODE_ID = "demo-sr-0", "demo-mrq-0", "demo-eoc-0"
PRESCRIPTION_NUMBER = "900000000001"  # 12 digits like the generator's numbers (see population/medications.py)


def run(args) -> int:
    from .population.generator import window
    from .serving import check_port, hold_data_dir, release_data_dir
    settings = Settings(Path(args.data_dir).resolve(), args.database)
    serve = not args.no_serve
    if serve:
        check_port(args.host, args.port)  # before a build of a minute or more, and before any key is written
    hold_data_dir(settings.data_dir)
    try:
        marker = settings.data_dir / "demo.json"
        end = getattr(args, "end_date", None)
        wanted = {"format": FORMAT, "patients": args.patients, "seed": args.seed, "database": settings.database,
                  **({"end_date": end.isoformat()} if end else {})}
        started = time.perf_counter()
        found = orjson.loads(marker.read_bytes()) if marker.exists() else None
        if found is None or {k: found.get(k) for k in wanted} != wanted:
            start_year, end = window(None, end)
            _build(settings, args.patients, args.seed, start_year, end)
            marker.write_bytes(orjson.dumps({**wanted, "window": [f"{start_year}-01-01", end.isoformat()]}))
        else:
            print(f"Demo population already loaded in {settings.data_dir} (delete it to rebuild).", file=sys.stderr)
        window_text = " to ".join(orjson.loads(marker.read_bytes()).get("window") or ["?"])
        if not getattr(args, "insecure_open", False):
            from .web.demo_users import ensure_users
            ensure_users(settings)
        print(f"Ready in {time.perf_counter() - started:.0f} s.", file=sys.stderr)
        base = (getattr(args, "public_url", None) or f"http://{args.host}:{args.port}").rstrip("/")
        print(f"\nHealth Twin demo: {args.patients:,} synthetic citizens, history {window_text}, in "
              f"{settings.database or settings.data_dir}\n", file=sys.stderr)
        print(guide(settings, base, insecure=bool(getattr(args, "insecure_open", False))), file=sys.stderr)
        if not serve:
            return 0
        from .cli import cmd_serve
        args.workers, args.log_level = 1, "warning"
        return cmd_serve(args)
    finally:
        release_data_dir(settings.data_dir)


def _build(settings: Settings, patients: int, seed: int, start_year: int, end) -> None:
    from .loading import load_paths
    from .population.generator import generate
    from .progress import Bar
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.database is None:
        db = settings.data_dir / "healthtwin.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    out = settings.data_dir / "population"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    bar = Bar("generating", patients, "citizens")
    manifest = generate(out, patients, seed, start_year=start_year, end_date=end, progress=lambda d, _t: bar(d))
    bar.close()
    extra = _demo_resources(out, seed)
    total = sum(o["count"] for o in manifest["output"]) + extra
    print(f"Generated {total:,} resources for {patients:,} citizens in {time.perf_counter() - t:.0f} s "
          f"({out}).", file=sys.stderr)
    code = load_paths(settings, [str(out)], restart=True, workers=os.cpu_count() or 1, total=total)
    if code:
        raise RuntimeError("loading the demo population failed")
    t = time.perf_counter()
    report = _materialize(settings, out)
    if report.failed:
        raise RuntimeError("materialising the analytics views failed: "
                           + "; ".join(f"{v.name}: {v.error}" for v in report.failed))
    print(f"Materialised the analytics views in {time.perf_counter() - t:.0f} s.", file=sys.stderr)
    # The NDJSON holds every citizen's FIN, name and address in clear, which the store encrypts: once loaded
    # it goes. The manifest and the planted events' ground truth stay, for scoring detection and forecasts.
    for path in out.glob("*.ndjson"):
        path.unlink()
    print(f"Removed the generated NDJSON (identifiers in clear); kept {out}/manifest.json and the ground truth.",
          file=sys.stderr)


def _materialize(settings: Settings, out: Path) -> Any:
    """The views from the NDJSON just loaded (faster than reading the store back), with the store's own
    watermarks: the server's refreshes then read only the changes made after the load."""
    from .analytics.indicators import indicator_views
    from .analytics.materialize import Materializer, NdjsonSource
    from .analytics.refresh import refresh_all
    from .security.storage import open_store
    store = open_store(settings.database, settings.data_dir)

    class Loaded(NdjsonSource):
        def max_updated(self, rtype: str) -> float | None:
            return store.query("SELECT MAX(last_updated) FROM resources WHERE type = ?", [rtype])[0][0]

    try:
        materializer = Materializer(Loaded(out), settings.data_dir, indicator_views())
        try:
            return refresh_all(materializer, full=True)
        finally:
            materializer.close()
    finally:
        store.close()


def _links(out: Path, seed: int) -> dict[str, str]:
    """Institutions of citizen pat-0's district (the first Patient generated): its polyclinic, laboratory
    and pharmacy, and the district's epidemiologist (population/public_health.py: prac-epi-<district>, whose
    PractitionerRole the detection alerts are addressed to). Derived from the generated data, so they exist."""
    from .population.institutions import build_sites
    with (out / "Patient.ndjson").open("rb") as f:
        patient = next(p for p in map(orjson.loads, f) if p["id"] == "pat-0")
    poly = patient["managingOrganization"]["reference"]
    site = next(s for s in build_sites(seed) if poly.removeprefix("Organization/") in s.polyclinics)
    return {"poly": poly, "lab": f"Organization/{site.lab}", "pharm": f"Organization/{site.pharmacy}",
            "epi": f"Practitioner/prac-epi-{site.lab.removeprefix('org-lab-')}"}


def _demo_resources(out: Path, seed: int) -> int:
    """Appends today's business of pat-0 to the generated NDJSON (loaded and materialised with it)."""
    from .population.common import SYS_PRESCRIPTION
    links = _links(out, seed)
    (out.parent / "demo-links.json").write_bytes(orjson.dumps(links))
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    today = manifest["transactionTime"][:10]
    added = {
        "EpisodeOfCare": {"resourceType": "EpisodeOfCare", "id": EPISODE_ID, "status": "active",
                          "patient": {"reference": "Patient/pat-0"}, "managingOrganization": {"reference": links["poly"]},
                          "period": {"start": today}},
        "ServiceRequest": {"resourceType": "ServiceRequest", "id": ORDER_ID, "status": "active", "intent": "order",
                           "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4",
                                                "display": "Hemoglobin A1c/Hemoglobin.total in Blood"}]},
                           "subject": {"reference": "Patient/pat-0"}, "authoredOn": today,
                           "performer": [{"reference": links["lab"]}]},
        "MedicationRequest": {"resourceType": "MedicationRequest", "id": PRESCRIPTION_ID, "status": "active",
                              "intent": "order", "authoredOn": today,
                              "identifier": [{"use": "official", "system": SYS_PRESCRIPTION,
                                              "value": PRESCRIPTION_NUMBER}],
                              "medicationCodeableConcept": _METFORMIN, "subject": {"reference": "Patient/pat-0"},
                              "dispenseRequest": {"quantity": {"value": 60, "unit": "dose"},
                                                  "validityPeriod": {"start": today, "end": _valid_until(today)}}},
    }
    for rtype, res in added.items():
        with (out / f"{rtype}.ndjson").open("ab") as f:
            f.write(orjson.dumps(res, option=orjson.OPT_APPEND_NEWLINE))
    return len(added)


def _valid_until(today: str) -> str:
    """The demo's prescription is dispensed while the demo runs, whatever window the population was generated
    for (a past one in the tests): it states a validity to 30 days after whichever is later, the window's end or
    the day the demo is set up (without one, the default validity would run from `today`)."""
    import datetime as dt
    start = max(dt.date.fromisoformat(today), dt.date.today())
    return (start + dt.timedelta(days=30)).isoformat()


_METFORMIN = {"coding": [{"system": "http://www.whocc.no/atc", "code": "A10BA02", "display": "metformin"}],
              "text": "metformin"}


def _url(base: str, path: str, **params: str) -> str:
    """A URL with its query percent-encoded (`|` and non-ASCII such as `Bakı` included)."""
    query = urlencode(params, quote_via=quote, safe=":/,") if params else ""
    return f"{base}{path}" + (f"?{query}" if query else "")


def _curl(token_var: str | None, url: str, body: dict | None = None) -> str:
    """One curl command line, every argument quoted for a POSIX shell (the token is the one expansion)."""
    parts = ["curl", "-s"]
    if body is not None:
        parts += ["-X", "POST", "-H", shlex.quote("Content-Type: application/fhir+json"),
                  "--data", _single(orjson.dumps(body).decode())]
    if token_var:
        parts += ["-H", f'"Authorization: Bearer ${token_var}"']
    return " ".join(parts + [_single(url)])


def _single(text: str) -> str:
    """`text` in single quotes, always (a URL with `$everything` or `&` must not be read by the shell)."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


ROLES: list[tuple[str, str, str, str, list[str], str]] = [
    # (variable, subject, kind, scopes, roles, the organisation link the token carries)
    ("CITIZEN", "alice", "person", "user/*.cruds", ["citizen"], ""),
    ("CLINICIAN", "dr-demo", "person", "user/*.cruds", ["clinician"], "poly"),
    ("LAB", "lab-demo", "system", "system/*.rs system/Observation.cu system/Task.cu system/DiagnosticReport.cu",
     ["laboratory"], "lab"),
    ("PHARMACY", "pharm-demo", "system", "system/*.rs system/MedicationDispense.c", ["pharmacy"], "pharm"),
    ("INSURER", "itsda-demo", "system", "system/*.rs", ["insurer"], "insurer"),
    ("ANALYST", "analyst-demo", "person", "user/*.rs", ["analyst"], ""),
    ("EPIDEMIOLOGIST", "epi-demo", "person", "user/*.rs", ["epidemiologist"], ""),
    ("AUDITOR", "auditor-demo", "person", "user/*.rs", ["auditor"], ""),
    ("ADMIN", "admin-demo", "person", "user/*.cruds", ["administrator"], ""),
]


def _district_epidemiologist(lab: str) -> str:
    """population/public_health.py's PractitionerRole for the district of `lab` (Organization/org-lab-<district>)."""
    return f"PractitionerRole/prole-epi-{lab.removeprefix('Organization/org-lab-')}"


def guide(settings: Settings, base: str, insecure: bool = False) -> str:
    """The tokens (as shell variables) and, per role, its typical task as a command to paste into a shell."""
    from .population.common import SYS_PRESCRIPTION
    from .population.institutions import INSURER_ID
    links = orjson.loads((settings.data_dir / "demo-links.json").read_bytes())
    links["insurer"] = f"Organization/{INSURER_ID}"
    fhir = base + "/fhir"
    lines: list[str] = []
    if insecure:
        lines.append("# INSECURE (--insecure-open): no authentication; keep this on localhost.")
    else:
        from .security.commands import mint
        lines.append("# Paste into a shell (bash, zsh). The tokens last 1 h: `make demo` again for fresh ones.")
        for var, subject, kind, scopes, roles, link in ROLES:
            extra: dict[str, str] = {}
            if var == "CITIZEN":
                extra = dict(patient="Patient/pat-0", fhir_user="Patient/pat-0")
            elif var == "EPIDEMIOLOGIST":  # the epidemiologist of the lab's (and pat-0's) district
                extra = dict(fhir_user=_district_epidemiologist(links["lab"]))
            elif link:
                extra["organization"] = links[link]
            if kind == "system":
                extra["client_id"] = subject
            token = mint(settings.data_dir, base, subject, kind, scopes.split(), roles, **extra)
            lines.append(f"export {var}={token}")
    tok = (lambda var: None) if insecure else (lambda var: var)
    observation = {"resourceType": "Observation", "status": "final",
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                             "code": "laboratory"}]}],
                   "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                   "subject": {"reference": "Patient/pat-0"}, "basedOn": [{"reference": f"ServiceRequest/{ORDER_ID}"}],
                   "performer": [{"reference": links["lab"]}],
                   "valueQuantity": {"value": 6.1, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}
    dispense = {"resourceType": "MedicationDispense", "status": "completed", "medicationCodeableConcept": _METFORMIN,
                "subject": {"reference": "Patient/pat-0"}, "performer": [{"actor": {"reference": links["pharm"]}}],
                "authorizingPrescription": [{"reference": f"MedicationRequest/{PRESCRIPTION_ID}"}],
                "quantity": {"value": 60, "unit": "dose"}}
    tasks = [
        ("the CapabilityStatement (no token needed)", None, _url(fhir, "/metadata", _summary="true"), None),
        ("citizen: my whole record", "CITIZEN", _url(fhir, "/Patient/pat-0/$everything"), None),
        ("citizen: who looked at my record", "CITIZEN", _url(fhir, "/Patient/pat-0/$access-log"), None),
        (f"clinician at {links['poly']}: a patient in their care", "CLINICIAN", _url(fhir, "/Patient/pat-0"), None),
        ("clinician: the patient's latest vital signs", "CLINICIAN",
         _url(fhir, "/Observation/$lastn", patient="pat-0", category="vital-signs"), None),
        (f"laboratory {links['lab']}: its open orders", "LAB",
         _url(fhir, "/ServiceRequest", status="active", performer=links["lab"]), None),
        ("laboratory: the result of the order", "LAB", _url(fhir, "/Observation"), observation),
        ("laboratory: its worklist (the Tasks it owns, with their orders)", "LAB",
         _url(fhir, "/Task", owner=links["lab"], _include="Task:based-on", _count="5"), None),
        ("clinician: the patient's International Patient Summary", "CLINICIAN",
         _url(fhir, "/Patient/pat-0/$summary"), None),
        ("citizen: my twin (risks, kidney function, due care, trends)", "CITIZEN",
         _url(fhir, "/Patient/pat-0/$twin"), None),
        (f"pharmacy {links['pharm']}: the prescription the patient presents", "PHARMACY",
         _url(fhir, "/MedicationRequest", identifier=f"{SYS_PRESCRIPTION}|{PRESCRIPTION_NUMBER}"), None),
        ("pharmacy: dispense it", "PHARMACY", _url(fhir, "/MedicationDispense"), dispense),
        ("insurer (the State Agency for Mandatory Health Insurance): its claims", "INSURER",
         _url(fhir, "/Claim", _count="5"), None),
        ("public-health analyst: an indicator", "ANALYST",
         _url(base, "/analytics/indicators/encounter_rate"), None),
        ("epidemiologist: their district's detection alerts", "EPIDEMIOLOGIST",
         _url(base, "/analytics/alerts", status="all"), None),
        ("auditor: what the clinician did", "AUDITOR", _url(fhir, "/$audit-trail", agent="dr-demo"), None),
        ("administrator: women living in Bakı", "ADMIN",
         _url(fhir, "/Patient", **{"address-city": "Bakı", "gender": "female", "_summary": "count"}), None),
        ("administrator: HbA1c above 7 %, with the patients", "ADMIN",
         _url(fhir, "/Observation", code="http://loinc.org|4548-4", **{"value-quantity": "gt7",
                                                                        "_include": "Observation:subject"}), None),
        ("administrator: recent inpatient stays", "ADMIN",
         _url(fhir, "/Encounter", **{"class": "IMP", "_sort": "-date", "_count": "10"}), None),
        ("administrator: a terminology expansion", "ADMIN",
         _url(fhir, "/ValueSet/$expand", url="http://hl7.org/fhir/ValueSet/condition-clinical"), None),
    ]
    for title, var, url, body in tasks:
        lines.append(f"\n# {title}\n{_curl(tok(var) if var else None, url, body)}")
    if not insecure:
        from .web.demo_users import pages_guide
        lines.append("\n" + pages_guide(settings, base))
        lines.append("\n# Break-the-glass: a clinician adds -H 'X-Break-Glass: <reason>'; review: GET "
                     f"{fhir}/$break-glass-review (administrator)")
    return "\n".join(lines)
