"""Encryption of direct identifiers at rest: envelope encryption, blind indexes, and the resource split.

Envelope: every record gets its own random 256-bit data key (DEK); the data is sealed with AES-256-GCM under
the DEK, and the DEK is wrapped (RFC 3394 AES key wrap) under the master key. Layout of a blob:

    b"HT1" | master key id (16 ascii hex) | wrapped DEK (40 bytes) | nonce (12) | ciphertext + GCM tag

The AAD given by the caller (e.g. b"Patient/123") is bound into the GCM tag, so a sidecar copied onto
another record does not decrypt. Rotating the master key only re-wraps the 40-byte DEK of each blob
(`rewrap`): the ciphertext is untouched, and the master-key id tells which master opens which blob while a
rotation is half done.

Blind index: HMAC-SHA256 of the normalised value under a per-field key (not in the database). Equality
searches on encrypted identifiers compare indexes; without the key they reveal nothing usable. With the key
a low-entropy identifier (a national id is ~10^7 values) can be brute-forced, so the index key is as
sensitive as the master key.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import os
import re
import unicodedata
from typing import Any, Iterable

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .keys import hkdf, key_id

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


def rewrap(blob: bytes, master_old: bytes, master_new: bytes) -> bytes:
    """The same blob with its data key re-wrapped under `master_new`; the ciphertext bytes are unchanged."""
    dek = Envelope(master_old)._unwrap(blob)
    new_id = key_id(master_new).encode("ascii")
    return MAGIC + new_id + aes_key_wrap(master_new, dek) + blob[_HEADER_LEN:]


# -- blind indexes --------------------------------------------------------------------------------------------------
def normalize(value: str, field: str) -> str:
    """One spelling per value, so 'Virtanen ', 'VIRTANEN' and 'Virtanen' index alike; identifiers also drop
    spaces and dashes that people type inconsistently — but not the FIN century sign's meaning (kept as is)."""
    text = unicodedata.normalize("NFKC", value).casefold().strip()
    text = re.sub(r"\s+", " ", text)
    if field.startswith(("identifier", "telecom")):
        text = re.sub(r"[\s()]", "", text)
    return text


def blind_index(value: str, field: str, index_key: bytes) -> str:
    """128-bit keyed index (hex) of `value` for `field` (e.g. 'identifier|urn:oid:1.2.246.21')."""
    key = hkdf(index_key, "healthtwin blind index v1|" + field)
    return hmac.new(key, normalize(value, field).encode("utf-8"), hashlib.sha256).hexdigest()[:32]


# -- splitting direct identifiers out of a resource ---------------------------------------------------------------
PROTECTED_TYPES = ("Patient", "RelatedPerson", "Practitioner", "Person")
DIRECT = ("name", "telecom", "address", "photo", "text")
BLIND_INDEX_URL = "https://healthtwin.dev/fhir/StructureDefinition/blind-index"
PROTECTED_TAG = {"system": "https://healthtwin.dev/fhir/CodeSystem/storage", "code": "identifiers-encrypted"}


def protect_resource(resource: dict[str, Any], envelope: Envelope, index_key: bytes,
                     aad: bytes | None = None) -> tuple[dict[str, Any], bytes | None]:
    """(resource without direct identifiers, encrypted sidecar holding them). Removed: name, telecom,
    address, photo, narrative text, contact persons' name/telecom/address, and identifier values — each
    identifier keeps system/type/use plus a blind index, so `identifier=system|value` stays searchable.
    Not scanned: free-text extensions and notes; they must not carry identifiers (documented limitation)."""
    rtype = resource.get("resourceType")
    if rtype not in PROTECTED_TYPES:
        return resource, None
    stored = copy.deepcopy(resource)
    sidecar: dict[str, Any] = {}
    for key in DIRECT:
        if key in stored:
            sidecar[key] = stored.pop(key)
    if isinstance(stored.get("identifier"), list):
        sidecar["identifier"] = copy.deepcopy(stored["identifier"])
        stored["identifier"] = [_blind_identifier(i, index_key) for i in stored["identifier"]]
    if isinstance(stored.get("contact"), list):
        sidecar["contact"] = copy.deepcopy(stored["contact"])
        stored["contact"] = [{k: v for k, v in c.items() if k not in ("name", "telecom", "address")}
                             for c in stored["contact"] if isinstance(c, dict)]
    if not sidecar:
        return stored, None
    meta = stored.setdefault("meta", {})
    meta["tag"] = [t for t in meta.get("tag", []) if t != PROTECTED_TAG] + [PROTECTED_TAG]
    aad = aad if aad is not None else _default_aad(resource)
    return stored, envelope.encrypt(orjson.dumps(sidecar), aad)


def reveal(stored: dict[str, Any], blob: bytes | None, envelope: Envelope, aad: bytes | None = None) -> dict:
    """The full resource again: the stored part with the sidecar's fields put back (stored meta wins)."""
    if blob is None:
        return stored
    sidecar = orjson.loads(envelope.decrypt(blob, aad if aad is not None else _default_aad(stored)))
    out = copy.deepcopy(stored)
    out.update(sidecar)
    meta = out.get("meta")
    if isinstance(meta, dict) and "tag" in meta:
        meta["tag"] = [t for t in meta["tag"] if t != PROTECTED_TAG]
        if not meta["tag"]:
            del meta["tag"]
        if not meta:
            del out["meta"]
    return out


def _blind_identifier(identifier: Any, index_key: bytes) -> Any:
    if not isinstance(identifier, dict) or "value" not in identifier:
        return identifier
    out = {k: v for k, v in identifier.items() if k != "value"}
    out["extension"] = [*(identifier.get("extension") or []), {
        "url": BLIND_INDEX_URL,
        "valueString": blind_index(str(identifier["value"]), "identifier|" + str(identifier.get("system", "")),
                                   index_key)}]
    return out


def _default_aad(resource: dict[str, Any]) -> bytes:
    if not resource.get("id"):
        raise ValueError("give the resource an id before protecting it (the id is bound into the ciphertext)")
    return f"{resource['resourceType']}/{resource['id']}".encode("utf-8")
