"""Key files: created once, private, never overwritten, identical for racing workers."""
from __future__ import annotations

import os
import stat
import threading

import pytest

from healthtwin.security.keys import load_or_create, thumbprint


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_created_private_and_stable(tmp_path):
    ks = load_or_create(tmp_path)
    folder = tmp_path / "keys"
    assert mode(folder) == 0o700
    for name in ("signing.pem", "master.key", "index.key", "pseudonym.key"):
        assert mode(folder / name) == 0o600, name
    again = load_or_create(tmp_path)
    assert again.kid == ks.kid and again.master_key == ks.master_key and again.index_key == ks.index_key
    assert len({ks.master_key, ks.index_key, ks.pseudonym_key}) == 3
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*"))


def test_existing_keys_are_never_overwritten(tmp_path):
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "master.key").write_bytes(b"m" * 32)
    os.chmod(folder / "master.key", 0o600)
    ks = load_or_create(tmp_path)
    assert ks.master_key == b"m" * 32
    (folder / "index.key").write_bytes(b"short")
    with pytest.raises(ValueError):
        load_or_create(tmp_path)  # refuses, rather than "repairing" by generating a new key
    assert (folder / "index.key").read_bytes() == b"short"


def test_loose_permissions_are_tightened(tmp_path):
    load_or_create(tmp_path)
    path = tmp_path / "keys" / "master.key"
    os.chmod(path, 0o644)
    load_or_create(tmp_path)
    assert mode(path) == 0o600


def test_racing_workers_agree(tmp_path):
    results = []
    barrier = threading.Barrier(8)

    def start():
        barrier.wait()
        results.append(load_or_create(tmp_path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.kid for r in results}) == 1 and len({r.master_key for r in results}) == 1


def test_jwks_is_public_with_thumbprint_kid(tmp_path):
    ks = load_or_create(tmp_path)
    jwks = ks.public_jwks()
    (jwk,) = jwks["keys"]
    assert jwk["kid"] == ks.kid == thumbprint(jwk) and jwk["alg"] == "ES256" and jwk["use"] == "sig"
    assert "d" not in jwk
    assert ks.project_pseudonym_key("a") != ks.project_pseudonym_key("b")


def test_wrong_signing_key_type_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    folder = tmp_path / "keys"
    folder.mkdir()
    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (folder / "signing.pem").write_bytes(pem)
    os.chmod(folder / "signing.pem", 0o600)
    with pytest.raises(ValueError):
        load_or_create(tmp_path)
