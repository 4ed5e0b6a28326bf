"""Token-bucket rate limiting per key (client id, user name, address), in process.

Each key has a bucket of `burst` tokens refilled at `rate` per second; a request takes one. `check` answers
None (go ahead) or the seconds until a token is available (send 429 with Retry-After). In-process only: with
N worker processes the effective limit is N times higher, which is acceptable for the purpose here (slowing
password guessing and runaway clients); a shared limit belongs in front of the server.
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: float, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.max_keys, self.clock = rate, float(burst), max_keys, clock
        # key -> (tokens, last refill time); ordered by last use so the idlest key is evicted first and an
        # attacker cycling keys cannot grow memory without bound.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str, cost: float = 1.0) -> float | None:
        """None if allowed (and the cost is taken), else seconds to wait before retrying."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                allowed = True
            else:
                self._buckets[key] = (tokens, now)
                allowed = False
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        if allowed:
            return None
        return (cost - tokens) / self.rate

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))

    def reset(self, key: str) -> None:
        with self._lock:
            self._buckets.pop(key, None)
