"""A generated population (the types the immunization registry reads) loaded into a store of each kind and
served with the SMART policy: what the immunization registry's FHIR tests share."""
from __future__ import annotations

import collections
import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from healthtwin.security.keys import KeySet
from healthtwin.security.tokens import TokenService

BASE = "http://testserver"
END = dt.date(2024, 12, 31)
# The day the tests assess on: the services' clock is pinned to it (Services.today), so the write rule, the
# operations' default date and the tests' own expectations agree whatever the wall clock does (a run that
# crossed midnight UTC once moved the write rule's assessment date mid-test).
TODAY = dt.date(2026, 12, 1)
TYPES = ("Organization", "Practitioner", "Location", "Patient", "Immunization", "Condition", "AllergyIntolerance")


@dataclass
class World:
    client: Any
    headers: dict[str, dict[str, str]]
    child: dict[str, Any]  # the child with the most doses
    patients: list[dict[str, Any]]
    store: Any
    services: Any
    folder: Path
    database: str  # what `healthtwin immunization refresh --database` takes, with `data_dir`
    data_dir: Path


@pytest.fixture(scope="session")
def imm_population(tmp_path_factory) -> Path:
    from healthtwin.population import generate
    out = tmp_path_factory.mktemp("pop-immunization")
    generate(out, 400, 11, start_year=2015, end_date=END)
    return out


def read(folder: Path, rtype: str) -> list[dict[str, Any]]:
    path = folder / f"{rtype}.ndjson"
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


def database_url(kind: str, tmp_path: Path) -> str:
    """A fresh database of `kind` as a URL (PostgreSQL: a schema of the test database of tests/conftest.py)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    import uuid

    import psycopg

    from tests.conftest import PG_ADMIN_DSN, _pg_database
    dsn = _pg_database()
    if dsn is None:
        pytest.skip("PostgreSQL tests skipped: no server at " + PG_ADMIN_DSN)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{dsn}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def imm_world(request, tmp_path_factory, imm_population):
    with built_world(request.param, tmp_path_factory, imm_population) as world:
        yield world


@contextlib.contextmanager
def built_world(kind: str, tmp_path_factory, imm_population: Path):
    """The population bulk-loaded into a new store of `kind` and served: the module's shared world, or a test's
    own where it needs the store as the load left it."""
    from starlette.testclient import TestClient

    from healthtwin.api.services import Services
    from healthtwin.composition import AppSettings, build_app
    from healthtwin.loading import Loader
    from healthtwin.security.storage import open_store
    tmp_path = tmp_path_factory.mktemp(f"imm-{kind}")
    database = database_url(kind, tmp_path)
    store = open_store(database, tmp_path / "data")  # keys in the data folder: worker processes open it too
    loader = Loader(Services.build(store))
    for rtype in TYPES:
        f = imm_population / f"{rtype}.ndjson"
        if f.exists():
            loader.load_lines(f.read_bytes().splitlines(), f.name)
    patients = read(imm_population, "Patient")
    doses = collections.Counter(i["patient"]["reference"][8:] for i in read(imm_population, "Immunization"))
    young = sorted((p for p in patients if p["birthDate"] > "2019" and doses[p["id"]]), key=lambda p: p["id"])
    child = max(young, key=lambda p: doses[p["id"]])
    tokens = TokenService(KeySet.generate(), BASE, BASE + "/fhir")
    app = build_app(store, AppSettings(data_dir=tmp_path / "data", public_url=BASE, rate=None), tokens=tokens)
    app.fhir.services.today = lambda: TODAY
    claims = {
        "admin": dict(subject="root", kind="person", scopes=["user/*.cruds"], roles=["administrator"]),
        "own_doctor": dict(subject="ped", kind="person", scopes=["user/*.cruds"], roles=["clinician"],
                           organization=child["managingOrganization"]["reference"],
                           fhir_user=child["generalPractitioner"][0]["reference"]),
        "stranger_doctor": dict(subject="dr-x", kind="person", scopes=["user/*.rs"], roles=["clinician"],
                                organization="Organization/org-nowhere", fhir_user="Practitioner/nobody"),
        "analyst": dict(subject="ana", kind="person", scopes=["user/*.rs"], roles=["analyst"]),
    }
    headers = {k: {"authorization": f"Bearer {tokens.mint(**v)[0]}"} for k, v in claims.items()}
    try:
        with TestClient(app, base_url=BASE) as client:
            episode = {"resourceType": "EpisodeOfCare", "status": "active",
                       "patient": {"reference": f"Patient/{child['id']}"},
                       "managingOrganization": child["managingOrganization"]}
            assert client.post("/fhir/EpisodeOfCare", json=episode, headers=headers["admin"]).status_code == 201
            yield World(client, headers, child, patients, store, app.fhir.services, imm_population,
                        database, tmp_path / "data")
    finally:
        store.close()
