"""The join buffer: either side first, TTL in event time, bounded size."""

from __future__ import annotations

from monitor.join import JoinBuffer


def test_prediction_then_outcome() -> None:
    j: JoinBuffer[str, str] = JoinBuffer(ttl_seconds=100, max_size=10)
    assert j.add_prediction("a", 0.0, "P") is None
    assert j.add_outcome("a", 5.0, "O") == "P"
    assert j.stats.matched == 1
    assert len(j) == 0


def test_outcome_then_prediction() -> None:
    j: JoinBuffer[str, str] = JoinBuffer(ttl_seconds=100, max_size=10)
    assert j.add_outcome("a", 5.0, "O") is None
    assert j.add_prediction("a", 4.0, "P") == "O"
    assert len(j) == 0


def test_ttl_expiry_counts_expired_and_orphans() -> None:
    j: JoinBuffer[str, str] = JoinBuffer(ttl_seconds=10, max_size=100)
    j.add_prediction("p-old", 0.0, "P")
    j.add_outcome("o-old", 1.0, "O")
    j.add_prediction("p-new", 20.0, "P")  # watermark 20: everything before 10 expires
    assert j.stats.expired_predictions == 1
    assert j.stats.orphan_outcomes == 1
    assert len(j) == 1
    assert j.add_outcome("p-old", 21.0, "O") is None  # too late: becomes an orphan candidate
    assert j.waiting_outcomes == 1


def test_max_size_evicts_oldest_and_stays_bounded() -> None:
    j: JoinBuffer[int, int] = JoinBuffer(ttl_seconds=1e9, max_size=50)
    for i in range(10_000):
        j.add_prediction(i, float(i), i)
        if i % 3 == 0:
            j.add_outcome(-i - 1, float(i), i)  # outcomes with no prediction
        assert len(j) <= 50
    assert j.stats.overflow_evictions > 0
    assert j.stats.expired_predictions + j.stats.orphan_outcomes == j.stats.overflow_evictions
    # the newest prediction is still there
    assert j.add_outcome(9999, 1e4, 0) == 9999


def test_duplicate_outcome_counted() -> None:
    j: JoinBuffer[str, str] = JoinBuffer(ttl_seconds=100, max_size=10)
    j.add_outcome("a", 1.0, "O")
    assert j.add_outcome("a", 2.0, "O2") is None
    assert j.stats.duplicate_outcomes == 1
