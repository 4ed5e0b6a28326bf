"""Rotating the token-signing key: tokens signed before keep working until they expire, servers pick the new
key up without a restart, and a retired key stops verifying once deleted."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from starlette.testclient import TestClient

from healthtwin.security import tokens as tokens_module
from healthtwin.security.keys import load_or_create, retire_signing_files, rotate_signing_file
from healthtwin.security.tokens import TokenError, TokenService

BASE, FHIR = "https://twin.example", "https://twin.example/fhir"


def service(data) -> TokenService:
    return TokenService(load_or_create(data), BASE, FHIR)


def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(tmp_path, monkeypatch):
    monkeypatch.setattr(tokens_module, "KEYS_RECHECK", 0.0)
    running = service(tmp_path)  # a server started before the rotation
    old_kid = running.keys.kid
    before, _ = running.mint("alice", "person", ["patient/*.rs"])
    retired = rotate_signing_file(tmp_path)
    assert retired.name == "signing.pub.1" and os.stat(retired).st_mode & 0o077 == 0
    assert b"PRIVATE" not in retired.read_bytes()  # a retired key verifies; it can never sign again
    restarted = service(tmp_path)
    assert restarted.keys.kid != old_kid
    assert [k["kid"] for k in restarted.keys.public_jwks()["keys"]] == [restarted.keys.kid, old_kid]
    assert restarted.caller(before).subject == "alice"  # signed with the retired key: still verifies
    after, _ = running.mint("bob", "person", ["patient/*.rs"])  # the running server noticed the new key
    assert running.keys.kid == restarted.keys.kid
    assert restarted.caller(after).subject == "bob" and running.caller(before).subject == "alice"


def test_a_retired_key_stops_verifying_once_deleted(tmp_path, monkeypatch):
    monkeypatch.setattr(tokens_module, "KEYS_RECHECK", 0.0)
    running = service(tmp_path)
    before, _ = running.mint("alice", "person", ["patient/*.rs"])
    rotate_signing_file(tmp_path)
    assert retire_signing_files(tmp_path, older_than=3600)[0] == []  # too recent: kept
    assert running.caller(before).subject == "alice"
    deleted, kept = retire_signing_files(tmp_path, older_than=0)
    assert [p.name for p in deleted] == ["signing.pub.1"] and kept == []
    for svc in (running, service(tmp_path)):  # the running server and a restarted one
        with pytest.raises(TokenError, match="unknown kid"):
            svc.caller(before)
        assert len(svc.keys.public_jwks()["keys"]) == 1


def test_made_up_kids_do_not_make_every_request_read_the_keys_folder(tmp_path, monkeypatch):
    running = service(tmp_path)
    token, _ = running.mint("alice", "person", ["patient/*.rs"])
    rotate_signing_file(tmp_path)
    looks = []
    original = running._signing_files
    monkeypatch.setattr(running, "_signing_files", lambda: looks.append(1) or original())
    running._keys_checked = time.monotonic()  # just looked
    for _ in range(50):
        running.caller(token)  # known kid (the old key, still in memory)
    assert looks == []  # within KEYS_RECHECK: no look at the folder, whatever arrives
    running._keys_checked -= tokens_module.KEYS_RECHECK + 1
    running.mint("bob", "person", [])
    assert len(looks) == 1 and running.keys.kid == load_or_create(tmp_path).kid


def test_jwks_endpoint_publishes_a_rotation_without_restart(tmp_path, monkeypatch):
    monkeypatch.setattr(tokens_module, "KEYS_RECHECK", 0.0)
    from healthtwin.composition import create_app
    from healthtwin.store.sqlite import SQLiteStore
    app = create_app(SQLiteStore(str(tmp_path / "store.sqlite")), data_dir=tmp_path, public_url=BASE, rate=None)
    with TestClient(app) as client:
        first = client.get("/auth/jwks").json()["keys"]
        rotate_signing_file(tmp_path)
        second = client.get("/auth/jwks")
    assert len(first) == 1 and [k["kid"] for k in second.json()["keys"]][1:] == [first[0]["kid"]]
    assert second.headers["cache-control"] == "max-age=300"


def test_cli_rotate_then_retire(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "healthtwin.cli", "keys", *args, "--data-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
    old = load_or_create(tmp_path).kid
    rotated = run("rotate-signing")
    assert rotated.returncode == 0 and "signing.pub.1" in rotated.stdout
    assert load_or_create(tmp_path).kid != old
    early = run("retire-signing")
    assert early.returncode == 1 and "kept signing.pub.1" in early.stderr
    assert (tmp_path / "keys" / "signing.pub.1").exists()
    forced = run("retire-signing", "--force")
    assert forced.returncode == 0 and not (tmp_path / "keys" / "signing.pub.1").exists()
