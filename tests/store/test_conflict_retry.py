"""A transaction PostgreSQL cancels in a deadlock runs again (store/faults.again_on_conflict), on a real server:
two writers that lock the same two rows in opposite orders meet in a real deadlock on their first run, and
both still commit once each; without the second run one of them answers 503."""
from __future__ import annotations

import threading

import pytest

from healthtwin.store.faults import Unavailable, again_on_conflict
from tests.conftest import make_store


@pytest.fixture
def pg(tmp_path):
    s = make_store("postgres", tmp_path)
    with s.transaction() as tx:
        tx.execute("CREATE TABLE counters (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        tx.execute("INSERT INTO counters (k, v) VALUES (1, 0), (2, 0)")
    yield s
    s.close()


def _opposite_writers(store, attempts: int) -> tuple[list[int], list[BaseException]]:
    """Two threads: each bumps row `first`, waits until the other has bumped its row (so the next lock must
    wait on the other: a ring PostgreSQL breaks by cancelling one), then bumps the other row."""
    met = threading.Barrier(2, timeout=30)
    runs, faults = [0, 0], []

    def writer(n: int, first: int, second: int) -> None:
        def work() -> None:
            runs[n] += 1
            with store.transaction() as tx:
                tx.execute("UPDATE counters SET v = v + 1 WHERE k = ?", (first,))
                if runs[n] == 1:
                    met.wait()
                tx.execute("UPDATE counters SET v = v + 1 WHERE k = ?", (second,))
        try:
            again_on_conflict(work, attempts=attempts)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            faults.append(exc)

    threads = [threading.Thread(target=writer, args=(0, 1, 2)), threading.Thread(target=writer, args=(1, 2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return runs, faults


def _values(store) -> list[int]:
    with store.transaction() as tx:
        return [v for (v,) in tx.execute("SELECT v FROM counters ORDER BY k")]


def test_a_transaction_cancelled_in_a_deadlock_runs_again_and_commits_once(pg):
    runs, faults = _opposite_writers(pg, attempts=4)
    assert faults == []
    assert sorted(runs) == [1, 2]  # the one PostgreSQL cancelled ran a second time, the other once
    assert _values(pg) == [2, 2]  # each writer's two bumps, once: the cancelled first run left nothing


def test_with_one_attempt_the_cancelled_writer_answers_a_conflict(pg):
    runs, faults = _opposite_writers(pg, attempts=1)
    assert runs == [1, 1] and len(faults) == 1
    assert isinstance(faults[0], Unavailable) and faults[0].conflict and faults[0].status == 503
    assert _values(pg) == [1, 1]  # only the winner's bumps


def test_other_faults_are_not_run_again():
    calls = []

    def lost() -> None:
        calls.append(1)
        raise Unavailable(503, "lost", "transient", lost=True)
    with pytest.raises(Unavailable):
        again_on_conflict(lost)
    assert calls == [1]
