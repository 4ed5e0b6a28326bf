"""Every analytics query, answered or refused, is written to the audit chain (purpose: public health)."""
from __future__ import annotations

import subprocess
import sys

from starlette.testclient import TestClient

from healthtwin.composition import create_app
from healthtwin.store.sqlite import SQLiteStore


def _audited(store, needle: str) -> int:
    """Audit events whose JSON, or whose base64-encoded entity query, contains `needle`."""
    import base64

    import orjson

    from healthtwin.security.audit import decode_event
    found = 0
    for (raw,) in store.query("SELECT event FROM audit_log", []):
        event = decode_event(bytes(raw))
        queries = [base64.b64decode(e["query"]).decode() for e in event.get("entity", []) if e.get("query")]
        found += needle in orjson.dumps(event).decode() or any(needle in q for q in queries)
    return found


def _events(store) -> list[dict]:
    from healthtwin.security.audit import decode_event
    return [decode_event(bytes(raw)) for (raw,) in store.query("SELECT event FROM audit_log ORDER BY seq", [])]


def test_analytics_queries_are_audited(tmp_path):
    data = tmp_path / "data"
    store = SQLiteStore(tmp_path / "a.sqlite")
    from healthtwin.security.at_rest import AtRest
    store.protect(AtRest.for_data_dir(data))  # as every server's store is: recorded queries are redacted
    app = create_app(store, data_dir=data, analytics_dir=data, public_url="http://testserver", rate=None)

    def token(roles: str) -> str:
        return subprocess.run([sys.executable, "-m", "healthtwin.cli", "token", "--data-dir", str(data), "--subject",
                               f"t-{roles}", "--kind", "person", "--roles", roles, "--scope", "user/*.rs",
                               "--public-url", "http://testserver"],
                              capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    with TestClient(app) as client:
        analyst = {"Authorization": f"Bearer {token('analyst')}"}
        assert client.get("/analytics/indicators", headers=analyst).status_code == 200
        # (nothing is materialised here: the answer is an error, and still audited)
        assert client.get("/analytics/indicators/population?region=baki", headers=analyst).status_code < 500
        citizen = {"Authorization": f"Bearer {token('citizen')}"}
        assert client.get("/analytics/indicators", headers=citizen).status_code == 403
        assert client.get("/analytics/indicators").status_code == 401
        xml = client.get("/analytics/indicators", headers={**analyst, "Accept": "application/fhir+xml"})
        assert xml.status_code == 406  # refused for its format after identification: audited under the analyst
        client.get("/analytics/indicators/population?identifier=010190-123A", headers=analyst)
    assert _audited(store, "/analytics/indicators/population?region=baki") == 1
    assert _audited(store, "010190-123A") == 0  # recorded queries are redacted as FHIR searches are
    import base64
    listed = [e["outcome"] for e in _events(store) if e["agent"][0]["who"]["identifier"]["value"] == "t-analyst"
              and any(base64.b64decode(x.get("query", "")) == b"/analytics/indicators" for x in e.get("entity", []))]
    assert sorted(listed) == ["0", "4"]  # the answered list, and the one refused for its format
    assert _audited(store, "PUBHLTH") >= 4  # allowed, refused and anonymous alike
    assert _audited(store, "t-citizen") >= 1
