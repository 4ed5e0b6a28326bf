"""Fixtures for the registry tests: the role-play world (tests/security/world.py), and a small generated
population loaded into a store and served with the SMART policy (what the summary and twin tests read)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest

from healthtwin.security.keys import KeySet
from healthtwin.security.tokens import TokenService

BASE = "http://testserver"
END = dt.date(2024, 12, 31)


@pytest.fixture(scope="session")
def population_dir(tmp_path_factory) -> Path:
    from healthtwin.population import generate
    out = tmp_path_factory.mktemp("pop-registries")
    generate(out, 30, 11, start_year=2015, end_date=END)
    return out


def rich_patient(folder: Path) -> str:
    """The adult with the most laboratory orders (a record with problems, results and medications)."""
    counts: dict[str, int] = {}
    for line in (folder / "ServiceRequest.ndjson").read_bytes().splitlines():
        ref = orjson.loads(line)["subject"]["reference"].removeprefix("Patient/")
        counts[ref] = counts.get(ref, 0) + 1
    return max(sorted(counts), key=lambda pid: counts[pid])


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def loaded(request, tmp_path_factory, population_dir):
    """(test client, headers by role, the rich patient's id) over the population loaded into a store of each
    kind, once per test session (the tests only read it)."""
    from starlette.testclient import TestClient

    from tests.conftest import make_store
    tmp_path = tmp_path_factory.mktemp(f"loaded-{request.param}")
    store = make_store(request.param, tmp_path)

    from healthtwin.api.services import Services
    from healthtwin.composition import AppSettings, build_app
    from healthtwin.loading import Loader
    services = Services.build(store)
    loader = Loader(services)
    for f in sorted(population_dir.glob("*.ndjson")):
        loader.load_lines(f.read_bytes().splitlines(), f.name)
    pid = rich_patient(population_dir)
    patient = orjson.loads(next(x for x in (population_dir / "Patient.ndjson").read_bytes().splitlines()
                                if orjson.loads(x)["id"] == pid))
    tokens = TokenService(KeySet.generate(), BASE, BASE + "/fhir")
    app = build_app(store, AppSettings(data_dir=tmp_path / "data", public_url=BASE, rate=None), tokens=tokens)
    claims = {
        "admin": dict(subject="root", kind="person", scopes=["user/*.cruds"], roles=["administrator"]),
        "citizen": dict(subject="me", kind="person", scopes=["user/*.rs"], roles=["citizen"],
                        patient=f"Patient/{pid}", fhir_user=f"Patient/{pid}"),
        "other_citizen": dict(subject="you", kind="person", scopes=["user/*.rs"], roles=["citizen"],
                              patient="Patient/pat-0" if pid != "pat-0" else "Patient/pat-1",
                              fhir_user="Patient/pat-0" if pid != "pat-0" else "Patient/pat-1"),
        "own_doctor": dict(subject="gp", kind="person", scopes=["user/*.rs"], roles=["clinician"],
                           organization=patient["managingOrganization"]["reference"],
                           fhir_user=patient["generalPractitioner"][0]["reference"]),
        "stranger_doctor": dict(subject="dr-x", kind="person", scopes=["user/*.rs"], roles=["clinician"],
                                organization="Organization/org-nowhere", fhir_user="Practitioner/nobody"),
        "analyst": dict(subject="ana", kind="person", scopes=["user/*.rs"], roles=["analyst"]),
    }
    headers = {k: {"authorization": f"Bearer {tokens.mint(**v)[0]}"} for k, v in claims.items()}
    with TestClient(app, base_url=BASE) as client:
        # the patient's polyclinic has them in an active episode of care: its clinicians treat them
        episode = {"resourceType": "EpisodeOfCare", "status": "active", "patient": {"reference": f"Patient/{pid}"},
                   "managingOrganization": patient["managingOrganization"]}
        assert client.post("/fhir/EpisodeOfCare", json=episode, headers=headers["admin"]).status_code == 201
        yield client, headers, pid
    store.close()


@pytest.fixture
def world_app(store, tmp_path):
    """The real application with the secure policy over the role-play world (tests/security/world.py), loaded:
    (test client, world, store)."""
    from ..security import world as W
    client, world = W.build(store, tmp_path)
    with client as c:
        W.load(c, world)
        yield c, world, store
