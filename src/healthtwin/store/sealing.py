"""What the store asks of the object that protects it at rest (`Store.protect`): the sealing protocol.

The store never builds one itself: security/at_rest.py's AtRest implements it with the data folder's keys, and
security/storage.py's `open_store` hands it to every store it opens. A store without a sealer stores clear text
(tests of storage alone)."""
from __future__ import annotations

from typing import Protocol

from ..fhir.outcome import FHIRError


class Sealer(Protocol):
    def protects(self, rtype: str) -> bool:
        """Whether resources of this type are encrypted at rest."""

    def seal(self, rtype: str, rid: str, content: bytes) -> bytes:
        """Content as written to the database."""

    def open(self, rtype: str, rid: str, blob: bytes) -> bytes:
        """Content as read from the database, opened."""

    def sensitive(self, rtype: str, code: str, kind: str) -> bool:
        """Whether the index rows of this search parameter hold blind indexes instead of values."""

    def prefix(self, normalized: str) -> str: ...

    def exact(self, value: str) -> str: ...

    def token(self, code: str) -> str: ...

    def index_rows(self, rtype: str, rows: list[tuple]) -> list[tuple]:
        """Extracted index rows as stored: identifier-bearing values blinded."""

    def refuse(self, what: str) -> FHIRError:
        """The error for a search a blind index cannot answer."""
