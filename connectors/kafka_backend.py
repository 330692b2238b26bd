"""The consumer (and producer) backend contract under :class:`~connectors.kafka_source.KafkaSource`.

A backend wraps one Kafka client library behind a small, synchronous surface,
so the source's logic (positions, rebalances, backpressure, lag, reconnects)
is written once and tested against every implementation with one suite:

- :class:`~connectors.kafka_python_backend.KafkaPythonBackend` (kafka-python, the default);
- :class:`~connectors.confluent_backend.ConfluentBackend` (confluent-kafka, the
  optional ``confluent`` extra, several times faster);
- :class:`~connectors.memory_broker.MemoryConsumer`, an in-memory double for unit tests.

Rules every implementation keeps:

- Auto-commit is OFF. Offsets reach the group only through :meth:`ConsumerBackend.commit`.
- Partition assignment is *range* over co-partitioned topics, so partition ``n``
  of every subscribed topic lands on the same member (one shard, one owner).
- Rebalance callbacks run only inside :meth:`ConsumerBackend.poll_batch`, while
  the calling thread is blocked in it, so the caller's state is never touched
  concurrently. An exception raised by a callback is re-raised by ``poll_batch``.
  Inside a callback, ``seek``, ``pause`` and ``commit`` may be called; ``commit``
  may then be sent without waiting for the answer.
- One thread uses one backend; none of the methods is thread-safe.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import NamedTuple

#: Record headers, ``(key, value)`` pairs in the order they were sent.
Headers = tuple[tuple[str, bytes], ...]


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class Fetched(NamedTuple):
    """One record as the client returned it. A null value (tombstone) is ``b""``."""

    topic: str
    partition: int
    offset: int
    value: bytes
    headers: Headers


#: Called with the partitions assigned to, or revoked from, this member.
PartitionsCallback = Callable[[list[TopicPartition]], None]


class BackendError(Exception):
    """The client failed in a way it will not recover from by itself (it could
    not bootstrap, authentication failed, a fatal client error). The caller
    closes the backend and builds a new one later. Retriable trouble (a broker
    gone for a while) is *not* raised: the client reconnects with backoff and
    :meth:`ConsumerBackend.connected` reports it.
    """


class ConsumerBackend(abc.ABC):
    """A group consumer over one client library. See the module docstring for
    the rules all implementations keep."""

    @abc.abstractmethod
    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: PartitionsCallback,
        on_revoke: PartitionsCallback,
    ) -> None:
        """Join the group for ``topics``. Does not block: the join happens in
        later ``poll_batch`` calls, which then call ``on_revoke`` (partitions
        about to go, before anyone else may read them) and ``on_assign``
        (partitions just received; seek them here). Call once.
        """

    @abc.abstractmethod
    def poll_batch(self, max_records: int, timeout: float) -> list[Fetched]:
        """Return up to ``max_records`` (>= 1) records, in offset order within
        each partition, and advance past them. Blocks at most about ``timeout``
        seconds when nothing is available (group joins may add to that);
        returns ``[]`` while the broker is unreachable. Not safe to repeat.
        Raises :class:`BackendError` on unrecoverable client failure.
        """

    @abc.abstractmethod
    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Make ``offset`` the next record returned for an assigned partition.
        Does not block. Safe to repeat. An offset past the end of the log is
        reset by the client's ``auto_offset_reset`` on the next fetch.
        """

    @abc.abstractmethod
    def pause(self, partitions: Collection[TopicPartition]) -> None:
        """Stop fetching these assigned partitions; records already prefetched
        for them are dropped and fetched again after :meth:`resume`, so nothing
        is lost or buffered meanwhile. Safe to repeat.
        """

    @abc.abstractmethod
    def resume(self, partitions: Collection[TopicPartition]) -> None:
        """Undo :meth:`pause`. Safe to repeat."""

    @abc.abstractmethod
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions currently assigned. Does not block."""

    @abc.abstractmethod
    def position(self, topic: str, partition: int) -> int | None:
        """The offset of the next record ``poll_batch`` would return for an
        assigned partition, or None when not known yet. Does not block."""

    @abc.abstractmethod
    def highwater(self, topic: str, partition: int) -> int | None:
        """The partition's high watermark (the offset the next produced record
        gets) as last reported in a fetch response, or None before the first
        fetch. Never asks the broker (ListOffsets "latest" is wrong on some
        brokers, Tansu among them). Does not block."""

    @abc.abstractmethod
    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` (next offset to read) to the group. Blocks until
        the broker answers (bounded by the request timeout), except inside a
        rebalance callback, where it may return once sent. Safe to repeat.
        Raises :class:`BackendError` if the commit fails.
        """

    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether the client currently reaches the cluster (the group
        coordinator, or any broker). Does not block."""

    @abc.abstractmethod
    def close(self) -> None:
        """Leave the group and release the client. Does not call the rebalance
        callbacks. Blocks briefly (bounded). Safe to repeat."""


class ProducerBackend(abc.ABC):
    """The little a dead-letter producer (and the benchmarks) need."""

    @abc.abstractmethod
    def send(
        self,
        topic: str,
        value: bytes,
        headers: Headers = (),
        key: bytes | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record (to ``partition``, else as the client partitions
        ``key``). Does not wait for the broker (it may block briefly when the
        client's queue is full). Failures surface in :meth:`flush`."""

    @abc.abstractmethod
    def flush(self, timeout: float) -> None:
        """Block until every record sent so far is acknowledged, at most
        ``timeout`` seconds. Raises :class:`BackendError` if any failed or the
        time ran out. Safe to repeat."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the client without waiting for undelivered records (call
        :meth:`flush` first). Safe to repeat."""
