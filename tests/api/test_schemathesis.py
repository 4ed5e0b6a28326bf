"""schemathesis against the API's own OpenAPI description: positive and negative data, with and without
credentials (ignored_auth), never a 5xx. Run on the real, secure application over SQLite."""
from __future__ import annotations

import subprocess
import sys

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import ignored_auth  # noqa: E402

from healthtwin.composition import create_app  # noqa: E402
from healthtwin.store.sqlite import SQLiteStore  # noqa: E402


def _app(folder):
    app = create_app(SQLiteStore(folder / "st.sqlite"), data_dir=folder, public_url="http://localhost", rate=None)
    token = subprocess.run([sys.executable, "-m", "healthtwin.cli", "token", "--data-dir", str(folder),
                            "--subject", "st", "--kind", "person", "--roles", "administrator",
                            "--scope", "user/*.cruds", "--public-url", "http://localhost"],
                           capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return app, token


def _schema():
    # Built at import, because @schema.parametrize needs the schema when the module is collected.
    import tempfile
    from pathlib import Path
    app, token = _app(Path(tempfile.mkdtemp(prefix="schemathesis")))
    schema = schemathesis.openapi.from_asgi("/openapi.json?types=Patient,Observation", app)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=15)
    schema.config.update(headers={"Authorization": f"Bearer {token}"})
    return schema


schema = _schema()


@schema.parametrize()
def test_api_never_fails_with_a_server_error(case):
    case.call_and_validate(checks=[not_a_server_error, ignored_auth])
