"""The kafka-python implementation of the consumer and producer backends (the default).

kafka-python 3.x runs its network I/O on a thread of its own and calls
rebalance listeners on that thread, while the thread in ``poll()`` waits for
the join to finish; a blocking client call from a listener is refused there
(RuntimeError), so :meth:`KafkaPythonBackend.commit` sends without waiting
when it is called from inside a rebalance callback.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from connectors.kafka_backend import (
    BackendError,
    ConsumerBackend,
    Fetched,
    Headers,
    PartitionsCallback,
    ProducerBackend,
    TopicPartition,
)

if TYPE_CHECKING:
    from connectors.kafka_source import KafkaSettings

log = logging.getLogger("driftd.kafka")


def _common_config(s: KafkaSettings) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap_servers": s.bootstrap_servers.split(","),
        "client_id": s.client_id,
        "security_protocol": s.security_protocol,
        "request_timeout_ms": s.request_timeout_ms,
        "reconnect_backoff_ms": s.reconnect_backoff_ms,
        "reconnect_backoff_max_ms": s.reconnect_backoff_max_ms,
        "bootstrap_timeout_ms": min(s.request_timeout_ms, 5_000),
    }
    if s.sasl_mechanism:
        cfg.update(
            sasl_mechanism=s.sasl_mechanism,
            sasl_plain_username=s.sasl_username,
            sasl_plain_password=s.sasl_password,
        )
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(s, key):
            cfg[key] = getattr(s, key)
    return cfg


def consumer_config(s: KafkaSettings) -> dict[str, Any]:
    """``KafkaConsumer`` keyword arguments for ``s`` (they contain the password: never log)."""
    return {
        **_common_config(s),
        "group_id": s.group_id,
        "fetch_min_bytes": s.fetch_min_bytes,
        "fetch_max_bytes": s.fetch_max_bytes,
        "max_partition_fetch_bytes": s.max_partition_fetch_bytes,
        "fetch_max_wait_ms": s.fetch_max_wait_ms,
        "auto_offset_reset": s.auto_offset_reset,
        "session_timeout_ms": s.session_timeout_ms,
        "heartbeat_interval_ms": s.heartbeat_interval_ms,
        "max_poll_interval_ms": s.max_poll_interval_ms,
    }


def producer_config(s: KafkaSettings) -> dict[str, Any]:
    """``KafkaProducer`` keyword arguments for ``s`` (they contain the password: never log)."""
    return {**_common_config(s), "max_block_ms": min(s.request_timeout_ms, 10_000)}


def _supported(cls: type, config: Mapping[str, Any]) -> dict[str, Any]:
    """Drop keys this kafka-python version does not know (older releases
    reject unknown configs)."""
    known = getattr(cls, "DEFAULT_CONFIG", None)
    if not isinstance(known, dict):
        return dict(config)
    return {k: v for k, v in config.items() if k in known}


def _construct(cls: Any, config: Mapping[str, Any], what: str) -> Any:
    """Build a kafka-python client; on failure close what it started (kafka-python
    3.0.x leaves its I/O thread running when bootstrapping fails in ``__init__``)."""
    client = cls.__new__(cls)
    try:
        client.__init__(**_supported(cls, config))
    except KafkaError as exc:
        net = getattr(client, "_client", None)
        if net is not None:
            try:
                net.close()
            except Exception:  # best effort: the client never started properly
                pass
        raise BackendError(f"kafka-python {what} could not start: {exc!r}") from exc
    return client


def _retriable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retriable", False))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, backend: KafkaPythonBackend) -> None:
        self._backend = backend

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        self._backend._dispatch(self._backend._on_revoke, revoked)

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        self._backend._dispatch(self._backend._on_assign, assigned)

    def on_partitions_lost(self, lost: Iterable[Any]) -> None:
        self._backend._dispatch(self._backend._on_revoke, lost)


class KafkaPythonBackend(ConsumerBackend):
    """A :class:`~connectors.kafka_backend.ConsumerBackend` on kafka-python's ``KafkaConsumer``.

    ``config`` holds ``KafkaConsumer`` keyword arguments (see :func:`consumer_config`);
    auto-commit and topic auto-creation are forced off and the assignor to
    range. Construction contacts the broker (bounded by ``bootstrap_timeout_ms``)
    and raises :class:`BackendError` if it cannot.

    Install the ``crc32c`` package next to kafka-python: without it record
    CRCs are checked in pure Python, ~10x slower on 450-byte records (bench/bench_kafka_consume.py).
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        cfg = dict(config)
        cfg["enable_auto_commit"] = False
        cfg["partition_assignment_strategy"] = (RangePartitionAssignor,)
        cfg["allow_auto_create_topics"] = False
        self._commit_timeout_ms = int(cfg.get("request_timeout_ms", 30_000))
        self._join_wait_ms = min(int(cfg.get("session_timeout_ms", 45_000)), 10_000)
        self._subscribed = False
        self._consumer = _construct(KafkaConsumer, cfg, "consumer")
        self._commit_has_timeout = (
            "timeout_ms" in inspect.signature(self._consumer.commit).parameters
        )
        self._on_assign: PartitionsCallback = lambda tps: None
        self._on_revoke: PartitionsCallback = lambda tps: None
        self._in_callback = False
        self._callback_error: BaseException | None = None
        self._closed = False

    # -- callbacks -----------------------------------------------------------
    def _dispatch(self, callback: PartitionsCallback, tps: Iterable[Any]) -> None:
        # Runs on kafka-python's I/O thread while poll_batch() waits: keep the
        # first exception and re-raise it from poll_batch() on the caller's thread.
        self._in_callback = True
        try:
            callback([TopicPartition(tp.topic, tp.partition) for tp in tps])
        except BaseException as exc:
            if self._callback_error is None:
                self._callback_error = exc
        finally:
            self._in_callback = False

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: PartitionsCallback,
        on_revoke: PartitionsCallback,
    ) -> None:
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._consumer.subscribe(topics=list(topics), listener=_Listener(self))
        self._subscribed = True

    # -- consuming -----------------------------------------------------------
    def _finish_join(self) -> None:
        """Wait (at most ``session_timeout_ms``, capped at 10 s) for a group join in flight.

        kafka-python 3.0.x drops a JoinGroup/SyncGroup answer that arrives while
        no ``poll()`` is waiting for it, and joins again. A broker may hold a
        JoinGroup for seconds (Tansu: half the session timeout; Kafka: the
        initial rebalance delay), so polls shorter than that can keep a member
        joining forever. Blocking here until the join completes avoids it.
        """
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is None or not self._subscribed:
            return
        if getattr(coordinator, "_join_task", None) is None and not coordinator.need_rejoin():
            return
        if coordinator.coordinator_unknown():  # no join can progress (broker away)
            return
        coordinator.poll(timeout_ms=self._join_wait_ms)

    def poll_batch(self, max_records: int, timeout: float) -> list[Fetched]:
        batches: dict[Any, list[Any]] = {}
        try:
            self._finish_join()
            batches = self._consumer.poll(
                timeout_ms=max(0, int(timeout * 1000)), max_records=max_records
            )
        except KafkaError as exc:
            if self._callback_error is None:
                if not _retriable(exc):
                    raise BackendError(f"kafka-python poll failed: {exc!r}") from exc
                log.warning("kafka-python poll failed, will retry: %r", exc)
        error, self._callback_error = self._callback_error, None
        if error is not None:
            raise error
        out: list[Fetched] = []
        append = out.append
        make = tuple.__new__  # Fetched(...) without NamedTuple.__new__'s overhead (hot path)
        for tp, records in batches.items():
            topic, partition = tp.topic, tp.partition
            for r in records:
                headers = r.headers
                append(
                    make(
                        Fetched,
                        (
                            topic,
                            partition,
                            r.offset,
                            r.value or b"",
                            tuple(headers) if headers else (),
                        ),
                    )
                )
        return out

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._consumer.seek(KTopicPartition(topic, partition), offset)

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        self._consumer.pause(*(KTopicPartition(t, p) for t, p in partitions))

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        self._consumer.resume(*(KTopicPartition(t, p) for t, p in partitions))

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(
            TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()
        )

    def position(self, topic: str, partition: int) -> int | None:
        # consumer.position() may block on a committed-offset lookup; read the
        # fetch state instead (what the next fetch starts from).
        try:
            state = self._consumer._subscription.assignment.get(KTopicPartition(topic, partition))
            pos = state.position if state is not None and state.has_valid_position else None
        except AttributeError:  # a kafka-python release with other internals
            return None
        return None if pos is None else int(getattr(pos, "offset", pos))

    def highwater(self, topic: str, partition: int) -> int | None:
        try:
            hw = self._consumer.highwater(KTopicPartition(topic, partition))
        except KafkaError:  # not assigned
            return None
        return None if hw is None else int(hw)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        payload = {
            KTopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()
        }
        try:
            if self._in_callback:
                self._consumer.commit_async(offsets=payload)
            elif self._commit_has_timeout:
                self._consumer.commit(offsets=payload, timeout_ms=self._commit_timeout_ms)
            else:
                self._consumer.commit(offsets=payload)
        except KafkaError as exc:
            raise BackendError(f"offset commit failed: {exc!r}") from exc

    def connected(self) -> bool:
        if self._closed:
            return False
        try:
            return not self._consumer._coordinator.coordinator_unknown()
        except AttributeError:  # a kafka-python release with other internals
            return bool(self._consumer.bootstrap_connected())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close(autocommit=False)
        except Exception as exc:  # closing must not fail the caller
            log.warning("kafka-python consumer close failed: %r", exc)


class KafkaPythonProducer(ProducerBackend):
    """A :class:`~connectors.kafka_backend.ProducerBackend` on ``KafkaProducer``
    (acks=all). Construction contacts the broker and raises :class:`BackendError`
    if it cannot."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        cfg = {"acks": "all", "linger_ms": 5, **config, "allow_auto_create_topics": False}
        self._producer = _construct(KafkaProducer, cfg, "producer")
        self._pending: list[Any] = []
        self._closed = False

    def send(
        self,
        topic: str,
        value: bytes,
        headers: Headers = (),
        key: bytes | None = None,
        partition: int | None = None,
    ) -> None:
        try:
            future = self._producer.send(
                topic, value=value, key=key, headers=list(headers), partition=partition
            )
        except KafkaError as exc:
            raise BackendError(f"send to {topic} failed: {exc!r}") from exc
        self._pending.append(future)

    def flush(self, timeout: float) -> None:
        pending, self._pending = self._pending, []
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise BackendError(f"flush failed: {exc!r}") from exc
        failed = [f for f in pending if not f.is_done or f.failed()]
        if failed:
            first = failed[0].exception if failed[0].is_done else "not acknowledged in time"
            raise BackendError(f"{len(failed)} of {len(pending)} records not delivered: {first!r}")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._producer.close(timeout=0)
