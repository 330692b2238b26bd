"""An in-memory broker double implementing the consumer and producer backend contracts.

For fast unit tests of :class:`~connectors.kafka_source.KafkaSource` and the
daemon: topics with N partitions, consumer groups with the *eager* protocol
(every member gives up its partitions before any member gets new ones) and
range assignment, committed offsets, seek, pause, high watermarks, and an
outage switch (:meth:`MemoryBroker.stop` / :meth:`MemoryBroker.start`) that
keeps the data, like a real broker with durable storage.

Everything happens inside the members' ``poll_batch`` calls, so a test drives
several members from one thread deterministically. Thread-safe (one lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from connectors.kafka_backend import (
    BackendError,
    ConsumerBackend,
    Fetched,
    Headers,
    PartitionsCallback,
    ProducerBackend,
    TopicPartition,
)


def _noop(tps: list[TopicPartition]) -> None:
    pass


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    generation: int = 0
    # Members that still hold partitions of an older generation.
    revoking: set[int] = field(default_factory=set)
    plan: dict[int, list[TopicPartition]] = field(default_factory=dict)


class MemoryBroker:
    """Topics, logs, groups and committed offsets, all in memory."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._logs: dict[str, list[list[tuple[bytes, Headers]]]] = {}
        self._groups: dict[str, _Group] = {}
        self._committed: dict[tuple[str, TopicPartition], int] = {}
        self._running = True
        self._next_member = 0

    # -- administration ----------------------------------------------------------
    def create_topic(self, name: str, partitions: int) -> None:
        """Create ``name`` with ``partitions`` empty partitions. Safe to repeat."""
        with self._cond:
            self._logs.setdefault(name, [[] for _ in range(partitions)])
            for group in self._groups.values():
                self._rebalance(group)

    def partitions(self, topic: str) -> int:
        with self._cond:
            return len(self._logs.get(topic, ()))

    @property
    def running(self) -> bool:
        return self._running

    def stop(self) -> None:
        """Simulate an outage: clients see no broker until :meth:`start`. Data,
        groups and committed offsets are kept."""
        with self._cond:
            self._running = False

    def start(self) -> None:
        with self._cond:
            self._running = True
            self._cond.notify_all()

    # -- data --------------------------------------------------------------------
    def produce(
        self, topic: str, value: bytes, partition: int | None = None, headers: Headers = ()
    ) -> int:
        """Append one record; returns its offset. Partition defaults to 0."""
        with self._cond:
            if not self._running:
                raise BackendError("broker unreachable")
            log = self._logs[topic][partition or 0]
            log.append((value, tuple(headers)))
            self._cond.notify_all()
            return len(log) - 1

    def read(self, topic: str, partition: int) -> list[tuple[bytes, Headers]]:
        """A copy of one partition's log (for assertions)."""
        with self._cond:
            return list(self._logs[topic][partition])

    def highwater(self, tp: TopicPartition) -> int:
        with self._cond:
            return len(self._logs[tp.topic][tp.partition])

    def committed(self, group_id: str, tp: TopicPartition) -> int | None:
        with self._cond:
            return self._committed.get((group_id, tp))

    def consumer(self, group_id: str, auto_offset_reset: str = "earliest") -> MemoryConsumer:
        """A new group member (it joins on :meth:`MemoryConsumer.subscribe`).
        Raises :class:`BackendError` while the broker is stopped, like a real
        client that cannot bootstrap."""
        with self._cond:
            if not self._running:
                raise BackendError("broker unreachable")
            self._next_member += 1
            return MemoryConsumer(self, group_id, self._next_member, auto_offset_reset)

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    # -- group protocol (called with the lock held) --------------------------------
    def _rebalance(self, group: _Group) -> None:
        group.generation += 1
        group.revoking = {m.member_id for m in group.members if m._held}
        group.plan = self._range_assign(group)

    def _range_assign(self, group: _Group) -> dict[int, list[TopicPartition]]:
        members = sorted(group.members, key=lambda m: m.member_id)
        plan: dict[int, list[TopicPartition]] = {m.member_id: [] for m in members}
        topics = sorted({t for m in members for t in m._topics if t in self._logs})
        for topic in topics:
            subscribed = [m for m in members if topic in m._topics]
            n = len(self._logs[topic])
            per, extra = divmod(n, len(subscribed))
            start = 0
            for i, m in enumerate(subscribed):
                count = per + (1 if i < extra else 0)
                plan[m.member_id].extend(
                    TopicPartition(topic, p) for p in range(start, start + count)
                )
                start += count
        return plan

    def _join(self, member: MemoryConsumer) -> None:
        group = self._groups.setdefault(member.group_id, _Group())
        group.members.append(member)
        self._rebalance(group)

    def _leave(self, member: MemoryConsumer) -> None:
        group = self._groups.get(member.group_id)
        if group is not None and member in group.members:
            group.members.remove(member)
            self._rebalance(group)


class MemoryConsumer(ConsumerBackend):
    """One member of a :class:`MemoryBroker` group. Follows the backend contract."""

    def __init__(self, broker: MemoryBroker, group_id: str, member_id: int, reset: str) -> None:
        self._broker = broker
        self.group_id = group_id
        self.member_id = member_id
        self._reset = reset
        self._topics: tuple[str, ...] = ()
        self._held: list[TopicPartition] = []
        self._generation = 0
        self._positions: dict[TopicPartition, int] = {}
        self._fetched_hw: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._on_assign: PartitionsCallback = _noop
        self._on_revoke: PartitionsCallback = _noop
        self._closed = False

    def subscribe(
        self, topics: Sequence[str], on_assign: PartitionsCallback, on_revoke: PartitionsCallback
    ) -> None:
        self._topics, self._on_assign, self._on_revoke = tuple(topics), on_assign, on_revoke
        with self._broker._cond:
            self._broker._join(self)

    def _step_group(self) -> None:
        """Advance the eager protocol by one step for this member (lock held)."""
        group = self._broker._groups.get(self.group_id)
        if group is None or self._generation == group.generation:
            return
        if self.member_id in group.revoking:
            group.revoking.discard(self.member_id)
            self._on_revoke(list(self._held))  # still owned: it may commit them
            self._held = []
            self._positions.clear()
            self._fetched_hw.clear()
            self._paused.clear()
            return
        if group.revoking:  # others still hold partitions: wait (as a JoinGroup would)
            return
        self._generation = group.generation
        self._held = list(group.plan.get(self.member_id, []))
        for tp in self._held:
            committed = self._broker._committed.get((self.group_id, tp))
            if committed is None:
                committed = (
                    0
                    if self._reset == "earliest"
                    else len(self._broker._logs[tp.topic][tp.partition])
                )
            self._positions[tp] = committed
        if self._held:
            self._on_assign(list(self._held))

    def poll_batch(self, max_records: int, timeout: float) -> list[Fetched]:
        if self._closed:
            raise BackendError("consumer closed")
        deadline = time.monotonic() + max(0.0, timeout)
        cond = self._broker._cond
        with cond:
            while True:
                if self._broker._running:
                    self._step_group()
                    out = self._fetch(max_records)
                    if out:
                        return out
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                cond.wait(min(left, 0.05))

    def _fetch(self, max_records: int) -> list[Fetched]:
        out: list[Fetched] = []
        logs = self._broker._logs
        for tp in self._held:
            log = logs[tp.topic][tp.partition]
            self._fetched_hw[tp] = len(log)
            if tp in self._paused:
                continue
            pos = self._positions[tp]
            if pos > len(log):  # out of range: reset like a client would
                pos = 0 if self._reset == "earliest" else len(log)
            end = min(len(log), pos + max_records - len(out))
            for offset in range(pos, end):
                value, headers = log[offset]
                out.append(Fetched(tp.topic, tp.partition, offset, value, headers))
            self._positions[tp] = max(pos, end)
            if len(out) >= max_records:
                break
        return out

    def seek(self, topic: str, partition: int, offset: int) -> None:
        tp = TopicPartition(topic, partition)
        if tp in self._positions:
            self._positions[tp] = offset

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        self._paused.update(tp for tp in partitions if tp in self._positions)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> frozenset[TopicPartition]:
        return frozenset(self._paused)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._held)

    def position(self, topic: str, partition: int) -> int | None:
        return self._positions.get(TopicPartition(topic, partition))

    def highwater(self, topic: str, partition: int) -> int | None:
        return self._fetched_hw.get(TopicPartition(topic, partition))

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        with self._broker._cond:
            if not self._broker._running:
                raise BackendError("broker unreachable")
            for tp, offset in offsets.items():
                if tp not in self._held:
                    raise BackendError(f"commit for {tp} which this member does not own")
                self._broker._committed[(self.group_id, tp)] = offset

    def connected(self) -> bool:
        return self._broker._running and not self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._broker._cond:
                self._broker._leave(self)


class MemoryProducer(ProducerBackend):
    """Sends to a :class:`MemoryBroker`: records wait in the producer until
    :meth:`flush` reaches a running broker. Without a partition, the key picks one
    (partition 0 without a key)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._queue: list[tuple[str, bytes, Headers, bytes | None, int | None]] = []

    def send(
        self,
        topic: str,
        value: bytes,
        headers: Headers = (),
        key: bytes | None = None,
        partition: int | None = None,
    ) -> None:
        self._queue.append((topic, value, tuple(headers), key, partition))

    def flush(self, timeout: float) -> None:
        while self._queue:
            topic, value, headers, key, partition = self._queue[0]
            n = self._broker.partitions(topic)
            if n == 0:
                raise BackendError(f"unknown topic {topic}")
            if partition is None:
                partition = 0 if key is None else sum(key) % n
            self._broker.produce(topic, value, partition, headers)  # raises while stopped
            self._queue.pop(0)

    def close(self) -> None:
        self._queue.clear()
