"""Direct identifiers encrypted at rest, and still searchable: what the store does with crypto.py's blocks.

What is protected. Resources that *are* a person or carry a person's national id (Patient, RelatedPerson,
Practitioner, Person, Coverage, whose subscriberId is the FIN) are stored as envelope-encrypted blobs
(AES-256-GCM under a per-blob data key, wrapped by the master key; the AAD binds `Type/id`, so a blob moved
onto another row does not open). Their history versions too. Every other resource stays clear JSON except the
parts of it that name or identify a person, wherever they sit (`partial_seal`): a Reference's `identifier` and
`display` (`subject.identifier`, `performer.display`…), HumanName and ContactPoint values (`name`, `telecom`,
a ContactDetail's name),
an Identifier's value in a person register (the FIN), and contained resources of the protected types. Those
parts leave the JSON and travel sealed in its first member, `"__sealed"` (base64 of one envelope, same AAD),
and are put back in place on reading. Clinical content stays clear, so `_content`, `_text` and the database's
own JSON functions still see it.

What stays searchable. Search index rows of those types that would hold an identifier in clear are replaced
by keyed blind indexes (keyed BLAKE2b, a PRF like HMAC-SHA256 at a third of its cost in CPython, 80 bits):
  * every `string` parameter (name, family, given, address, address-city, …): one row per prefix of the
    normalised value, 1 to 32 characters, so the spec's default "starts with" match becomes an equality
    lookup on HMAC(prefix), and `:exact` compares HMAC(exact value);
  * token parameters that hold identifiers or contact points (identifier, telecom, phone, email), on every
    resource type, and every reference's logical identifier (`subject:identifier`, …): the code becomes
    HMAC(code), the system stays in clear (it names a register, not a person).
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
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlencode

import orjson

from ..fhir.outcome import FHIRError
from .crypto import MAGIC, DecryptError, Envelope
from .keys import KeySet, hkdf, load_or_create, retired_master_keys
from .pseudonym import AnalyticsKeys

PROTECTED_TYPES = frozenset({"Patient", "RelatedPerson", "Practitioner", "Person", "Coverage"})
BLIND_TOKENS = frozenset({"identifier", "telecom", "phone", "email"})
_BLINDED_TOKEN: dict[str, bool] = {}  # token parameter code -> whether its values are blinded (index_rows)
# Identifier systems that are registers of people: their values are sealed wherever an Identifier carries them.
PERSON_SYSTEMS = frozenset({"https://health.gov.az/fhir/sid/fin", "urn:oid:1.2.246.21"})
# How a partially sealed resource starts: its first member holds the sealed parts (base64 of an envelope).
PARTIAL = b'{"__sealed":"'
_PARTIAL_KEY = "__sealed"
_CONTACT_DETAIL = frozenset({"id", "extension", "name", "telecom"})
# Cheap pre-check on the serialised JSON: a resource without any of these has nothing to seal. Each is one
# pass over the bytes (3 µs over a 6 KB recommendation on 2026-12-03's machine), so they are as few and as
# broad as they can be: `"name":` whatever follows (a ContactDetail's name is a string, and one sits in
# `author`, `editor`, `reviewer` or `endorser` of a definition with no other hint; found 2026-12-03 by
# tests/security/test_at_rest_precheck.py), `ontact` for `contact` and any `…ContactDetail`.
_HINTS = (b'"identifier":{', b'"telecom"', b'"name":', b'"contained"', b'ontact',
          *(b'"' + s.encode() + b'"' for s in PERSON_SYSTEMS))
# Parameter names whose values are direct identifiers wherever they appear (chains included): recorded
# queries in the audit trail carry their blind index instead of the value.
_AUDIT_REDACT = frozenset({"identifier", "telecom", "phone", "email", "name", "family", "given", "phonetic",
                           "address", "address-city", "address-country", "address-postalcode", "address-state",
                           "_text", "_content"})
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?:[:.][A-Za-z0-9_\-]+)*")  # name, modifiers, chains
_FILTER_SPLIT = re.compile(r",(?=[A-Z][A-Za-z]+\?)")  # commas between _typeFilter searches, not inside values
# A `display` key right after a `code` member whose value has no quote or escape: the same object, a Coding.
_CODED_DISPLAY = re.compile(rb'"code":"[^"\\]*","display":')
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


def may_name_a_person(content: bytes) -> bool:
    """A cheap test on serialised JSON, before parsing it: False only if nothing in it can be a person part
    (`_person_part`). Every `display` must sit in a flat object that has a `code` or `system` before it, as
    a Coding's does; anything else (a Reference's display, an unusual order) goes to the full walk."""
    if any(h in content for h in _HINTS):
        return True
    # Fast path, in C: every `display` key follows a `code` member of the same object (orjson's compact JSON
    # of a Coding written as system, code, display), so its node has a code and it is a Coding's display.
    # Anything else (spacing, escapes, other orders) takes the walk below. A recommendation's 30 displays
    # cost 93 µs on the walk on 2026-12-03's machine, inside SQLite's one write transaction.
    displays = content.count(b'"display"')
    if displays == content.count(b'"display":') == len(_CODED_DISPLAY.findall(content)):
        return False
    at = content.find(b'"display"')
    while at >= 0:
        start = content.rfind(b"{", 0, at)
        if content.rfind(b"}", start, at) >= 0:
            return True  # an object nested before it in the same object: not a flat Coding
        head = content[start:at]
        if b'"code"' not in head and b'"system"' not in head:
            return True
        at = content.find(b'"display"', at + 9)
    return False


def _person_part(node: dict, key: str, value: object, coding: bool) -> bool:
    """Whether `node[key]` names or identifies a person (see the module's docstring)."""
    if key == "display":  # a Reference's display (a Coding's display names a code, not a person)
        return not coding
    if key == "identifier":  # a Reference's logical identifier (a resource's own identifiers are a list)
        return type(value) is dict
    if key == "telecom":
        return True
    if key == "name":  # HumanName, and a ContactDetail's name (an Organization's or a Location's stays clear)
        return type(value) is not str or node.keys() <= _CONTACT_DETAIL
    return key == "value" and node.get("system") in PERSON_SYSTEMS


def _strip(node: dict, path: list, out: list, everything: bool = False) -> None:
    """Moves the person-identifying members of `node` (all but resourceType and id with `everything`) into
    `out` as [path, position, key, value], recursing into what stays."""
    coding = "code" in node or "system" in node
    removed = []
    for pos, (key, value) in enumerate(node.items()):
        if (key not in ("resourceType", "id")) if everything else _person_part(node, key, value, coding):
            out.append([path, pos, key, value])
            removed.append(key)
        elif type(value) is dict:
            _strip(value, path + [key], out)
        elif type(value) is list:
            for i, item in enumerate(value):
                if type(item) is dict:
                    _strip(item, path + [key, i], out,
                           key == "contained" and item.get("resourceType") in PROTECTED_TYPES)
    for key in removed:
        del node[key]


def _restore(doc: dict, entries: list) -> None:
    """Puts `_strip`'s entries back where they were, in their original member order."""
    for path, pos, key, value in entries:  # in ascending position within each object, as stripped
        node: Any = doc
        for step in path:
            node = node[step]
        items = list(node.items())
        items.insert(pos, (key, value))
        node.clear()
        node.update(items)


class AtRest:
    """The store's encryption and blind-indexing rules (one instance per store, shared by threads)."""

    def __init__(self, envelope: Envelope, index_key: bytes, analytics: AnalyticsKeys | None = None) -> None:
        self.envelope = envelope
        # The analytics store's pseudonymous keys (pseudonym.py): what StoreSource hands the views.
        self.analytics = analytics
        # Separate keys per purpose: a prefix row, an exact row and a token row of the same text never match.
        self._prefix_key = hkdf(index_key, "healthtwin at-rest string prefix v1")
        self._exact_key = hkdf(index_key, "healthtwin at-rest string exact v1")
        self._token_key = hkdf(index_key, "healthtwin at-rest token v1")
        self._audit_key = hkdf(index_key, "healthtwin at-rest audit query v1")

    @classmethod
    def from_keys(cls, keys: KeySet, retired: Iterable[bytes] = ()) -> "AtRest":
        return cls(Envelope(keys.master_key, previous=retired), keys.index_key, AnalyticsKeys(keys.pseudonym_key))

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
                       keys.index_key, AnalyticsKeys(keys.pseudonym_key))
        return cls.from_keys(keys, retired)

    # -- content -------------------------------------------------------------------------------------------------
    @staticmethod
    def protects(rtype: str) -> bool:
        return rtype in PROTECTED_TYPES

    def seal(self, rtype: str, rid: str, content: bytes) -> bytes:
        if rtype not in PROTECTED_TYPES:
            return self.partial_seal(rtype, rid, content)
        return self.envelope.encrypt(content, f"{rtype}/{rid}".encode("utf-8"))

    def partial_seal(self, rtype: str, rid: str, content: bytes) -> bytes:
        """`content` with the parts that identify a person sealed into its `__sealed` member (unchanged when
        it has none, or when it is sealed already)."""
        if content.startswith((MAGIC, PARTIAL)) or not may_name_a_person(content):
            return content
        doc = orjson.loads(content)
        entries: list = []
        _strip(doc, [], entries)
        if not entries:
            return content
        sealed = self.envelope.encrypt(orjson.dumps(entries), f"{rtype}/{rid}".encode("utf-8"))
        return orjson.dumps({_PARTIAL_KEY: base64.b64encode(sealed).decode("ascii"), **doc})

    def open(self, rtype: str, rid: str, blob: bytes) -> bytes:
        # JSON starts with '{', a sealed blob with MAGIC: rows written before encryption was on still read.
        partial = blob.startswith(PARTIAL)
        if not partial and not blob.startswith(MAGIC):
            return blob
        try:
            if not partial:
                return self.envelope.decrypt(blob, f"{rtype}/{rid}".encode("utf-8"))
            doc = orjson.loads(blob)
            sealed = base64.b64decode(doc.pop(_PARTIAL_KEY))
            _restore(doc, orjson.loads(self.envelope.decrypt(sealed, f"{rtype}/{rid}".encode("utf-8"))))
            return orjson.dumps(doc)
        except DecryptError as exc:
            raise FHIRError(500, f"{rtype}/{rid} cannot be decrypted with this server's keys ({exc})",
                            "security") from None

    @staticmethod
    def envelope_of(blob: bytes) -> bytes | None:
        """The envelope inside a stored blob (all of it, or a partial seal's `__sealed` member), else None."""
        if blob.startswith(MAGIC):
            return blob
        if blob.startswith(PARTIAL):
            return base64.b64decode(blob[len(PARTIAL):blob.index(b'"', len(PARTIAL))])
        return None

    @staticmethod
    def with_envelope(blob: bytes, envelope: bytes) -> bytes:
        """`blob` with its envelope replaced (rotation re-wraps envelopes, never the clear JSON around them)."""
        if blob.startswith(MAGIC):
            return envelope
        end = blob.index(b'"', len(PARTIAL))
        return PARTIAL + base64.b64encode(envelope) + blob[end:]

    # -- index rows ----------------------------------------------------------------------------------------------
    @staticmethod
    def sensitive(rtype: str, code: str, kind: str) -> bool:
        """Whether index rows of `rtype`'s parameter `code` (of `kind`) hold blind indexes: strings of the
        protected types; identifiers and contact points of every type; references' logical identifiers."""
        if kind == "string":
            return rtype in PROTECTED_TYPES
        return kind == "token" and (code.split(":", 1)[0] in BLIND_TOKENS or code.endswith(":identifier"))

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
        protected = rtype in PROTECTED_TYPES
        out: list[tuple] = []
        seen: set[tuple] = set()
        blinded = _BLINDED_TOKEN
        for row in rows:
            code, kind = row[0], row[1]
            if kind == "token":
                # whether the code's tokens are blinded, remembered per code: the split and suffix test ran
                # on every row, a tenth of a cohort recommendation's index work (~40 rows each, 2026-12-06)
                blind = blinded.get(code)
                if blind is None:
                    blind = blinded[code] = code.split(":", 1)[0] in BLIND_TOKENS or code.endswith(":identifier")
                if blind:
                    out.append((code, "token", row[2], self.token(row[3]) if row[3] else None, None))
                else:
                    out.append(row)
            elif kind == "string" and protected:
                value, exact = row[2], row[3]
                exact_mac = self.exact(exact)
                for k in range(1, min(len(value), PREFIX_MAX) + 1):
                    blind = (code, "string", self.prefix(value[:k]), exact_mac)
                    if blind not in seen:
                        seen.add(blind)
                        out.append(blind)
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
