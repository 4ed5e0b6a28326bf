"""Token-bucket rate limiting per key (client id, user name, address).

Each key has a bucket of `burst` tokens refilled at `rate` per second; a request takes one. `check` answers
None (go ahead) or the seconds until a token is available (send 429 with Retry-After).

Where the buckets live:

* in process (`RateLimiter(rate, burst)`): for tests and a single process;
* in a file shared by every worker of the server (`RateLimiter(rate, burst, path=...)`, what `build_app`
  uses when it has a data folder). With per-process buckets, `serve --workers N` would let a client make N
  times its limit, and a password guesser N times the login attempts, since each connection lands on
  whichever worker accepts it. The file is a fixed table of buckets, memory-mapped by each worker and locked
  for the few microseconds an update takes (`SharedBuckets`). It persists across restarts, so restarting the
  server does not hand a guesser a fresh allowance.

Several hosts behind one load balancer need a limit in front of them (the proxy's, or a shared store): the
file is shared by the processes of one host only.
"""
from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable


class MemoryBuckets:
    """key -> (tokens, last refill), ordered by last use, so the idlest key is evicted first and an attacker
    cycling keys cannot grow memory without bound."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, cost: float, now: float, rate: float, burst: float) -> float:
        """Takes `cost` tokens if there are that many; returns the tokens there were (after refill)."""
        with self._lock:
            tokens, last = self._buckets.pop(key, (burst, now))
            tokens = _refilled(tokens, last, now, rate, burst)
            self._buckets[key] = (tokens - cost if tokens >= cost else tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return tokens

    def reset(self, key: str) -> None:
        with self._lock:
            self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)


class SharedBuckets:
    """Buckets in a memory-mapped file that several processes share.

    The file is a header and a table of `slots` slots of (key hash, tokens, last refill as wall-clock time).
    A key's bucket is looked for in a window of PROBE slots from its hash; a key not there takes an empty
    slot of the window or evicts the one used longest ago, so the file never grows and a flood of new keys
    evicts idle ones. Hashes are 64-bit keyed BLAKE2b, so two keys share a bucket only by a collision that an
    attacker cannot aim at. Updates hold a lock on the file (fcntl, between processes) and a thread lock
    (within one: fcntl locks belong to the process)."""

    MAGIC = b"HTRL0001"
    HEADER = struct.Struct("<8sQ16s")  # magic, slots, hash key
    SLOT = struct.Struct("<Qdd")  # key hash (0 = empty), tokens, last refill
    PROBE = 8

    def __init__(self, path: Path, slots: int) -> None:
        slots = 1 << max(4, math.ceil(math.log2(max(slots, 16))))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                header = os.pread(fd, self.HEADER.size, 0)
                found = self.HEADER.unpack(header) if len(header) == self.HEADER.size else (b"", 0, b"")
                if (found[0] == self.MAGIC and found[1] & (found[1] - 1) == 0 and found[1] >= 16
                        and os.fstat(fd).st_size == self.HEADER.size + found[1] * self.SLOT.size):
                    _, slots, self._hash_key = found  # another worker (or an earlier run) made it
                else:  # new, or not a whole table of ours: a fresh one
                    self._hash_key = os.urandom(16)
                    os.ftruncate(fd, 0)
                    os.ftruncate(fd, self.HEADER.size + slots * self.SLOT.size)
                    os.pwrite(fd, self.HEADER.pack(self.MAGIC, slots, self._hash_key), 0)
                self._map = mmap.mmap(fd, self.HEADER.size + slots * self.SLOT.size)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self.slots = fd, slots

    def _hash(self, key: str) -> int:
        h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8, key=self._hash_key).digest(), "little")
        return h or 1  # 0 marks an empty slot

    def _find(self, h: int) -> tuple[int, float | None, float]:
        """(offset of the key's slot, its tokens or None if the slot is new to the key, its last refill)."""
        base, size, slot = self.HEADER.size, self.SLOT.size, self.SLOT
        first = h & (self.slots - 1)
        free = oldest = -1
        oldest_at = math.inf
        for i in range(self.PROBE):
            offset = base + ((first + i) & (self.slots - 1)) * size
            sh, tokens, last = slot.unpack_from(self._map, offset)
            if sh == h:
                return offset, tokens, last
            if sh == 0:
                if free < 0:
                    free = offset
            elif last < oldest_at:
                oldest, oldest_at = offset, last
        return (free if free >= 0 else oldest), None, 0.0

    def take(self, key: str, cost: float, now: float, rate: float, burst: float) -> float:
        h = self._hash(key)
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                offset, tokens, last = self._find(h)
                tokens = burst if tokens is None else _refilled(tokens, last, now, rate, burst)
                self.SLOT.pack_into(self._map, offset, h, tokens - cost if tokens >= cost else tokens, now)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
        return tokens

    def reset(self, key: str) -> None:
        h = self._hash(key)
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                offset, tokens, _ = self._find(h)
                if tokens is not None:
                    self.SLOT.pack_into(self._map, offset, 0, 0.0, 0.0)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for i in range(self.slots)
                       if self.SLOT.unpack_from(self._map, self.HEADER.size + i * self.SLOT.size)[0])

    def close(self) -> None:
        with self._lock:
            self._map.close()
            os.close(self._fd)


def _refilled(tokens: float, last: float, now: float, rate: float, burst: float) -> float:
    if now < last:  # the clock went back (shared buckets keep wall-clock time across restarts): no refill,
        return tokens  # but no lock-out either, since the next call measures from this one's `now`
    return min(burst, tokens + (now - last) * rate)


class RateLimiter:
    def __init__(self, rate: float, burst: float, max_keys: int = 100_000,
                 clock: Callable[[], float] | None = None, path: Path | str | None = None) -> None:
        """`path`: a file whose buckets every process opening it shares (created if missing); None keeps them
        in this process. `clock` defaults to time.monotonic in process, time.time for a shared file (one
        clock for every process, and across restarts)."""
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate, float(burst)
        self.buckets: MemoryBuckets | SharedBuckets = (
            MemoryBuckets(max_keys) if path is None else SharedBuckets(Path(path), max_keys))
        self.clock = clock or (time.monotonic if path is None else time.time)

    def check(self, key: str, cost: float = 1.0) -> float | None:
        """None if allowed (and the cost is taken), else seconds to wait before retrying."""
        tokens = self.buckets.take(key, cost, self.clock(), self.rate, self.burst)
        if tokens >= cost:
            return None
        return (cost - tokens) / self.rate

    def exhausted(self, key: str) -> float | None:
        """None while `key` has a token left (none is taken), else seconds until it has one: for a check made
        before it is known whether the request will cost this bucket."""
        tokens = self.buckets.take(key, 0.0, self.clock(), self.rate, self.burst)
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))

    def reset(self, key: str) -> None:
        self.buckets.reset(key)
