"""Shared test fixtures: where the third-party corpora live, and which databases to test."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def corpora_dir() -> Path:
    """The shared third-party corpora (HEALTHTWIN_CORPORA, default ../shared/corpora)."""
    return Path(os.environ.get("HEALTHTWIN_CORPORA", PROJECT_ROOT.parent / "shared" / "corpora")).resolve()


def corpus(*parts: str) -> Path:
    """A path inside the corpora; skips the calling test with a clear reason if it is absent."""
    path = corpora_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"corpus {path} is absent (set HEALTHTWIN_CORPORA to the shared corpora folder)")
    return path


def r4_package() -> Path:
    """The unpacked HL7 R4 package (hl7.fhir.r4.examples@4.0.1), fetched once with `npm pack` into its cache
    (scripts/fhir_package.py) if absent; skips the calling test with the reason if that is impossible.

    A lock file keeps parallel test workers from fetching and unpacking it at the same time: before, a test
    that looked for the folder while another was fetching it skipped, so a fresh machine skipped some."""
    import fcntl
    import sys
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    import fhir_package
    fhir_package.CACHE.mkdir(parents=True, exist_ok=True)
    with open(fhir_package.CACHE / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return fhir_package.package_dir()
        except Exception as exc:  # noqa: BLE001 - no package and no npm (or no registry): skip, saying why
            pytest.skip(f"the R4 package hl7.fhir.r4.examples@4.0.1 is unavailable ({exc}); set FHIR_R4_PACKAGE")


# -- databases ---------------------------------------------------------------------------------------------------
# SQLite always runs. PostgreSQL runs when HEALTHTWIN_TEST_POSTGRES=1 (CI: then it must be reachable) or when
# a server answers at HEALTHTWIN_TEST_PG_DSN (default postgresql://postgres@127.0.0.1:5432/postgres); otherwise
# its tests are skipped and the summary says so.
PG_ADMIN_DSN = os.environ.get("HEALTHTWIN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
_pg_state: dict[str, object] = {}


def _pg_database() -> str | None:
    """A database created for this test run (dropped at exit); None if PostgreSQL is not reachable."""
    if "dsn" in _pg_state:
        return _pg_state["dsn"]  # type: ignore[return-value]
    import atexit
    import uuid

    import psycopg

    required = os.environ.get("HEALTHTWIN_TEST_POSTGRES") == "1"
    name = f"healthtwin_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
    except psycopg.OperationalError as exc:
        if required:
            raise RuntimeError(f"HEALTHTWIN_TEST_POSTGRES=1 but PostgreSQL is not reachable: {exc}") from exc
        _pg_state["dsn"] = None
        return None
    dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        try:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error:
            pass

    atexit.register(drop)
    _pg_state["dsn"] = dsn
    return dsn


def make_store(kind: str, tmp_path: Path):
    """A fresh, empty store of `kind` ('sqlite' or 'postgres'); PostgreSQL gets its own schema. Like the
    server's, it encrypts direct identifiers at rest, so every test runs over the protected form."""
    from healthtwin.security.at_rest import AtRest
    from healthtwin.security.keys import KeySet
    return _plain_store(kind, tmp_path).protect(AtRest.from_keys(KeySet.generate()))


def _plain_store(kind: str, tmp_path: Path):
    if kind == "sqlite":
        from healthtwin.store.sqlite import SQLiteStore
        return SQLiteStore(tmp_path / "test.sqlite")
    dsn = _pg_database()
    if dsn is None:
        pytest.skip("PostgreSQL tests skipped: no server at " + PG_ADMIN_DSN + " (set HEALTHTWIN_TEST_POSTGRES=1 "
                    "to require it)")
    import uuid

    import psycopg

    from healthtwin.store.postgres import PostgresStore
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return PostgresStore(f"{dsn}?options=-csearch_path%3D{schema}", min_size=1, max_size=16)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    s = make_store(request.param, tmp_path)
    yield s
    s.close()


@pytest.fixture
def client(store, tmp_path):
    """A test client on the real application over a fresh store (both databases)."""
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    from healthtwin.request import OpenPolicy
    # The API tests exercise FHIR behaviour, not authorization: the open policy is chosen explicitly here
    # (build_app is secure by default; tests/security covers the real policy).
    with TestClient(build_app(store, AppSettings(data_dir=tmp_path / "data", rate=None), policy=OpenPolicy())) as c:
        yield c


@contextlib.contextmanager
def serving(tmp_path: Path, *args: str):
    """`healthtwin serve` on a free port with `args` (a real process, its workers too), once /health answers:
    yields (the process, its port); stopped after. The log is tmp_path/serve.log."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "healthtwin.cli", "serve", "--port", str(port), *args],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield proc, port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _pg_state.get("dsn", "unset") is None:
        terminalreporter.write_line("NOTE: PostgreSQL was not reachable: the PostgreSQL tests were SKIPPED; "
                                    "only SQLite was tested.", yellow=True, bold=True)
