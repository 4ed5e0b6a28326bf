"""Envelope encryption: round trips, tampering, wrong keys and rotation. (The store's use: test_at_rest.py.)"""
from __future__ import annotations

import secrets

import pytest

from healthtwin.security.crypto import DecryptError, Envelope, rewrap

FIN = "010190-123A"
PATIENT = {
    "resourceType": "Patient", "id": "p1", "active": True, "gender": "female", "birthDate": "1990-01-01",
    "identifier": [{"system": "urn:oid:1.2.246.21", "value": FIN, "use": "official"},
                   {"system": "urn:x-kanta:mrn", "value": "MRN-77"}],
    "name": [{"family": "Virtanen", "given": ["Aino"]}],
    "telecom": [{"system": "phone", "value": "+358401234567"}, {"system": "email", "value": "aino@example.fi"}],
    "address": [{"line": ["Mannerheimintie 5 A 1"], "city": "Helsinki", "postalCode": "00100"}],
    "photo": [{"contentType": "image/png", "data": "aGVsbG8="}],
    "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Aino Virtanen</div>"},
    "contact": [{"relationship": [{"text": "mother"}], "name": {"family": "Korhonen", "given": ["Liisa"]},
                 "telecom": [{"system": "phone", "value": "+358409999999"}]}],
    "managingOrganization": {"reference": "Organization/hus"},
}
SECRETS = [FIN, "MRN-77", "Virtanen", "Aino", "+358401234567", "aino@example.fi", "Mannerheimintie", "Korhonen",
           "Liisa", "+358409999999", "aGVsbG8="]


@pytest.fixture
def env():
    return Envelope(secrets.token_bytes(32))


def test_round_trip_and_fresh_ciphertexts(env):
    a = env.encrypt(b"secret FIN " + FIN.encode(), b"Patient/p1")
    b = env.encrypt(b"secret FIN " + FIN.encode(), b"Patient/p1")
    assert a != b and FIN.encode() not in a
    assert env.decrypt(a, b"Patient/p1") == env.decrypt(b, b"Patient/p1") == b"secret FIN " + FIN.encode()


def test_wrong_aad_fails(env):
    blob = env.encrypt(b"x", b"Patient/p1")
    for aad in (b"Patient/p2", b"", b"Patient/p1 "):
        with pytest.raises(DecryptError):
            env.decrypt(blob, aad)


def test_any_modified_byte_fails(env):
    blob = env.encrypt(b"hello world", b"ctx")
    for i in range(len(blob)):
        broken = bytearray(blob)
        broken[i] ^= 0x01
        with pytest.raises(DecryptError):
            env.decrypt(bytes(broken), b"ctx")
    with pytest.raises(DecryptError):
        env.decrypt(blob[:-1], b"ctx")


def test_wrong_master_fails(env):
    blob = env.encrypt(b"x", b"ctx")
    with pytest.raises(DecryptError):
        Envelope(secrets.token_bytes(32)).decrypt(blob, b"ctx")


def test_rotation_rewraps_without_reencrypting(env):
    new_master = secrets.token_bytes(32)
    blob = env.encrypt(b"payload", b"ctx")
    moved = rewrap(blob, env.master, new_master)
    assert moved[-(12 + 7 + 16):] == blob[-(12 + 7 + 16):]  # nonce + ciphertext + tag untouched
    new = Envelope(new_master)
    assert new.decrypt(moved, b"ctx") == b"payload"
    with pytest.raises(DecryptError):
        new.decrypt(blob, b"ctx")  # the old blob needs the old master...
    both = Envelope(new_master, previous=[env.master])
    assert both.decrypt(blob, b"ctx") == both.decrypt(moved, b"ctx") == b"payload"  # ...kept during rotation
    assert both.needs_rewrap(blob) and not both.needs_rewrap(moved)
    with pytest.raises(DecryptError):
        rewrap(blob, secrets.token_bytes(32), new_master)  # rewrapping needs the right old key
    with pytest.raises(DecryptError):
        env.decrypt(moved, b"ctx")  # after rotation the old master alone is useless
