"""The demo's sign-ins for the pages: one account per persona, each with a password made at random for this
data folder (kept in demo-users.json there, readable by its owner only) and printed by `make demo`."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import orjson

FILE = "demo-users.json"
# (user name, roles, patient, the link in demo-links.json (an Organization the user works for, or the
# Practitioner the user is), the page it opens on, what to try there)
PERSONAS: list[tuple[str, str, str | None, str | None, str, str]] = [
    ("alice", "citizen", "Patient/pat-0", None, "/app/me",
     "citizen: my record, prescriptions (ask for a renewal), insurance, who looked at my record, consents"),
    ("dr-demo", "clinician", None, "poly", "/app/clinic",
     "clinician: find pat-0 (search by FIN or name), the patient page, prescribe; any other patient asks for "
     "break-the-glass"),
    ("analyst-demo", "analyst", None, None, "/app/ministry",
     "ministry analyst: the indicators by region, district, age and sex, the map, CSV/SVG/PNG export"),
    ("epi-demo", "epidemiologist", None, "epi", "/app/ministry/alerts",
     "district epidemiologist (pat-0's district): the detection alerts addressed to them, with their evidence; "
     "acknowledge one"),
    ("admin-demo", "administrator", None, None, "/app/ministry", "administrator: the ministry dashboard too"),
]


def ensure_users(settings: Any) -> dict[str, str]:
    """The demo accounts (created once per data folder) and their passwords."""
    from ..security.clients import add_user, ensure_security_schema, get_user
    from ..security.storage import open_store
    path = Path(settings.data_dir) / FILE
    passwords: dict[str, str] = orjson.loads(path.read_bytes()) if path.exists() else {}
    links_path = Path(settings.data_dir) / "demo-links.json"
    links = orjson.loads(links_path.read_bytes()) if links_path.exists() else {}
    store = open_store(settings.database, settings.data_dir)
    try:
        ensure_security_schema(store)
        for username, role, patient, link, _, _ in PERSONAS:
            if get_user(store, username) is not None:
                continue  # made before (its password is in the file, or was set with `healthtwin users`)
            password = secrets.token_urlsafe(12)
            linked = links.get(link) if link else None
            person = linked if linked and linked.startswith("Practitioner/") else None
            add_user(store, username, password, role, patient=patient, practitioner=person,
                     organization=None if person else linked)
            passwords[username] = password
    finally:
        store.close()
    path.write_bytes(orjson.dumps(passwords, option=orjson.OPT_INDENT_2))
    os.chmod(path, 0o600)
    return passwords


def pages_guide(settings: Any, base: str) -> str:
    path = Path(settings.data_dir) / FILE
    passwords = orjson.loads(path.read_bytes()) if path.exists() else {}
    lines = [f"# The pages (sign in at {base}/app/ ; Azərbaycanca by default, ?lang=ru or ?lang=en):"]
    for username, _, _, _, page, task in PERSONAS:
        lines.append(f"#   {base}{page}  user {username}  password {passwords.get(username, '?')}  ({task})")
    return "\n".join(lines)
