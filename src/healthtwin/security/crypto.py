"""Envelope encryption: the building block that keeps direct identifiers encrypted at rest.

Envelope: every record gets its own random 256-bit data key (DEK); the data is sealed with AES-256-GCM under
the DEK, and the DEK is wrapped (RFC 3394 AES key wrap) under the master key. Layout of a blob:

    b"HT1" | master key id (16 ascii hex) | wrapped DEK (40 bytes) | nonce (12) | ciphertext + GCM tag

The AAD given by the caller (e.g. b"Patient/123") is bound into the GCM tag, so a blob copied onto
another record does not decrypt. Rotating the master key only re-wraps the 40-byte DEK of each blob
(`rewrap`): the ciphertext is untouched, and the master-key id tells which master opens which blob while a
rotation is half done.

How the store uses this (which resources are sealed, how they stay searchable through blind indexes) is in
at_rest.py.
"""
from __future__ import annotations

import os
from typing import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .keys import key_id

MAGIC = b"HT1"
_KID_LEN, _WRAP_LEN, _NONCE_LEN = 16, 40, 12
_HEADER_LEN = len(MAGIC) + _KID_LEN + _WRAP_LEN


class DecryptError(Exception):
    """Wrong key, wrong AAD, or a modified blob; deliberately not more specific."""


class Envelope:
    """Seals and opens blobs. `master` encrypts new blobs; `previous` masters can still open old ones."""

    def __init__(self, master: bytes, previous: Iterable[bytes] = ()) -> None:
        if len(master) != 32:
            raise ValueError("the master key is 32 bytes")
        self.master = master
        self.master_id = key_id(master).encode("ascii")
        self._masters = {key_id(k).encode("ascii"): k for k in [*previous, master]}

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE_LEN)  # fresh key per blob, so a random nonce can never repeat under a key
        sealed = AESGCM(dek).encrypt(nonce, plaintext, MAGIC + aad)
        return MAGIC + self.master_id + aes_key_wrap(self.master, dek) + nonce + sealed

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        dek = self._unwrap(blob)
        nonce = blob[_HEADER_LEN:_HEADER_LEN + _NONCE_LEN]
        try:
            return AESGCM(dek).decrypt(nonce, blob[_HEADER_LEN + _NONCE_LEN:], MAGIC + aad)
        except InvalidTag:
            raise DecryptError("cannot decrypt: wrong key, wrong context or modified data") from None

    def _unwrap(self, blob: bytes) -> bytes:
        if len(blob) < _HEADER_LEN + _NONCE_LEN + 16 or not blob.startswith(MAGIC):
            raise DecryptError("not an encrypted blob")
        master = self._masters.get(blob[len(MAGIC):len(MAGIC) + _KID_LEN])
        if master is None:
            raise DecryptError("the blob was sealed with a master key this server does not hold")
        try:
            return aes_key_unwrap(master, blob[len(MAGIC) + _KID_LEN:_HEADER_LEN])
        except InvalidUnwrap:
            raise DecryptError("cannot unwrap the data key") from None

    def needs_rewrap(self, blob: bytes) -> bool:
        return blob[len(MAGIC):len(MAGIC) + _KID_LEN] != self.master_id

    def rewrap(self, blob: bytes) -> bytes:
        """The blob with its data key re-wrapped under the current master (whichever held master sealed it);
        raises DecryptError if none of them did."""
        dek = self._unwrap(blob)
        return MAGIC + self.master_id + aes_key_wrap(self.master, dek) + blob[_HEADER_LEN:]


def rewrap(blob: bytes, master_old: bytes, master_new: bytes) -> bytes:
    """The same blob with its data key re-wrapped under `master_new`; the ciphertext bytes are unchanged."""
    return Envelope(master_new, previous=[master_old]).rewrap(blob)
