from __future__ import annotations

import multiprocessing
import os

import pytest

from healthtwin.security.ratelimit import RateLimiter, SharedBuckets


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
    assert len(rl.buckets) == 100


def test_invalid_configuration():
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)


# -- buckets shared through a file by the server's worker processes -------------------------------------------
def test_limiters_on_one_file_share_each_bucket(tmp_path):
    clock = Clock()
    a = RateLimiter(rate=2, burst=5, clock=clock, path=tmp_path / "api.buckets")
    b = RateLimiter(rate=2, burst=5, clock=clock, path=tmp_path / "api.buckets")
    assert [a.check("client") for _ in range(3)] == [None] * 3
    assert [b.check("client") for _ in range(2)] == [None] * 2
    assert a.check("client") == pytest.approx(0.5) and b.check("client") == pytest.approx(0.5)
    assert b.check("other") is None  # keys stay independent
    clock.t += 1.0  # two tokens back, seen by both
    assert a.check("client") is None and b.check("client") is None and a.check("client") is not None
    b.reset("client")
    assert a.check("client") is None


def _drain(path: str, key: str, n: int, out) -> None:
    rl = RateLimiter(rate=0.001, burst=10, path=path)
    out.put(sum(rl.check(key) is None for _ in range(n)))


def test_processes_share_the_limit(tmp_path):
    """What `serve --workers N` needs: requests landing on different processes draw on one bucket."""
    path = str(tmp_path / "api.buckets")
    ctx = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
    out = ctx.Queue()
    procs = [ctx.Process(target=_drain, args=(path, "client", 8, out)) for _ in range(3)]
    for p in procs:
        p.start()
    allowed = sum(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert allowed == 10  # 24 asked across three processes; per-process buckets would have allowed 24
    assert RateLimiter(rate=0.001, burst=10, path=path).check("client") is not None


def test_shared_buckets_survive_a_restart_and_a_clock_going_back(tmp_path):
    clock = Clock()
    first = RateLimiter(rate=1, burst=2, clock=clock, path=tmp_path / "login.buckets")
    assert first.check("user:x") is None and first.check("user:x") is None and first.check("user:x") is not None
    first.buckets.close()
    again = RateLimiter(rate=1, burst=2, clock=clock, path=tmp_path / "login.buckets")  # a restarted server
    assert again.check("user:x") is not None  # a restart hands no fresh allowance
    clock.t -= 3600  # wall clock set back an hour: no refill, and no lock-out either
    assert again.check("user:x") is not None
    clock.t += 1
    assert again.check("user:x") is None


def test_shared_file_is_bounded_private_and_evicts_the_idlest(tmp_path):
    clock = Clock()
    path = tmp_path / "api.buckets"
    rl = RateLimiter(rate=1, burst=1, max_keys=64, clock=clock, path=path)
    size = path.stat().st_size
    for i in range(5_000):
        clock.t += 0.001
        rl.check(f"k{i}")
    assert path.stat().st_size == size and len(rl.buckets) <= 64
    assert rl.check("k4999") is not None  # the newest keys are still there
    assert os.stat(path).st_mode & 0o077 == 0


@pytest.mark.parametrize("damage", ["foreign", "truncated"])
def test_a_foreign_or_damaged_file_is_replaced_not_trusted(tmp_path, damage):
    path = tmp_path / "api.buckets"
    if damage == "foreign":
        path.write_bytes(b"not a bucket table")
    else:
        RateLimiter(rate=1, burst=1, max_keys=64, path=path).buckets.close()
        path.write_bytes(path.read_bytes()[:100])
    rl = RateLimiter(rate=1, burst=1, max_keys=64, path=path)
    assert rl.check("a") is None and rl.check("a") is not None
    assert path.read_bytes()[:8] == SharedBuckets.MAGIC and path.stat().st_size > 100


def test_two_server_workers_enforce_one_limit(tmp_path):
    """`serve --workers 2`: fresh connections land on either worker, and together they get the burst once."""
    import time
    import urllib.error
    import urllib.request

    from ..conftest import serving
    with serving(tmp_path, "--data-dir", str(tmp_path / "data"), "--workers", "2", "--insecure-open",
                 "--rate-limit", "0.01,6") as (_, port):
        time.sleep(2)  # both workers up (/health answered from one of them)
        statuses = []
        for _ in range(30):  # a new connection each time: the kernel hands it to either worker
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/fhir/Patient?_count=1", timeout=10) as r:
                    statuses.append(r.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
                if exc.code == 429:
                    assert int(exc.headers["retry-after"]) >= 1
    assert statuses.count(200) == 6 and statuses.count(429) == 24, statuses
