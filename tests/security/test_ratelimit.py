from __future__ import annotations

import pytest

from healthtwin.security.ratelimit import RateLimiter


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_bucket_burst_refill_and_retry_after():
    clock = Clock()
    rl = RateLimiter(rate=2, burst=3, clock=clock)
    assert [rl.check("a") for _ in range(3)] == [None, None, None]
    wait = rl.check("a")
    assert wait == pytest.approx(0.5)
    assert rl.check("b") is None  # keys are independent
    clock.t += 0.5
    assert rl.check("a") is None and rl.check("a") is not None
    clock.t += 100
    assert [rl.check("a") for _ in range(4)][-1] is not None  # refill is capped at the burst
    assert RateLimiter.retry_after_header(0.01) == "1" and RateLimiter.retry_after_header(2.2) == "3"


def test_memory_is_bounded():
    rl = RateLimiter(rate=1, burst=1, max_keys=100, clock=Clock())
    for i in range(10_000):
        rl.check(f"k{i}")
    assert len(rl._buckets) == 100


def test_invalid_configuration():
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
