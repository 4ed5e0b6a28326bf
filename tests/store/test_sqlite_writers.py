"""Writers in several processes share one SQLite store: they queue on the lock file, none fails or is lost,
and the audit chain they append to together stays whole."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from healthtwin.security.audit import AuditLog
from healthtwin.store.sqlite import SQLiteStore

WRITER = textwrap.dedent("""
    import sys
    from healthtwin.security.audit import AuditLog
    from healthtwin.store.sqlite import SQLiteStore
    store = SQLiteStore(sys.argv[1])
    audit = AuditLog(store)
    for i in range(150):
        with store.transaction() as tx:
            tx.create("Patient", {"resourceType": "Patient", "gender": "other"}, f"{sys.argv[2]}-{i}")
        audit.append([{"resourceType": "AuditEvent", "recorded": "2026-11-25T00:00:00Z",
                       "entity": [{"what": {"reference": f"Patient/{sys.argv[2]}-{i}"}}]}])
    store.close()
""")


def test_processes_write_one_store_together(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    store = SQLiteStore(db)
    AuditLog(store).ensure_schema()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), name], stderr=subprocess.PIPE)
             for name in ("a", "b", "c")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    assert store.query("SELECT COUNT(*) FROM resources WHERE type = 'Patient'", [])[0][0] == 450
    result = AuditLog(store).verify()
    assert result.ok and result.checked == 450, result
    assert Path(str(db) + ".writer").exists()
    store.close()
