"""`make demo` makes one sign-in per persona and prints each page's URL with it; the passwords work."""
from __future__ import annotations

import stat
from types import SimpleNamespace

from healthtwin.security.clients import verify_password
from healthtwin.security.storage import open_store
from healthtwin.web.demo_users import PERSONAS, ensure_users, pages_guide


def test_demo_sign_ins_are_made_once_and_printed_with_the_pages(tmp_path):
    settings = SimpleNamespace(data_dir=tmp_path, database=None)
    (tmp_path / "demo-links.json").write_text('{"poly": "Organization/org-poly-1", "epi": "Practitioner/prac-epi-x"}')
    first = ensure_users(settings)
    assert set(first) == {p[0] for p in PERSONAS} and len(set(first.values())) == len(first)
    assert ensure_users(settings) == first  # a second `make demo` keeps them
    assert stat.S_IMODE((tmp_path / "demo-users.json").stat().st_mode) == 0o600
    store = open_store(None, tmp_path)
    try:
        doctor = verify_password(store, "dr-demo", first["dr-demo"])
        assert doctor is not None and doctor.roles == ("clinician",) and doctor.organization == "Organization/org-poly-1"
        assert verify_password(store, "alice", first["alice"]).patient == "Patient/pat-0"
        epi = verify_password(store, "epi-demo", first["epi-demo"])  # the district epidemiologist, as a person
        assert epi.roles == ("epidemiologist",) and epi.practitioner == "Practitioner/prac-epi-x"
        assert epi.organization is None
    finally:
        store.close()
    guide = pages_guide(settings, "http://127.0.0.1:8080")
    for username, _, _, _, page, _ in PERSONAS:
        assert f"http://127.0.0.1:8080{page}  user {username}  password {first[username]}" in guide
    assert all(line.startswith("#") for line in guide.splitlines())  # comments in the pasted shell block
