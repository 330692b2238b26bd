"""Kafka as a driftd source: :class:`KafkaSource`, its settings, backpressure, dead letters.

Records come from two co-partitioned topics (predictions and outcomes, keyed
by prediction_id); partition ``n`` of both is shard ``n``. The client library
sits behind a :class:`~connectors.kafka_backend.ConsumerBackend`: kafka-python
(default) or confluent-kafka (``client = "confluent"``, an optional extra).

Positions: the daemon's store is the source of truth. When partitions are
assigned, each is sought to, in order of preference, the stored position
(``positions_for``; on the first assignment also ``open(start)``), else the
group's committed offset, else ``auto_offset_reset``. Offsets are committed
to the group only from :meth:`KafkaSource.commit`, after the daemon's checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Literal, NamedTuple

from connectors.base import OUTCOMES, PREDICTIONS, RebalanceListener, Record, Source
from connectors.kafka_backend import (
    BackendError,
    ConsumerBackend,
    Headers,
    ProducerBackend,
    TopicPartition,
)
from connectors.records import NO_TIME, event_time, make_records

log = logging.getLogger("driftd.kafka")

#: Header naming why a record was dead-lettered.
REASON_HEADER = "driftd-reason"

_PARTITION_KEY = itemgetter(0, 1)  # (topic, partition) of a Fetched


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """Client settings, mapped onto each library's configuration. Secrets arrive
    resolved; ``sasl_password`` is left out of ``repr`` and never logged."""

    bootstrap_servers: str  # "host:port[,host:port...]"
    client: Literal["kafka-python", "confluent"] = "kafka-python"
    client_id: str = "driftd"
    group_id: str = "driftd"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    fetch_min_bytes: int = 1
    fetch_max_bytes: int = 52_428_800
    max_partition_fetch_bytes: int = 1_048_576
    fetch_max_wait_ms: int = 500
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    # Client-level reconnects and the source's rebuilds of a failed client.
    reconnect_backoff_ms: int = 100
    reconnect_backoff_max_ms: int = 10_000

    def __post_init__(self) -> None:
        if self.security_protocol.startswith("SASL_"):
            if not (self.sasl_mechanism and self.sasl_username and self.sasl_password is not None):
                raise ValueError(
                    f"{self.security_protocol} needs sasl_mechanism, username, password"
                )
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of session_timeout_ms")


def _time(record: Record) -> float:
    """A record's event time for the merge; unreadable ones sort first."""
    ts = event_time(record.value)
    return NO_TIME if ts is None else ts


def make_consumer(settings: KafkaSettings) -> ConsumerBackend:
    """Build the consumer backend ``settings.client`` names (imports it lazily)."""
    if settings.client == "confluent":
        from connectors import confluent_backend as cb

        return cb.ConfluentBackend(cb.consumer_config(settings))
    from connectors import kafka_python_backend as kb

    return kb.KafkaPythonBackend(kb.consumer_config(settings))


def make_producer(settings: KafkaSettings) -> ProducerBackend:
    """Build the producer backend ``settings.client`` names (imports it lazily)."""
    if settings.client == "confluent":
        from connectors import confluent_backend as cb

        return cb.ConfluentProducer(cb.producer_config(settings))
    from connectors import kafka_python_backend as kb

    return kb.KafkaPythonProducer(kb.producer_config(settings))


@dataclass(frozen=True, slots=True)
class Backpressure:
    """How many records may be handed out by ``poll`` and not yet acknowledged.

    A record is *in flight* from the ``poll`` that returns it until a
    ``commit`` whose position passes it (the daemon commits after each
    checkpoint). Per partition that is ``next offset handed out - committed
    position``; the source sums it over the partitions it holds.

    Policy: ``poll`` never returns more than ``max_in_flight_records`` minus
    what is in flight. When nothing is left, every held partition is paused
    (fetching stops; the client drops what it prefetched and fetches it again
    on resume, so nothing is lost and nothing piles up in memory) and ``poll``
    keeps driving the client (heartbeats, rebalances) while returning ``[]``.
    Fetching resumes once ``commit`` brings the in-flight count down to
    ``resume_fraction * max_in_flight_records``. The client's own prefetch is
    bounded by the fetch sizes in :class:`KafkaSettings`. Partitions pause the
    same way while the source's :class:`DeadLetterProducer` is ``full`` (dead
    letters the broker has not acknowledged), until a flush empties it.

    The bound must exceed (event rate x checkpoint interval), or the source
    stalls until each checkpoint: 1,000,000 allows 200k events/s with the
    default 5 s checkpoint. It is also the most a crash replays.
    """

    max_in_flight_records: int = 1_000_000
    resume_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.max_in_flight_records < 1 or not 0 <= self.resume_fraction < 1:
            raise ValueError("need max_in_flight_records >= 1 and 0 <= resume_fraction < 1")


class KafkaSource(Source):
    """A :class:`~connectors.base.Source` over a Kafka consumer group.

    ``positions_for(shards)`` returns the daemon's stored positions (partition
    name -> next offset) for shards just gained; it is called inside ``poll``,
    after the rebalance listener. The listener gets ``(lost, gained)``:
    ``lost`` before the partitions go (checkpoint them there; a ``commit``
    from the listener still covers them), ``gained`` on every assignment, the
    first included. Lost shards are reported also when the source has to
    rebuild a failed client, not on ``close``.

    Reconnects: the clients retry a vanished broker by themselves, with
    backoff (``reconnect_backoff_ms`` .. ``reconnect_backoff_max_ms``);
    ``ready()`` is False meanwhile and reading resumes at the positions held.
    A client that cannot start or fails for good is closed and rebuilt from
    ``poll`` with the same exponential backoff. The dead-letter producer
    (``dead_letters``) is built lazily and rebuilt the same way; dead letters
    wait in it meanwhile, and :meth:`flush_dead_letters` raises until they are
    acknowledged (the daemon then skips the checkpoint: nothing is committed
    past them).
    """

    name = "kafka"
    assigns_shards = True

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        predictions_topic: str,
        outcomes_topic: str,
        positions_for: Callable[[frozenset[int]], Mapping[str, int]],
        backpressure: Backpressure | None = None,
        backend_factory: Callable[[], ConsumerBackend] | None = None,
        dead_letters: DeadLetterProducer | None = None,
        name: str = "kafka",
        max_merge_wait_seconds: float = 5.0,
        max_buffered_per_partition: int = 20_000,
    ) -> None:
        if predictions_topic == outcomes_topic:
            raise ValueError("predictions and outcomes need distinct topics")
        self.name = name
        self._settings = settings
        self._streams = {predictions_topic: PREDICTIONS, outcomes_topic: OUTCOMES}
        self._positions_for = positions_for
        self._backpressure = backpressure or Backpressure()
        self._factory = backend_factory or (lambda: make_consumer(settings))
        self._dead_letters = dead_letters
        self._listener: RebalanceListener | None = None
        self._backend: ConsumerBackend | None = None
        self._start: dict[str, int] | None = None
        self._names: dict[tuple[str, int], str] = {}
        self._held: set[TopicPartition] = set()
        self._next: dict[TopicPartition, int] = {}  # next offset to hand out
        self._acked: dict[TopicPartition, int] = {}  # last committed position
        self._paused = False  # backpressure engaged
        # Event-time merge of each shard's two partitions (see _release): what
        # was fetched and not handed out yet.
        self._buf: dict[TopicPartition, deque[Record]] = {}
        self._side_cache: dict[int, tuple[TopicPartition, TopicPartition]] = {}
        self._waiting_since: dict[int, float] = {}  # shard -> when its head began to wait
        self._max_merge_wait = max_merge_wait_seconds
        self._max_buffered = max_buffered_per_partition
        self._rotate = 0
        self._connected = False
        self._backoff = settings.reconnect_backoff_ms / 1000
        self._retry_at = 0.0

    @property
    def exhausted(self) -> bool:
        return False  # a stream never ends

    # -- naming ------------------------------------------------------------------
    def partition_name(self, topic: str, partition: int) -> str:
        key = (topic, partition)
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"kafka:{topic}:{partition}"
        return name

    def _shards(self, tps: set[TopicPartition]) -> set[int]:
        return {tp.partition for tp in tps}

    # -- lifecycle ---------------------------------------------------------------
    def set_rebalance_listener(self, listener: RebalanceListener) -> None:
        self._listener = listener

    def open(self, start: Mapping[str, int]) -> None:
        """Connect and subscribe; ``start`` seeks the first assignment. Blocks at
        most the client's connect timeout (kafka-python bootstraps here, up to
        5 s; confluent-kafka connects in the background). If the broker is
        unreachable the source stays not ready and ``poll`` retries with
        backoff. Call once."""
        self._start = dict(start)
        self._connect()

    def _connect(self) -> None:
        try:
            backend = self._factory()
            backend.subscribe(list(self._streams), self._on_assign, self._on_revoke)
        except BackendError as exc:
            self._retry_at = time.monotonic() + self._backoff
            log.warning("kafka unreachable (%s); retrying in %.1fs", exc, self._backoff)
            self._backoff = min(self._backoff * 2, self._settings.reconnect_backoff_max_ms / 1000)
            return
        self._backend = backend
        self._connected = backend.connected()
        self._backoff = self._settings.reconnect_backoff_ms / 1000

    def _drop_backend(self, exc: BaseException) -> None:
        log.warning("kafka client failed (%s); rebuilding it", exc)
        backend, self._backend = self._backend, None
        self._connected = False
        if self._held:
            self._on_revoke(list(self._held))
        if backend is not None:
            backend.close()
        self._paused = False
        self._retry_at = time.monotonic() + self._backoff

    def dead_letter(self, partition: str, offset: int, value: bytes, reason: str) -> None:
        if self._dead_letters is not None:
            self._dead_letters.send(value, reason, source=partition, offset=offset)

    def flush_dead_letters(self) -> None:
        """Block until the dead letters sent are acknowledged (see
        :class:`DeadLetterProducer`). Raises :class:`BackendError` if they are
        not, at once (no flush timeout to wait out) while the consumer does not
        reach the cluster; they are kept and the next call tries again."""
        dead = self._dead_letters
        if dead is None or not dead.pending:
            return
        if not self._connected:
            raise BackendError(
                f"{dead.pending} dead letters for topic {dead.topic!r} held: kafka unreachable"
            )
        dead.flush()

    def close(self) -> None:
        """Leave the group and release the client. Does not call the listener.
        Blocks briefly (bounded). Safe to repeat."""
        if self._dead_letters is not None:
            self._dead_letters.close()
            self._dead_letters = None
        backend, self._backend = self._backend, None
        self._held.clear()  # before close(): a revoke on close reports nothing
        self._connected = False
        if backend is not None:
            backend.close()

    def ready(self) -> bool:
        """Whether the client reached the cluster at the last ``poll``/``commit``.
        Reads a flag only: safe from another thread (``/readyz``)."""
        return self._connected

    # -- rebalances (called by the backend inside poll_batch) ----------------------
    def _on_revoke(self, tps: list[TopicPartition]) -> None:
        lost_tps = self._held.intersection(tps)
        lost = self._shards(self._held) - self._shards(self._held - lost_tps)
        if lost and self._listener is not None:
            # Still held here, so a commit() from the listener covers them.
            self._listener(frozenset(lost), frozenset())
        self._held -= lost_tps
        for tp in lost_tps:
            self._next.pop(tp, None)
            self._acked.pop(tp, None)
            self._buf.pop(tp, None)  # the next owner fetches them again
        for n in lost:
            self._waiting_since.pop(n, None)

    def _on_assign(self, tps: list[TopicPartition]) -> None:
        new = {tp for tp in tps if tp.topic in self._streams} - self._held
        gained = self._shards(new) - self._shards(self._held)
        self._held |= new
        if gained and self._listener is not None:
            self._listener(frozenset(), frozenset(gained))
        stored = dict(self._positions_for(frozenset(gained))) if gained else {}
        if self._start is not None:  # the first assignment after open()
            stored = {**self._start, **stored}
            self._start = None
        assert self._backend is not None
        for tp in new:
            self._buf.pop(tp, None)
            offset = stored.get(self.partition_name(*tp))
            if offset is not None:
                self._backend.seek(tp.topic, tp.partition, offset)
                self._next[tp] = self._acked[tp] = offset
        if self._paused and new:
            self._backend.pause(new)

    # -- reading -----------------------------------------------------------------
    def in_flight(self) -> int:
        """Records handed out and not yet acknowledged by ``commit``."""
        return sum(max(0, n - self._acked.get(tp, n)) for tp, n in self._next.items())

    def _apply_backpressure(self, backend: ConsumerBackend, max_records: int) -> int:
        """Pause or resume per the :class:`Backpressure` policy; return how many
        records the next poll may hand out (0: paused)."""
        bp = self._backpressure
        in_flight = self.in_flight()
        dead = self._dead_letters
        letters_full = dead is not None and dead.full
        if (
            self._paused
            and not letters_full
            and in_flight <= bp.resume_fraction * bp.max_in_flight_records
        ):
            backend.resume(self._held)
            self._paused = False
        budget = 0 if letters_full else min(max_records, bp.max_in_flight_records - in_flight)
        if budget <= 0 and not self._paused:
            backend.pause(self._held)
            self._paused = True
            if dead is not None and letters_full:
                log.warning(
                    "%d dead letters for %s not acknowledged: partitions paused until delivered",
                    dead.pending,
                    dead.topic,
                )
            else:
                log.info("backpressure: %d records in flight, partitions paused", in_flight)
        return max(0, budget)

    def poll(self, max_records: int, timeout_seconds: float) -> list[Record]:
        """Up to ``max_records`` records (fewer under backpressure), in offset
        order per partition. Blocks about ``timeout_seconds`` when nothing comes,
        longer while the group rebalances (kafka-python: until the join ends,
        at most 10 s) or while a failed client is rebuilt (its connect timeout).
        Rebalance callbacks run inside. Not safe to repeat."""
        backend = self._backend
        if backend is None:
            wait = self._retry_at - time.monotonic()
            if wait > timeout_seconds:
                time.sleep(max(0.0, timeout_seconds))
                return []
            time.sleep(max(0.0, wait))
            self._connect()
            return []
        budget = self._apply_backpressure(backend, max_records)
        # What the merge can hand out already goes first; the client is then
        # polled without waiting (heartbeats, rebalances, more records).
        released = self._release(budget)
        try:
            fetched = backend.poll_batch(max_records, 0.0 if released else timeout_seconds)
        except BackendError as exc:
            self._drop_backend(exc)
            return []
        self._connected = backend.connected()
        streams, held, bufs = self._streams, self._held, self._buf
        # Clients return a partition's records in runs: built a run at a time.
        for (topic, partition), run in groupby(fetched, _PARTITION_KEY):
            tp = TopicPartition(topic, partition)
            if tp not in held:
                continue
            _topics, _partitions, offsets, values, _headers = zip(*run, strict=True)
            buf = bufs.get(tp)
            if buf is None:
                buf = bufs[tp] = deque()
            name = self.partition_name(topic, partition)
            buf.extend(make_records(streams[topic], values, name, offsets, partition))
        released += self._release(budget - len(released))
        return released

    def _drained(self, tp: TopicPartition) -> bool:
        """Nothing of ``tp`` is buffered or left to fetch right now: its position
        is at the high watermark of the last fetch response."""
        if tp not in self._held:
            return True
        if self._buf.get(tp) or self._backend is None:
            return False
        hw = self._backend.highwater(tp.topic, tp.partition)
        pos = self._backend.position(tp.topic, tp.partition)
        if pos is None:  # nothing read since the seek to a stored position
            pos = self._next.get(tp)
        return hw is not None and pos is not None and pos >= hw

    def _take(self, tp: TopicPartition, buf: deque[Record], k: int, out: list[Record]) -> None:
        """Hand out the first ``k`` (>= 1) records of ``tp``'s buffer."""
        self._acked.setdefault(tp, buf[0].offset)
        popleft, append = buf.popleft, out.append
        for _ in range(k):
            append(popleft())
        self._next[tp] = out[-1].offset + 1

    def _release(self, budget: int) -> list[Record]:
        """Up to ``budget`` buffered records, each shard's two partitions merged
        by event time (predictions first on ties) as the file replay merges its
        files. A record goes only when the partner partition has a later one
        buffered or has nothing more to give, so the order a shard sees (and so
        its join and its error detectors) does not depend on how fetches
        interleaved, and a replay after a crash or a move sees the same order.
        A head waits at most ``max_merge_wait_seconds`` of fetching for a
        silent partner, and not at all once ``max_buffered_per_partition``
        records of its partition wait (a topic far ahead of the other): then
        the order is best effort, and a warning says so. Unreadable event
        times (dead letters to be) go at once.

        Hot path: records move in runs (all of one side at once when the
        partner has nothing and is drained); the partner's fetch state is read
        once per run, not once per record, and an event time is read only when
        the order depends on it."""
        out: list[Record] = []
        if budget <= 0:
            return out
        now = time.monotonic()
        shards = sorted({tp.partition for tp, b in self._buf.items() if b})
        if shards:  # rotate the start so that no shard starves under backpressure
            self._rotate = k = (self._rotate + 1) % len(shards)
            shards = shards[k:] + shards[:k]
        for n in shards:
            sides = self._sides(n)
            a, b = self._buf.get(sides[0]), self._buf.get(sides[1])
            while len(out) < budget:
                if a and b:
                    self._waiting_since.pop(n, None)
                    self._merge(sides, a, b, budget, out)
                    continue
                if not a and not b:
                    self._waiting_since.pop(n, None)
                    break
                i, buf = (0, a) if a else (1, b)
                assert buf is not None
                tp, room = sides[i], budget - len(out)
                k = 0  # leading unreadable times go at once
                while k < len(buf) and k < room and _time(buf[k]) == NO_TIME:
                    k += 1
                if k:
                    self._take(tp, buf, k, out)
                    continue
                if len(buf) >= self._max_buffered:  # down below the bound, then wait again
                    self._waiting_since.pop(n, None)
                    self._take(tp, buf, min(room, len(buf) - self._max_buffered + 1), out)
                    continue
                if not self._drained(sides[1 - i]):
                    if self._paused:  # the partner is not fetched meanwhile: no timeout
                        self._waiting_since.pop(n, None)
                        break
                    since = self._waiting_since.setdefault(n, now)
                    if now - since < self._max_merge_wait:
                        break
                    if since > 0:  # once per silence
                        log.warning(
                            "shard %d: %s silent for %.0fs; event-time order is best effort",
                            n,
                            self.partition_name(*sides[1 - i]),
                            now - since,
                        )
                        self._waiting_since[n] = -1.0  # released until the partner speaks
                else:
                    self._waiting_since.pop(n, None)
                self._take(tp, buf, min(room, len(buf)), out)
            if len(out) >= budget:
                break
        return out

    def _merge(
        self,
        sides: tuple[TopicPartition, TopicPartition],
        a: deque[Record],
        b: deque[Record],
        budget: int,
        out: list[Record],
    ) -> None:
        """Hand out records of a shard's two buffers (``a`` predictions, ``b``
        outcomes) in event-time order while both have some; predictions first
        on ties."""
        last_a: Record | None = None
        last_b: Record | None = None
        first_a, first_b = a[0].offset, b[0].offset
        ta, tb = _time(a[0]), _time(b[0])
        append = out.append
        while len(out) < budget:
            if ta <= tb:
                last_a = a.popleft()
                append(last_a)
                if not a:
                    break
                ta = _time(a[0])
            else:
                last_b = b.popleft()
                append(last_b)
                if not b:
                    break
                tb = _time(b[0])
        for tp, first, last in ((sides[0], first_a, last_a), (sides[1], first_b, last_b)):
            if last is not None:
                self._acked.setdefault(tp, first)
                self._next[tp] = last.offset + 1

    def _sides(self, shard: int) -> tuple[TopicPartition, TopicPartition]:
        """The (predictions, outcomes) partitions of ``shard``."""
        sides = self._side_cache.get(shard)
        if sides is None:
            first, second = self._streams  # predictions, then outcomes (see __init__)
            sides = self._side_cache[shard] = (
                TopicPartition(first, shard),
                TopicPartition(second, shard),
            )
        return sides

    def commit(self, positions: Mapping[str, int]) -> None:
        """Acknowledge checkpointed positions: they count as no longer in flight
        (which may resume paused partitions) and are committed to the group.
        Positions of partitions this member no longer holds are ignored.
        Blocks until the broker answers; skipped while disconnected (the next
        commit carries the newer positions). A failed group commit is logged,
        not raised: the daemon's store stays the source of truth. Safe to repeat."""
        offsets: dict[TopicPartition, int] = {}
        for tp in self._held:
            pos = positions.get(self.partition_name(*tp))
            if pos is not None:
                offsets[tp] = self._acked[tp] = pos
        backend = self._backend
        if backend is None:
            return
        self._apply_backpressure(backend, 1)
        self._connected = backend.connected()
        if offsets and self._connected:
            try:
                backend.commit(offsets)
            except BackendError as exc:
                log.warning("kafka offset commit failed (positions are safe in the store): %s", exc)

    def partitions(self) -> frozenset[str]:
        """Names of the partitions this member holds now."""
        return frozenset(self.partition_name(*tp) for tp in self._held)

    @property
    def paused(self) -> bool:
        """Whether backpressure has paused fetching."""
        return self._paused

    def lag(self) -> dict[str, int]:
        """Records behind the end of each held partition: the high watermark from
        the last fetch response read for it, minus the next offset to hand out.
        Partitions with no fetch response read yet are left out (kafka-python:
        one paused before its first records were read); a paused partition's
        lag is as of its last fetch. Never asks the broker. Does not block."""
        backend = self._backend
        if backend is None:
            return {}
        out: dict[str, int] = {}
        for tp in self._held:
            hw = backend.highwater(tp.topic, tp.partition)
            pos = self._next.get(tp)
            if pos is None:
                pos = backend.position(tp.topic, tp.partition)
            if hw is not None and pos is not None:
                out[self.partition_name(*tp)] = max(0, hw - pos)
        return out


#: Default bounds of the dead letters a :class:`DeadLetterProducer` keeps until
#: the broker acknowledges them (see there).
DEAD_LETTER_MAX_RECORDS = 10_000
DEAD_LETTER_MAX_BYTES = 32 * 1024 * 1024


class _Letter(NamedTuple):
    value: bytes
    headers: Headers
    size: int  # bytes counted against the bound: value and headers


class DeadLetterProducer:
    """Sends records driftd cannot use to a dead-letter topic, raw value
    unchanged, with the reason in the ``driftd-reason`` header (and where it
    came from in ``driftd-source`` / ``driftd-offset`` when given).

    Delivery is at least once, and a broker that is away stops nothing:

    - The client is built lazily, on the first ``send`` (or a ``flush`` with
      letters waiting), never in ``__init__``. A build that fails (kafka-python
      cannot bootstrap) is retried on a later ``send``/``flush`` with the
      consumer's policy: backoff from ``reconnect_backoff_ms`` doubling up to
      ``reconnect_backoff_max_ms``, reset once a flush succeeds.
    - Every letter is kept here from ``send`` until a ``flush`` sees it
      acknowledged, and handed to the client once one exists. ``send`` never
      raises: a client failure is logged, the client dropped and rebuilt later.
    - ``flush`` blocks until all letters are acknowledged and raises
      :class:`~connectors.kafka_backend.BackendError` (naming the topic and the
      reason) otherwise, at once while no client could be built. Flush before
      checkpointing past a dead-lettered record, or it may be lost. A failed
      flush drops the client with what it had queued; the next client gets every
      unacknowledged letter again, so one whose delivery was in doubt may arrive
      twice and none is lost.
    - What is kept is bounded: :attr:`full` turns true at ``max_records``
      letters (default :data:`DEAD_LETTER_MAX_RECORDS`, 10,000) or
      ``max_bytes`` of values and headers (:data:`DEAD_LETTER_MAX_BYTES`,
      32 MiB). :class:`KafkaSource` then reads nothing more (its partitions
      pause, as under backpressure) until a flush empties it, so the bound is
      passed by at most the dead letters of one batch.

    ``producer`` is a client to start with (tests); ``producer_factory`` builds
    one (default: :func:`make_producer` from ``settings``). One thread uses it.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        *,
        producer: ProducerBackend | None = None,
        producer_factory: Callable[[], ProducerBackend] | None = None,
        max_records: int = DEAD_LETTER_MAX_RECORDS,
        max_bytes: int = DEAD_LETTER_MAX_BYTES,
    ) -> None:
        if max_records < 1 or max_bytes < 1:
            raise ValueError("need max_records >= 1 and max_bytes >= 1")
        self.topic = topic
        self._settings = settings
        self._factory = producer_factory or (lambda: make_producer(settings))
        self._producer = producer
        self._held: deque[_Letter] = deque()  # not handed to the current client yet
        self._sent: deque[_Letter] = deque()  # handed to it, not acknowledged yet
        self._bytes = 0
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._flush_timeout = settings.request_timeout_ms / 1000
        self._backoff = settings.reconnect_backoff_ms / 1000
        self._retry_at = 0.0
        self._error = ""  # why there is no client

    @property
    def pending(self) -> int:
        """Letters sent and not acknowledged yet."""
        return len(self._held) + len(self._sent)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        """Whether the letters kept reached a bound (see the class docstring)."""
        return self.pending >= self._max_records or self._bytes >= self._max_bytes

    def send(
        self, value: bytes, reason: str, *, source: str | None = None, offset: int | None = None
    ) -> None:
        """Queue one letter and return; never raises (see the class docstring)."""
        headers = [(REASON_HEADER, reason.encode("utf-8", "replace"))]
        if source is not None:
            headers.append(("driftd-source", source.encode()))
        if offset is not None:
            headers.append(("driftd-offset", str(offset).encode()))
        size = len(value) + sum(len(k) + len(v) for k, v in headers)
        self._held.append(_Letter(value, tuple(headers), size))
        self._bytes += size
        self._hand_over()

    def _hand_over(self) -> bool:
        """Build the client if there is none and a retry is due, then give it the
        letters it has not had. False when there is no working client."""
        if self._producer is None:
            if time.monotonic() < self._retry_at:
                return False
            try:
                self._producer = self._factory()
            except BackendError as exc:
                self._drop(exc, "could not start")
                return False
        producer, held, sent = self._producer, self._held, self._sent
        try:
            while held:
                letter = held[0]
                producer.send(self.topic, letter.value, letter.headers)
                sent.append(held.popleft())
        except BackendError as exc:
            self._drop(exc, "send failed")
            return False
        return True

    def _drop(self, exc: BaseException, what: str) -> None:
        """Close the client (its queue goes with it: every unacknowledged letter
        is sent again through the next one) and schedule the next build."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close()
            except Exception as close_exc:  # closing must not fail the caller
                log.warning("dead-letter producer close failed: %r", close_exc)
        self._held.extendleft(reversed(self._sent))
        self._sent.clear()
        self._error = f"{what}: {exc}"
        self._retry_at = time.monotonic() + self._backoff
        log.warning(
            "dead-letter producer for %s %s (%s); %d letters held, retrying in %.1fs",
            self.topic,
            what,
            exc,
            self.pending,
            self._backoff,
        )
        self._backoff = min(self._backoff * 2, self._settings.reconnect_backoff_max_ms / 1000)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every letter sent is acknowledged, at most ``timeout``
        seconds (default ``request_timeout_ms``). Returns at once when none is
        waiting. Raises :class:`~connectors.kafka_backend.BackendError` if they
        are not; they are kept and the next ``flush`` tries again."""
        if not self.pending:
            return
        if not self._hand_over():
            wait = max(0.0, self._retry_at - time.monotonic())
            raise BackendError(
                f"{self.pending} dead letters for topic {self.topic!r} held: producer "
                f"{self._error}; retrying in {wait:.1f}s"
            )
        assert self._producer is not None
        try:
            self._producer.flush(self._flush_timeout if timeout is None else timeout)
        except BackendError as exc:
            self._drop(exc, "flush failed")
            raise BackendError(
                f"{self.pending} dead letters for topic {self.topic!r} not acknowledged: {exc}"
            ) from exc
        self._sent.clear()
        self._bytes = 0
        self._backoff = self._settings.reconnect_backoff_ms / 1000

    def close(self) -> None:
        """Release the client (call ``flush`` first). Letters not acknowledged are
        dropped: the records they came from were not checkpointed past, so they
        are read and dead-lettered again. Safe to repeat."""
        if self.pending:
            log.warning(
                "dead-letter producer for %s closed with %d letters not acknowledged; "
                "their records were not committed and are dead-lettered again when re-read",
                self.topic,
                self.pending,
            )
        self._held.clear()
        self._sent.clear()
        self._bytes = 0
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()
