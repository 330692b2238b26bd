"""Windows for batch checks: tumbling by count or event time, sliding by count or
event time, with exact counts, bounded memory and crash-safe hand-over."""

from __future__ import annotations

import pickle
import random

import pytest

from monitor.windows import Window, WindowBuffer, WindowSpec


def feed(
    buf: WindowBuffer,
    n: int,
    *,
    model: str = "m",
    start: int = 0,
    step_seconds: float = 1.0,
    missing_every: int = 0,
    duplicate_every: int = 0,
    version: str = "v1",
) -> None:
    for i in range(start, start + n):
        pid = i - 1 if duplicate_every and i % duplicate_every == 0 else i
        x = None if missing_every and i % missing_every == 0 else float(i)
        buf.add(model, version, pid, [x], ["a"], 0.5, i * step_seconds, unexpected=i % 7 == 0)


def test_tumbling_by_count_closes_exactly_every_n_rows_in_order() -> None:
    buf = WindowBuffer(specs={"m": WindowSpec(rows=1000, max_rows=300)}, seed=1)
    feed(buf, 3500, missing_every=10, duplicate_every=50)
    assert [w.seq for w in buf.closed] == [0, 1, 2]
    for k, w in enumerate(buf.closed):
        assert w.n == 1000  # exact count, whatever the sample size
        assert len(w.rows) == 300  # the sample stays within max_rows
        assert w.first_time == k * 1000 and w.last_time == k * 1000 + 999
        assert w.missing == [100, 0]
        assert w.duplicates == (19 if k == 0 else 20)  # id 0's "duplicate" -1 is new
        assert w.unexpected == sum(1 for i in range(k * 1000, (k + 1) * 1000) if i % 7 == 0)
        assert all(k * 1000 <= r[3] < (k + 1) * 1000 for r in w.rows)
    open_window = buf.peek("m")
    assert open_window is not None and open_window.n == 500  # the fourth is still filling
    assert buf.take("m") is not None and buf.peek("m") is None


def test_ack_drops_only_the_judged_window_and_is_safe_to_repeat() -> None:
    buf = WindowBuffer(specs={"m": WindowSpec(rows=10)})
    feed(buf, 30)
    buf.ack("m", 1)
    buf.ack("m", 1)
    buf.ack("other", 0)
    assert [w.seq for w in buf.closed] == [0, 2]


def test_closed_windows_survive_a_pickle_round_trip_and_numbering_goes_on() -> None:
    buf = WindowBuffer(specs={"m": WindowSpec(rows=10)}, seed=3)
    feed(buf, 25)
    again: WindowBuffer = pickle.loads(pickle.dumps(buf))
    assert [w.seq for w in again.closed] == [0, 1]
    feed(again, 5, start=25)
    assert [w.seq for w in again.closed] == [0, 1, 2]
    assert again.closed[2].n == 10 and again.closed[2].first_time == 20


def test_tumbling_by_event_time_buckets_align_and_skip_empty_ones() -> None:
    buf = WindowBuffer(specs={"m": WindowSpec(seconds=100.0)})
    for ts in (1005.0, 1050.0, 1099.9, 1100.0, 1150.0, 1420.0):
        buf.add("m", "v1", ts, [ts], ["a"], None, ts, 0)
    windows = [(w.seq, w.n, w.first_time, w.last_time) for w in buf.closed]
    assert windows == [(0, 3, 1005.0, 1099.9), (1, 2, 1100.0, 1150.0)]
    current = buf.peek("m")
    assert current is not None and current.n == 1 and current.first_time == 1420.0
    # A late event (before the open bucket) joins the open window.
    buf.add("m", "v1", "late", [1.0], ["a"], None, 1300.0, 0)
    assert len(buf.closed) == 2 and buf.peek("m").n == 2  # type: ignore[union-attr]


def test_labeled_outcomes_go_to_the_open_window() -> None:
    buf = WindowBuffer(specs={"m": WindowSpec(rows=5)})
    feed(buf, 5)
    buf.add_labeled("m", 1, 0, 0.3, 6.0, 2)
    assert buf.closed[0].n_labeled == 0
    w = buf.peek("m")
    assert w is not None and w.n == 0 and w.n_labeled == 1


@pytest.mark.parametrize(
    "spec",
    [WindowSpec(sliding=True, rows=250), WindowSpec(sliding=True, seconds=300.0, max_rows=10_000)],
    ids=["rows", "seconds"],
)
def test_sliding_window_counts_stay_exact_as_rows_leave(spec: WindowSpec) -> None:
    rng = random.Random(7)
    buf = WindowBuffer(specs={"m": spec}, id_memory=1_000_000)
    # What the window must hold, recounted by brute force: per row
    # (event time, missing?, unexpected keys, duplicate id?, version).
    kept: list[tuple[float, bool, int, bool, str]] = []
    ts = 0.0
    seen_ids: list[int] = []
    for i in range(5000):
        ts += rng.uniform(0.0, 3.0)
        dup = bool(seen_ids) and rng.random() < 0.05
        pid = rng.choice(seen_ids) if dup else i
        seen_ids.append(pid)
        missing = rng.random() < 0.1
        unexpected = rng.choice([0, 0, 0, 1, 2])
        version = "v2" if i > 3000 else "v1"
        buf.add("m", version, pid, [None if missing else 1.0], ["a"], None, ts, unexpected)
        kept.append((ts, missing, unexpected, dup, version))
        if spec.rows is not None:
            kept = kept[-spec.rows :]
        else:
            assert spec.seconds is not None
            kept = [r for r in kept if r[0] > ts - spec.seconds]
        if i % 97 == 0 or i == 4999:
            w = buf.peek("m")
            assert w is not None
            assert w.n == len(kept) == len(w.rows)
            assert w.missing == [sum(r[1] for r in kept), 0]
            assert w.unexpected == sum(r[2] for r in kept)
            assert w.duplicates == sum(r[3] for r in kept)
            assert w.versions == {r[4] for r in kept}
            assert w.first_time == kept[0][0] and w.last_time == ts
    assert {r[4] for r in kept} == {"v2"}  # v1 rows all left the window
    # take() on a sliding window copies it; it stays open.
    assert buf.take("m") is not None and buf.peek("m") is not None


def test_sliding_labeled_keeps_the_newest() -> None:
    buf = WindowBuffer(specs={"m": WindowSpec(sliding=True, rows=3)})
    for i in range(10):
        buf.add_labeled("m", i, i, None, float(i), 1)
    w = buf.peek("m")
    assert w is not None and [x[0] for x in w.labeled] == [7, 8, 9] and w.n_labeled == 3


def test_default_spec_is_the_scheduled_tumbling_window() -> None:
    buf = WindowBuffer(max_rows=100, seed=5)
    feed(buf, 1000)
    assert not buf.closed
    w = buf.take("m")
    assert isinstance(w, Window) and w.n == 1000 and len(w.rows) == 100
    assert buf.take("m") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": 10, "seconds": 5.0}, "rows or seconds, not both"),
        ({"rows": 0}, "must be positive"),
        ({"seconds": -1.0}, "seconds must be positive"),
    ],
)
def test_spec_checks_its_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WindowSpec(**kwargs)  # type: ignore[arg-type]


def test_reopen_puts_a_closed_window_back_with_exact_counts() -> None:
    buf = WindowBuffer(max_rows=50, seed=2)
    feed(buf, 80, missing_every=10)
    closed = buf.close("m", group=7)
    assert closed is not None and closed.group == 7 and closed.n == 80
    feed(buf, 40, start=80, missing_every=10)
    buf.reopen("m", closed.seq)
    buf.reopen("m", closed.seq)  # safe to repeat
    assert buf.closed == []
    w = buf.peek("m")
    assert w is not None and w.n == 120 and w.missing == [12, 0]
    assert len(w.rows) == 50  # thinned back to max_rows
    assert w.first_time == 0 and w.last_time == 119 and w.group is None
