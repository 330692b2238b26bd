"""The source contract: where prediction and outcome records come from.

A source hands out batches of :class:`Record`. Each record carries its
position (``partition``, ``offset``) so the daemon can checkpoint "everything
before here is processed" and resume after a crash, and a ``shard``: records
that must meet in one join (a prediction and its outcome) share a shard. For
Kafka the shard is the partition number (the predictions and outcomes topics
are co-partitioned by prediction_id); a file replay is shard 0.

Lifecycle: ``open(start)`` once, then ``poll`` in a loop, ``commit`` after
each checkpoint, ``close`` at the end. A source never closes what it was
handed (an engine, a client passed in).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

PREDICTIONS = "predictions"
OUTCOMES = "outcomes"


@dataclass(frozen=True, slots=True)
class Record:
    """One raw record, not yet decoded or validated."""

    stream: str  # PREDICTIONS or OUTCOMES
    # Raw JSON bytes (Kafka, JSONL) or a row already split into fields (CSV, Parquet).
    value: bytes | Mapping[str, Any]
    partition: str  # a stable name: "file:predictions.jsonl", "kafka:preds:3"
    offset: int  # position within the partition; the next record has a larger one
    shard: int = 0


#: Called when partitions move (Kafka rebalances): shards lost, then shards gained.
RebalanceListener = Callable[[frozenset[int], frozenset[int]], None]


class Source(abc.ABC):
    """Yields records in batches; knows how to resume from stored positions."""

    name: str
    #: True when the source is handed shards and can lose them (a consumer
    #: group): the daemon then restores a shard's state when it is assigned
    #: rather than all stored shards at start.
    assigns_shards: ClassVar[bool] = False

    @abc.abstractmethod
    def open(self, start: Mapping[str, int]) -> None:
        """Prepare to read. ``start`` maps partition to a resume position from
        the last checkpoint: the offset of the last processed record plus one.
        The source reads records whose offset is at least that; partitions not
        in it start at the beginning (Kafka: per ``auto_offset_reset``).
        May block briefly (connect). Called once.
        """

    @abc.abstractmethod
    def poll(self, max_records: int, timeout_seconds: float) -> list[Record]:
        """Return up to ``max_records`` records, in order within each partition.

        Blocks at most ``timeout_seconds`` when nothing is available; an empty
        list is normal. Not safe to repeat: each call moves the read position.
        """

    @property
    @abc.abstractmethod
    def exhausted(self) -> bool:
        """True when a finite source has nothing more to give (files); a
        stream (Kafka) never is.
        """

    def commit(self, positions: Mapping[str, int]) -> None:  # noqa: B027 - optional hook
        """Acknowledge positions already checkpointed in the store (Kafka commits
        them to the group; files need nothing). Safe to repeat.
        """

    def dead_letter(self, partition: str, offset: int, value: bytes, reason: str) -> None:  # noqa: B027
        """Also send a rejected record somewhere of the source's own (Kafka: a
        dead-letter topic). May queue; :meth:`flush_dead_letters` waits."""

    def flush_dead_letters(self) -> None:  # noqa: B027
        """Block until queued dead letters are acknowledged; called before the
        daemon checkpoints past them. Raises if they cannot be delivered."""

    def ready(self) -> bool:
        """Whether the source is connected and able to deliver (for /readyz)."""
        return True

    def set_rebalance_listener(self, listener: RebalanceListener) -> None:  # noqa: B027
        """Register the callback for shard moves; sources without rebalances ignore it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the source opened itself. Safe to repeat."""
