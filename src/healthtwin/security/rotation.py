"""Master-key rotation: a new key-encryption key, and every sealed blob re-wrapped under it.

Only the 40-byte wrapped data key of each blob changes (crypto.rewrap); ciphertexts stay as they are, so a
rotation over ten million people touches little data and never holds plaintext. The steps:

1. `healthtwin keys rotate`: the current master.key is kept as master.key.<n>, a new master.key is created,
   and every blob in `resources` and `history` is re-wrapped, in batches, each its own transaction.
2. Restart every server process: until then they seal new blobs under the old master, which the retired file
   still opens.
3. `healthtwin keys retire`: re-wraps whatever is still under a retired master, then deletes the retired
   key files. From then on the old master opens nothing, wherever a copy of it may have leaked.

A master key given by configuration (HEALTHTWIN_MASTER_KEY) rotates the same way: set the new key there and
the old one in HEALTHTWIN_MASTER_KEY_PREVIOUS, restart, and run `healthtwin keys retire`.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .at_rest import PROTECTED_TYPES, AtRest
from .crypto import MAGIC, DecryptError
from .keys import _create_exclusive

_BATCH = 1000


@dataclass
class RewrapReport:
    rewrapped: int = 0
    current: int = 0  # already under the new master
    clear: int = 0  # written before encryption was on (a store from before this version); left as is


def rotate_master_file(data_dir: str | Path) -> Path:
    """Keeps master.key as master.key.<n> and creates a new one; returns the retired file's path."""
    folder = Path(data_dir) / "keys"
    current = folder / "master.key"
    n = 1 + max([int(p.suffix[1:]) for p in folder.glob("master.key.*") if p.suffix[1:].isdigit()], default=0)
    retired = folder / f"master.key.{n}"
    if not _create_exclusive(retired, current.read_bytes()):
        raise RuntimeError(f"{retired} exists already; refusing to overwrite a retired key")
    fresh = folder / ".master.key.next"
    fresh.unlink(missing_ok=True)
    if not _create_exclusive(fresh, secrets.token_bytes(32)):
        raise RuntimeError(f"cannot create {fresh}")
    fresh.replace(current)  # atomic: a reader sees the old key or the new one, never a partial file
    return retired


def rewrap_store(store: Any, at_rest: AtRest) -> RewrapReport:
    """Re-wraps every sealed blob of the store under `at_rest`'s current master."""
    report = RewrapReport()
    envelope = at_rest.envelope
    types = sorted(PROTECTED_TYPES)
    marks = ",".join("?" * len(types))
    for table, key_cols in (("resources", ("rid",)), ("history", ("type", "id", "version"))):
        cols = ", ".join(key_cols)
        after: tuple = (0,) if table == "resources" else ("", "", 0)
        while True:
            keyset = ("rid > ?" if table == "resources" else "(type, id, version) > (?, ?, ?)")
            rows = store.query(f"SELECT {cols}, content FROM {table} WHERE type IN ({marks}) AND {keyset} "
                               f"ORDER BY {cols} LIMIT {_BATCH}", [*types, *after])
            if not rows:
                break
            updates = []
            for row in rows:
                blob = bytes(row[-1]) if row[-1] is not None else None
                if blob is None:
                    continue
                if not blob.startswith(MAGIC):
                    report.clear += 1
                elif not envelope.needs_rewrap(blob):
                    report.current += 1
                else:
                    try:
                        updates.append((envelope.rewrap(blob), *row[:-1], blob))
                    except DecryptError:
                        raise RuntimeError(f"a blob in {table} is sealed under a master key this folder does "
                                           "not hold; nothing after it was re-wrapped") from None
            if updates:
                # `content = old`: a version written meanwhile by a server is never replaced by this one's.
                where = " AND ".join(f"{c} = ?" for c in key_cols) + " AND content = ?"
                with store.write_cursor() as cur:
                    cur.executemany(store.sql(f"UPDATE {table} SET content = ? WHERE {where}"), updates)
                report.rewrapped += len(updates)
            after = tuple(rows[-1][:-1])
    return report
