"""`healthtwin demo` (behind `make demo`): generate a population, load it into the embedded store, serve.

Generation and loading are skipped when the data folder already holds the same population, so a second
`make demo` starts serving at once.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

import orjson

from .config import Settings

log = logging.getLogger("healthtwin.demo")


def run(args) -> int:
    settings = Settings(Path(args.data_dir).resolve(), args.database)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    marker = settings.data_dir / "demo.json"
    wanted = {"patients": args.patients, "seed": args.seed, "database": settings.database}
    started = time.perf_counter()
    if not marker.exists() or orjson.loads(marker.read_bytes()) != wanted:
        _build(settings, args.patients, args.seed)
        marker.write_bytes(orjson.dumps(wanted))
    else:
        print(f"Demo population already loaded in {settings.data_dir} (delete it to rebuild).", file=sys.stderr)
    print(f"Ready in {time.perf_counter() - started:.0f} s.", file=sys.stderr)
    if args.no_serve:
        return 0
    base = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    tokens = "" if args.insecure_open else demo_tokens(settings, base)
    print(f"""
Health Twin demo: {args.patients:,} synthetic citizens in {settings.database or settings.data_dir}

  {base}/fhir/metadata                               the CapabilityStatement
  {base}/fhir/Patient?_count=5                       citizens
  {base}/fhir/Patient?address-city=Bakı&gender=female&_summary=count
  {base}/fhir/Observation?code=http://loinc.org|4548-4&value-quantity=gt7&_include=Observation:subject
  {base}/fhir/Immunization?vaccine-code=http://hl7.org/fhir/sid/cvx|03&date=ge2024-01-01&_summary=count
  {base}/fhir/Patient/pat-0/$everything
  {base}/fhir/Observation/$lastn?patient=pat-0&category=vital-signs   the latest of each vital sign
  {base}/fhir/Encounter?class=IMP&date=ge2024-01&_sort=-date&_count=10
  {base}/fhir/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/condition-clinical   terminology

{tokens or "INSECURE (--insecure-open): no authentication; keep this on localhost."}
""", file=sys.stderr)
    from .cli import cmd_serve
    args.workers, args.log_level = 1, "warning"
    return cmd_serve(args)


def _build(settings: Settings, patients: int, seed: int) -> None:
    from .loading import load_paths
    from .population.generator import generate
    db = settings.data_dir / "healthtwin.sqlite"
    if settings.database is None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    out = settings.data_dir / "population"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    manifest = generate(out, patients, seed)
    total = sum(o["count"] for o in manifest["output"])
    print(f"Generated {total:,} resources for {patients:,} citizens in {time.perf_counter() - t:.0f} s "
          f"({out}).", file=sys.stderr)
    code = load_paths(settings, [str(out)], restart=True, workers=os.cpu_count() or 1)
    if code:
        raise RuntimeError("loading the demo population failed")
    from .analytics.refresh import views_main
    t = time.perf_counter()
    db = ["--database", settings.database] if settings.database else []
    if views_main(["materialize", "--data-dir", str(settings.data_dir), *db, "--full", "--from-ndjson", str(out)]):
        raise RuntimeError("materialising the analytics views failed")
    print(f"Materialised the analytics views in {time.perf_counter() - t:.0f} s.", file=sys.stderr)
    # The NDJSON holds every citizen's FIN, name and address in clear, which the store encrypts: once loaded
    # it goes. The manifest and the planted events' ground truth stay, for scoring detection and forecasts.
    for path in out.glob("*.ndjson"):
        path.unlink()
    print(f"Removed the generated NDJSON (identifiers in clear); kept {out}/manifest.json and the ground truth.",
          file=sys.stderr)


def _demo_links(settings: Settings) -> dict[str, str]:
    """Makes pat-0 someone a demo clinician, lab and pharmacy have business with (idempotent)."""
    from .api.services import Services
    from .security.storage import open_store
    store = open_store(settings.database, settings.data_dir)
    services = Services.build(store)
    found = store.read("Encounter", "enc-0-0")
    enc = orjson.loads(found.content) if found and found.content else {}
    poly = (enc.get("serviceProvider") or {}).get("reference") or "Organization/org-tabib"
    district = poly.split("org-", 1)[-1].removeprefix("poly-").removeprefix("hosp-").rsplit("-", 1)[0]
    lab, pharm = f"Organization/org-lab-{district}", f"Organization/org-pharm-{district}"
    with store.transaction() as tx:
        tx.update("EpisodeOfCare", "demo-eoc-0", {
            "resourceType": "EpisodeOfCare", "id": "demo-eoc-0", "status": "active",
            "patient": {"reference": "Patient/pat-0"}, "managingOrganization": {"reference": poly}})
        tx.update("ServiceRequest", "demo-sr-0", {
            "resourceType": "ServiceRequest", "id": "demo-sr-0", "status": "active", "intent": "order",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "subject": {"reference": "Patient/pat-0"}, "performer": [{"reference": lab}]})
    del services
    store.close()
    return {"poly": poly, "lab": lab, "pharm": pharm}


def demo_tokens(settings: Settings, base: str) -> str:
    """One ready access token per demo role (1 h, signed with the data folder's key)."""
    from .security.commands import mint
    links = _demo_links(settings)
    roles = [
        ("citizen (Patient/pat-0)", "alice", "person", "user/*.cruds", ["citizen"],
         dict(patient="Patient/pat-0", fhir_user="Patient/pat-0")),
        (f"clinician at {links['poly']}", "dr-demo", "person", "user/*.cruds", ["clinician"],
         dict(organization=links["poly"])),
        (f"laboratory {links['lab']}", "lab-demo", "system", "system/*.rs system/Observation.cu", ["laboratory"],
         dict(organization=links["lab"], client_id="lab-demo")),
        (f"pharmacy {links['pharm']}", "pharm-demo", "system", "system/*.rs system/MedicationDispense.c",
         ["pharmacy"], dict(organization=links["pharm"], client_id="pharm-demo")),
        ("insurer Organization/org-itsda", "itsda-demo", "system", "system/*.rs", ["insurer"],
         dict(organization="Organization/org-itsda", client_id="itsda-demo")),
        ("public-health analyst", "analyst-demo", "person", "user/*.rs", ["analyst"], {}),
        ("auditor", "auditor-demo", "person", "user/*.rs", ["auditor"], {}),
        ("administrator", "admin-demo", "person", "user/*.cruds", ["administrator"], {}),
    ]
    lines = ["Access tokens (1 h; send as 'Authorization: Bearer <token>'; re-run `make demo` for fresh ones):"]
    for label, subject, kind, scope, role, extra in roles:
        token = mint(settings.data_dir, base, subject, kind, scope.split(), role, **extra)
        lines.append(f"\n  {label}:\n    {token}")
    lines.append("\n  e.g. curl -H \"Authorization: Bearer $TOKEN\" " + base + "/fhir/Patient/pat-0/$everything")
    lines.append("  Break-the-glass: add -H 'X-Break-Glass: <reason>' (clinicians); review: GET /fhir/$break-glass-review")
    lines.append("  Auditor: GET /fhir/$audit-trail?agent=alice (who did what); citizen: GET /fhir/Patient/pat-0/$access-log")
    return "\n".join(lines)
