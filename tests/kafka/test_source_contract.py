"""The Kafka source contract, one suite for every backend.

Each test runs on the in-memory double, on kafka-python and on confluent-kafka
(the last two against a real Tansu broker on 127.0.0.1; see conftest.py).
Every wait has a deadline; a test that cannot finish fails, it never hangs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pytest

from connectors.base import OUTCOMES, PREDICTIONS, Record
from connectors.kafka_backend import Fetched
from connectors.kafka_source import REASON_HEADER, Backpressure, DeadLetterProducer, KafkaSource

if TYPE_CHECKING:
    from tests.kafka.conftest import Harness, PositionStore

# kafka-python 3.0 loads its protocol schemas with a deprecated importlib API.
pytestmark = pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning")

JOIN = 30.0  # seconds allowed for a group join plus the first records (Tansu: ~3 s)
ALL = frozenset(range(4))


def values(tag: str, partition: int, n: int, first: int = 0) -> list[bytes]:
    return [f'{{"id":"{tag}-{partition}-{i}"}}'.encode() for i in range(first, first + n)]


def by_partition(records: Sequence[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        out[r.partition].append(r)
    return out


def collect(into: list[Record]) -> Callable[[int, list[Record]], None]:
    return lambda _i, records: into.extend(records)


def test_consumes_every_record_in_order_with_shard_and_offset(harness: Harness) -> None:
    preds, outs = harness.topics()
    harness.produce(preds, {p: values("p", p, 25) for p in range(4)})
    harness.produce(outs, {p: values("o", p, 10) for p in range(4)})
    src = harness.source([preds, outs])
    got: list[Record] = []

    assert harness.poll_until([src], lambda: len(got) >= 140, JOIN, sink=collect(got), settle=0.5)

    assert len(got) == 140
    parts = by_partition(got)
    for p in range(4):
        for topic, stream, tag, n in ((preds, PREDICTIONS, "p", 25), (outs, OUTCOMES, "o", 10)):
            records = parts[f"kafka:{topic}:{p}"]
            assert [r.offset for r in records] == list(range(n))
            assert [r.value for r in records] == values(tag, p, n)
            assert {(r.stream, r.shard) for r in records} == {(stream, p)}
    assert src.ready()
    assert src.partitions() == {f"kafka:{t}:{p}" for t in (preds, outs) for p in range(4)}


def test_seeks_to_start_and_stored_positions_without_loss_or_duplicates(harness: Harness) -> None:
    preds, outs = harness.topics()
    harness.produce(preds, {p: values("p", p, 20) for p in range(4)})
    harness.produce(outs, {p: values("o", p, 20) for p in range(4)})
    # open(start) seeks the predictions; positions_for the outcomes (the first
    # assignment also asks the store); outcomes partition 3 has no stored
    # position and starts at the beginning (auto_offset_reset=earliest).
    start = {f"kafka:{preds}:{p}": 3 + p for p in range(4)}
    store = harness.store({f"kafka:{outs}:{p}": 10 + p for p in range(3)})
    first = {**start, **store.positions, f"kafka:{outs}:3": 0}
    expected = sum(20 - o for o in first.values())
    src = harness.source([preds, outs], start=start, store=store)
    got: list[Record] = []

    assert harness.poll_until(
        [src], lambda: len(got) >= expected, JOIN, sink=collect(got), settle=0.5
    )

    assert len(got) == expected
    for name, records in by_partition(got).items():
        assert [r.offset for r in records] == list(range(first[name], 20)), name


def test_commit_then_a_new_member_resumes_from_committed_offsets(harness: Harness) -> None:
    preds, outs = harness.topics()
    harness.produce(preds, {p: values("p", p, 20) for p in range(4)})
    settings = harness.settings()
    one = harness.source([preds, outs], settings=settings)
    got: list[Record] = []
    assert harness.poll_until([one], lambda: len(got) >= 80, JOIN, sink=collect(got))
    one.commit({f"kafka:{preds}:{p}": 12 + p for p in range(4)})
    one.close()

    # Same group, nothing in the store: the committed offsets decide.
    two = harness.source([preds, outs], settings=settings)
    again: list[Record] = []
    expected = sum(20 - (12 + p) for p in range(4))
    assert harness.poll_until(
        [two], lambda: len(again) >= expected, JOIN, sink=collect(again), settle=0.5
    )
    assert len(again) == expected
    for p in range(4):
        records = by_partition(again)[f"kafka:{preds}:{p}"]
        assert [r.offset for r in records] == list(range(12 + p, 20))


def _daemon_sink(
    sources: list[KafkaSource], store: PositionStore, delivered: dict[int, list[Record]]
) -> Callable[[int, list[Record]], None]:
    """Process, checkpoint and commit every batch at once, like the daemon."""

    def sink(i: int, records: list[Record]) -> None:
        delivered[i].extend(records)
        store.advance(records)
        sources[i].commit(store.positions)

    return sink


def test_two_members_split_shards_without_overlap_or_loss(harness: Harness) -> None:
    preds, outs = harness.topics()
    harness.produce(preds, {p: values("p", p, 100) for p in range(4)})
    harness.produce(outs, {p: values("o", p, 100) for p in range(4)})
    settings, store = harness.settings(), harness.store()
    a_events, b_events = harness.events(), harness.events()
    delivered: dict[int, list[Record]] = {0: [], 1: []}
    sources: list[KafkaSource] = []
    sink = _daemon_sink(sources, store, delivered)
    sources.append(harness.source([preds, outs], settings=settings, store=store, listener=a_events))
    assert harness.poll_until(sources, lambda: bool(delivered[0]), JOIN, sink=sink, batch=1)
    sources.append(harness.source([preds, outs], settings=settings, store=store, listener=b_events))

    # Read slowly until the group has split, then drain.
    def split() -> bool:
        a, b = a_events.held(), b_events.held()
        return bool(a and b and a | b == ALL)

    assert harness.poll_until(sources, split, JOIN, sink=sink, batch=1, pace=0.02)
    assert harness.poll_until(
        sources,
        lambda: len(delivered[0]) + len(delivered[1]) >= 800,
        JOIN,
        sink=sink,
        settle=1.0,
    )

    keys = [(r.partition, r.offset) for r in delivered[0] + delivered[1]]
    assert len(keys) == len(set(keys)) == 800  # nothing lost, nothing twice
    a_shards, b_shards = a_events.held(), b_events.held()
    assert a_shards.isdisjoint(b_shards) and a_shards | b_shards == ALL
    assert {r.shard for r in delivered[1]} <= b_shards
    for src, shards in zip(sources, (a_shards, b_shards), strict=True):
        # Co-partitioning: a member holds partition n of both topics or neither.
        assert src.partitions() == {f"kafka:{t}:{n}" for t in (preds, outs) for n in shards}


def test_rebalance_listener_reports_lost_and_gained_shards(harness: Harness) -> None:
    preds, outs = harness.topics()
    harness.produce(preds, {p: values("p", p, 20) for p in range(4)})
    settings = harness.settings()
    a_store, a_events, b_events = harness.store(), harness.events(), harness.events()
    sources: list[KafkaSource] = []
    got: dict[int, list[Record]] = {0: [], 1: []}

    def a_listener(lost: frozenset[int], gained: frozenset[int]) -> None:
        a_events(lost, gained)
        if lost:  # the daemon checkpoints lost shards here; commit them to the group too
            sources[0].commit(a_store.positions)

    def sink(i: int, records: list[Record]) -> None:
        got[i].extend(records)
        if i == 0:
            a_store.advance(records)  # processed, not committed yet

    sources.append(harness.source([preds, outs], settings=settings, store=a_store,
                                  listener=a_listener))  # fmt: skip
    assert harness.poll_until(sources, lambda: len(got[0]) >= 80, JOIN, sink=sink)
    assert a_events.calls[0] == (frozenset(), ALL)

    # b has a store of its own, empty: it starts where a committed while losing.
    sources.append(harness.source([preds, outs], settings=settings, listener=b_events))
    assert harness.poll_until(
        sources,
        lambda: bool(b_events.held()) and a_events.held() | b_events.held() == ALL,
        JOIN,
        sink=sink,
        settle=1.0,
    )
    moved = b_events.held()
    assert moved and moved.isdisjoint(a_events.held())
    lost_by_a = frozenset().union(*(lost for lost, _ in a_events.calls))
    assert moved <= lost_by_a  # reported lost before b could read them
    assert got[1] == []  # nothing read twice

    sources[1].close()
    assert harness.poll_until(sources[:1], lambda: a_events.held() == ALL, JOIN)
    assert moved <= a_events.calls[-1][1]  # gained back


def test_backpressure_pauses_partitions_instead_of_buffering(harness: Harness) -> None:
    preds, outs = harness.topics()
    harness.produce(preds, {p: values("p", p, 50) for p in range(4)})
    src = harness.source(
        [preds, outs], backpressure=Backpressure(max_in_flight_records=30, resume_fraction=0.5)
    )
    got: list[Record] = []
    assert harness.poll_until([src], lambda: len(got) >= 30, JOIN, sink=collect(got))
    harness.poll_until([src], lambda: False, 1.5, sink=collect(got))  # nothing acknowledged
    assert len(got) == 30 and src.in_flight() == 30 and src.paused

    positions: dict[str, int] = {}
    peak = 0

    def ack(_i: int, records: list[Record]) -> None:
        nonlocal peak
        got.extend(records)
        peak = max(peak, src.in_flight())
        for r in records:
            positions[r.partition] = r.offset + 1
        src.commit(positions)

    for r in got:
        positions[r.partition] = r.offset + 1
    src.commit(positions)
    assert not src.paused and src.in_flight() == 0
    assert harness.poll_until([src], lambda: len(got) >= 200, JOIN, sink=ack, settle=0.5)
    assert peak <= 30
    keys = [(r.partition, r.offset) for r in got]
    assert len(keys) == len(set(keys)) == 200
    for p in range(4):
        assert [r.offset for r in by_partition(got)[f"kafka:{preds}:{p}"]] == list(range(50))


def stamped(tag: str, partition: int, times: Sequence[int]) -> list[bytes]:
    return [f'{{"id":"{tag}-{partition}-{t}","timestamp":{t}}}'.encode() for t in times]


def test_each_shard_sees_its_two_partitions_merged_by_event_time(harness: Harness) -> None:
    # All predictions are produced before any outcome, and fetches interleave
    # as they will: a shard still sees one event-time order, predictions first
    # on ties, whatever the batch size.
    preds, outs = harness.topics()
    harness.produce(preds, {p: stamped("p", p, range(0, 60, 2)) for p in range(4)})
    harness.produce(outs, {p: stamped("o", p, range(1, 61, 2)) for p in range(3)})
    harness.produce(outs, {3: stamped("o", 3, range(0, 60, 2))})  # ties with predictions
    src = harness.source([preds, outs])
    got: list[Record] = []

    assert harness.poll_until(
        [src], lambda: len(got) >= 240, JOIN, sink=collect(got), batch=7, settle=0.5
    )

    assert len(got) == 240
    for p in range(4):
        seen = [
            (int(r.value.split(b'"timestamp":')[1][:-1]), r.stream) for r in got if r.shard == p
        ]
        expect = sorted(seen, key=lambda s: (s[0], s[1] == OUTCOMES))
        assert seen == expect, f"shard {p} out of event-time order"
        assert len(seen) == 60


def test_a_silent_outcomes_partition_holds_nothing_back(harness: Harness) -> None:
    # The outcomes topic is empty: once the client knows a partition has
    # nothing to give, predictions flow at once (no merge wait to sit out).
    preds, outs = harness.topics()
    harness.produce(preds, {p: stamped("p", p, range(25)) for p in range(4)})
    src = harness.source([preds, outs], merge_wait_seconds=3600.0)
    got: list[Record] = []

    assert harness.poll_until([src], lambda: len(got) >= 100, JOIN, sink=collect(got))
    assert sorted((r.shard, r.offset) for r in got) == [(p, i) for p in range(4) for i in range(25)]


def test_lag_is_fetch_highwater_minus_next_offset(harness: Harness) -> None:
    preds, outs = harness.topics()
    harness.produce(preds, {p: values("p", p, 20) for p in range(4)})
    src = harness.source([preds, outs])
    got: list[Record] = []
    names = [f"kafka:{preds}:{p}" for p in range(4)]

    # One record per poll: the clients have fetched more than they handed out.
    assert harness.poll_until(
        [src], lambda: all(n in src.lag() for n in names), JOIN, sink=collect(got), batch=1
    )
    nxt = dict.fromkeys(names, 0)
    for r in got:
        nxt[r.partition] = r.offset + 1
    lag = src.lag()
    assert {n: lag[n] for n in names} == {n: 20 - nxt[n] for n in names}
    assert sum(lag[n] for n in names) == 80 - len(got) > 0
    assert all(lag.get(f"kafka:{outs}:{p}", 0) == 0 for p in range(4))  # an empty topic


def test_broker_outage_ready_goes_false_then_true_and_reading_resumes(
    restart_harness: Harness,
) -> None:
    h = restart_harness
    preds, outs = h.topics()
    h.produce(preds, {p: values("a", p, 40) for p in range(4)})
    store, events = h.store(), h.events()
    sources: list[KafkaSource] = []
    delivered: dict[int, list[Record]] = {0: []}
    sources.append(h.source([preds, outs], store=store, listener=events))
    sink = _daemon_sink(sources, store, delivered)
    src = sources[0]
    assert h.poll_until(sources, lambda: len(delivered[0]) >= 160, JOIN, sink=sink)
    assert src.ready()

    h.stop_broker()
    assert h.poll_until(sources, lambda: not src.ready(), 20, sink=sink)
    h.start_broker()
    if h.real:  # Tansu keeps topics in memory: make them again, before any client may
        h.create_topics([preds, outs])
    assert h.poll_until(sources, src.ready, 30, sink=sink)

    # Reading resumes at the positions in the daemon's store (40 per partition).
    # The double keeps its log, so offsets 40.. are new records. Tansu lost its
    # log and the group's committed offsets: write 50 records again (offsets
    # 0..49) and only 40..49 must come, sought from the store.
    h.reset_producer()
    again = 50 if h.real else 10
    first = 40 if h.real else 0
    h.produce(preds, {p: values("b", p, again) for p in range(4)})
    before = len(delivered[0])
    assert h.poll_until(
        sources, lambda: len(delivered[0]) >= before + 40, JOIN, sink=sink, settle=1.0
    )
    after = delivered[0][before:]
    assert len(after) == 40
    for p in range(4):
        records = by_partition(after)[f"kafka:{preds}:{p}"]
        assert [r.offset for r in records] == list(range(40, 50))
        assert [r.value for r in records] == values("b", p, 10, first=first)
    assert events.held() == ALL


def test_source_opened_while_the_broker_is_down_connects_when_it_comes(
    restart_harness: Harness,
) -> None:
    h = restart_harness
    preds, outs = h.topics()
    h.stop_broker()
    began = time.monotonic()
    src = h.source([preds, outs])  # does not raise; bounded by the connect timeout
    assert time.monotonic() - began < 12
    assert not src.ready()
    began = time.monotonic()
    assert src.poll(100, 0.2) == []
    assert time.monotonic() - began < 12
    assert not src.ready()

    h.start_broker()
    if h.real:  # Tansu lost the topics
        h.create_topics([preds, outs])
    h.reset_producer()
    h.produce(preds, {p: values("p", p, 5) for p in range(4)})
    got: list[Record] = []
    assert h.poll_until([src], lambda: len(got) >= 20, JOIN, sink=collect(got), settle=0.5)
    assert len(got) == 20 and src.ready()


def test_dead_letter_topic_gets_raw_value_and_reason_header(harness: Harness) -> None:
    (dlq,) = harness.topics(1)
    settings = harness.settings()
    producer = None if harness.real else harness.producer()  # real: built from the settings
    dead = DeadLetterProducer(settings, dlq, producer=producer)
    sent = [
        (b'{"prediction_id": "p1", "score": ', "invalid JSON"),
        (b"\xff\xfe not UTF-8", "not UTF-8"),
        (b'{"prediction_id": "p3"}', "missing field: model"),
    ]
    for i, (value, reason) in enumerate(sent):
        dead.send(value, reason, source=f"kafka:preds:{i}", offset=100 + i)
    dead.flush(15)
    dead.close()

    consumer = harness.consumer(settings)
    consumer.subscribe([dlq], lambda tps: None, lambda tps: None)
    got: list[Fetched] = []
    deadline = time.monotonic() + JOIN
    while len(got) < 3 and time.monotonic() < deadline:
        got.extend(consumer.poll_batch(100, 0.2))

    assert len(got) == 3
    seen = {}
    for f in got:
        headers = dict(f.headers)
        seen[f.value] = (headers[REASON_HEADER].decode(), headers["driftd-offset"])
    assert seen == {v: (r, str(100 + i).encode()) for i, (v, r) in enumerate(sent)}
