"""Direct identifiers encrypted at rest, and still searchable: what the store does with crypto.py's blocks.

What is protected. Resources that *are* a person or carry a person's national id (Patient, RelatedPerson,
Practitioner, Person, Coverage, whose subscriberId is the FIN) are stored as envelope-encrypted blobs
(AES-256-GCM under a per-blob data key, wrapped by the master key; the AAD binds `Type/id`, so a blob moved
onto another row does not open). Their history versions too. Other resources refer to people by id only, so
they stay in clear, which keeps search, `_content` and analytics on clinical data unchanged.

What stays searchable. Search index rows of those types that would hold an identifier in clear are replaced
by keyed blind indexes (keyed BLAKE2b, a PRF like HMAC-SHA256 at a third of its cost in CPython, 80 bits):
  * every `string` parameter (name, family, given, address, address-city, …): one row per prefix of the
    normalised value, 1 to 32 characters, so the spec's default "starts with" match becomes an equality
    lookup on HMAC(prefix), and `:exact` compares HMAC(exact value);
  * token parameters that hold identifiers or contact points (identifier, telecom, phone, email): the code
    becomes HMAC(code), the system stays in clear (it names a register, not a person).
Refused with 400, because a blind index cannot answer them: `:contains`, `:text`, `:in`/`:not-in`, `:below`/
`:above` on these parameters, and `_text`/`_content` on protected types. `_sort` by them decrypts the matches
and sorts in memory (store/search.py), up to a bound.

What a thief with the database but not the keys learns: the number of people, clinical data by opaque id, and
how often index values repeat (frequency analysis of common surnames' prefixes is possible; the 80-bit
truncation and per-purpose keys keep everything else opaque). Queries longer than 32 characters are matched on
their first 32, which can over-match two values identical that far (documented in docs/security.md).
"""
from __future__ import annotations

import base64
import os
import re
from hashlib import blake2b
from pathlib import Path
from typing import Iterable
from urllib.parse import parse_qsl, urlencode

from ..fhir.outcome import FHIRError
from .crypto import MAGIC, DecryptError, Envelope
from .keys import KeySet, hkdf, load_or_create, retired_master_keys

PROTECTED_TYPES = frozenset({"Patient", "RelatedPerson", "Practitioner", "Person", "Coverage"})
BLIND_TOKENS = frozenset({"identifier", "telecom", "phone", "email"})
# Parameter names whose values are direct identifiers wherever they appear (chains included): recorded
# queries in the audit trail carry their blind index instead of the value.
_AUDIT_REDACT = frozenset({"identifier", "telecom", "phone", "email", "name", "family", "given", "phonetic",
                           "address", "address-city", "address-country", "address-postalcode", "address-state",
                           "_text", "_content"})
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?:[:.][A-Za-z0-9_\-]+)*")  # name, modifiers, chains
_FILTER_SPLIT = re.compile(r",(?=[A-Z][A-Za-z]+\?)")  # commas between _typeFilter searches, not inside values
PREFIX_MAX = 32
_DIGEST_BYTES = 10  # 80 bits: collisions among 10^9 distinct values stay below one in a million


def _configured_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError("HEALTHTWIN_MASTER_KEY(_PREVIOUS) must hold 32-byte keys, base64-encoded")
    return key


class AtRest:
    """The store's encryption and blind-indexing rules (one instance per store, shared by threads)."""

    def __init__(self, envelope: Envelope, index_key: bytes) -> None:
        self.envelope = envelope
        # Separate keys per purpose: a prefix row, an exact row and a token row of the same text never match.
        self._prefix_key = hkdf(index_key, "healthtwin at-rest string prefix v1")
        self._exact_key = hkdf(index_key, "healthtwin at-rest string exact v1")
        self._token_key = hkdf(index_key, "healthtwin at-rest token v1")
        self._audit_key = hkdf(index_key, "healthtwin at-rest audit query v1")

    @classmethod
    def from_keys(cls, keys: KeySet, retired: Iterable[bytes] = ()) -> "AtRest":
        return cls(Envelope(keys.master_key, previous=retired), keys.index_key)

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> "AtRest":
        """The server's rules from `<data_dir>/keys/` (generated on first start). HEALTHTWIN_MASTER_KEY
        (32 bytes, base64) replaces master.key where the master key comes from configuration or a vault."""
        keys = load_or_create(data_dir)
        retired = retired_master_keys(data_dir)
        configured = os.environ.get("HEALTHTWIN_MASTER_KEY")
        if configured:
            previous = [_configured_key(k) for k in os.environ.get("HEALTHTWIN_MASTER_KEY_PREVIOUS", "").split(",")
                        if k.strip()]
            return cls(Envelope(_configured_key(configured), previous=[keys.master_key, *retired, *previous]),
                       keys.index_key)
        return cls.from_keys(keys, retired)

    # -- content -------------------------------------------------------------------------------------------------
    @staticmethod
    def protects(rtype: str) -> bool:
        return rtype in PROTECTED_TYPES

    def seal(self, rtype: str, rid: str, content: bytes) -> bytes:
        if rtype not in PROTECTED_TYPES:
            return content
        return self.envelope.encrypt(content, f"{rtype}/{rid}".encode("utf-8"))

    def open(self, rtype: str, rid: str, blob: bytes) -> bytes:
        # JSON starts with '{', a sealed blob with MAGIC: rows written before encryption was on still read.
        if not blob.startswith(MAGIC):
            return blob
        try:
            return self.envelope.decrypt(blob, f"{rtype}/{rid}".encode("utf-8"))
        except DecryptError as exc:
            raise FHIRError(500, f"{rtype}/{rid} cannot be decrypted with this server's keys ({exc})",
                            "security") from None

    # -- index rows ----------------------------------------------------------------------------------------------
    @staticmethod
    def sensitive(rtype: str, code: str, kind: str) -> bool:
        return rtype in PROTECTED_TYPES and (kind == "string" or (kind == "token" and
                                                                  code.split(":", 1)[0] in BLIND_TOKENS))

    def _mac(self, key: bytes, text: str) -> str:
        return blake2b(text.encode("utf-8"), key=key, digest_size=_DIGEST_BYTES).hexdigest()

    def prefix(self, normalized: str) -> str:
        return self._mac(self._prefix_key, normalized[:PREFIX_MAX])

    def exact(self, value: str) -> str:
        return self._mac(self._exact_key, value)

    def token(self, code: str) -> str:
        return self._mac(self._token_key, code)

    def index_rows(self, rtype: str, rows: list[tuple]) -> list[tuple]:
        """`rows` as extracted (code, kind, …) with identifier-bearing values replaced by blind indexes."""
        if rtype not in PROTECTED_TYPES:
            return rows
        out: list[tuple] = []
        seen: set[tuple] = set()
        for row in rows:
            code, kind = row[0], row[1]
            if kind == "string":
                value, exact = row[2], row[3]
                exact_mac = self.exact(exact)
                for k in range(1, min(len(value), PREFIX_MAX) + 1):
                    blind = (code, "string", self.prefix(value[:k]), exact_mac)
                    if blind not in seen:
                        seen.add(blind)
                        out.append(blind)
            elif kind == "token" and code.split(":", 1)[0] in BLIND_TOKENS:  # identifier, identifier:of-type…
                out.append((code, "token", row[2], self.token(row[3]) if row[3] else None, None))
            else:
                out.append(row)
        return out

    def refuse(self, what: str) -> FHIRError:
        return FHIRError(400, f"{what}: direct identifiers are encrypted at rest and searchable only by exact "
                              "value or by prefix", "not-supported")

    # -- audit ---------------------------------------------------------------------------------------------------
    def audit_index(self, value: str) -> str:
        """The `bi:` form a recorded query carries for `value` (what an auditor searches the trail for)."""
        return "bi:" + self._mac(self._audit_key, value)

    def redact_query(self, query: str) -> str:
        """A query string (what follows the `?`, still percent-encoded) fit for the audit trail."""
        return self.redact_params(parse_qsl(query, keep_blank_values=True))

    def redact_params(self, pairs: Iterable[tuple[str, str]]) -> str:
        """Search criteria (decoded name/value pairs, from a URL or a POST _search form) as the audit trail
        records them: values of identifier-like parameters become their keyed index (`bi:<hex>`), so an auditor
        with the key can still find who searched for a given person. A name that is no parameter name
        (`sys|FIN` with no `=`) is blinded too, and `_typeFilter` searches are redacted the same way."""
        redacted = []
        for key, value in pairs:
            if not _PARAM_NAME.fullmatch(key):
                key, value = self.audit_index(key), (self.audit_index(value) if value else value)
            elif key == "_typeFilter":
                value = ",".join(self._redact_filter(f) for f in _FILTER_SPLIT.split(value))
            else:
                last = key.split(".")[-1].split(":")
                if {last[0], last[-1]} & _AUDIT_REDACT:
                    value = self.audit_index(value)
            redacted.append((key, value))
        return urlencode(redacted, safe=":|,/")

    def _redact_filter(self, text: str) -> str:
        rtype, sep, query = text.partition("?")
        return rtype + sep + self.redact_query(query) if sep else self.audit_index(text)
