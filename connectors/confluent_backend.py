"""The confluent-kafka (librdkafka) implementation of the consumer and producer backends.

An optional extra (``pip install 'driftd[confluent]'``): several times the
throughput of kafka-python. ``confluent_kafka`` is imported when a backend is
built, never at module import, so this module loads without it.

librdkafka runs its network on threads of its own and serves callbacks
(rebalance, errors, statistics, logs) only inside ``consume()``, on the
calling thread. Connectivity is read from those callbacks: an "all brokers
down" error marks the client disconnected, a statistics report (every
``statistics_interval_ms``) or any record marks it connected again.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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
        "bootstrap.servers": s.bootstrap_servers,
        "client.id": s.client_id,
        "security.protocol": s.security_protocol,
        "reconnect.backoff.ms": s.reconnect_backoff_ms,
        "reconnect.backoff.max.ms": s.reconnect_backoff_max_ms,
    }
    if s.sasl_mechanism:
        cfg["sasl.mechanism"] = s.sasl_mechanism
        cfg["sasl.username"] = s.sasl_username
        cfg["sasl.password"] = s.sasl_password
    for key, prop in (
        ("ssl_cafile", "ssl.ca.location"),
        ("ssl_certfile", "ssl.certificate.location"),
        ("ssl_keyfile", "ssl.key.location"),
    ):
        if getattr(s, key):
            cfg[prop] = getattr(s, key)
    return cfg


def consumer_config(s: KafkaSettings) -> dict[str, Any]:
    """librdkafka consumer properties for ``s`` (they contain the password: never log)."""
    return {
        **_common_config(s),
        "group.id": s.group_id,
        "fetch.min.bytes": s.fetch_min_bytes,
        "fetch.max.bytes": s.fetch_max_bytes,
        "max.partition.fetch.bytes": s.max_partition_fetch_bytes,
        "fetch.wait.max.ms": s.fetch_max_wait_ms,
        "auto.offset.reset": s.auto_offset_reset,
        "session.timeout.ms": s.session_timeout_ms,
        "heartbeat.interval.ms": s.heartbeat_interval_ms,
        "max.poll.interval.ms": s.max_poll_interval_ms,
        "socket.timeout.ms": s.request_timeout_ms,
    }


def producer_config(s: KafkaSettings) -> dict[str, Any]:
    """librdkafka producer properties for ``s`` (they contain the password: never log)."""
    return {**_common_config(s), "message.timeout.ms": s.request_timeout_ms}


def _confluent() -> Any:
    try:
        return importlib.import_module("confluent_kafka")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the confluent backend needs confluent-kafka: pip install 'driftd[confluent]'"
        ) from exc


class ConfluentBackend(ConsumerBackend):
    """A :class:`~connectors.kafka_backend.ConsumerBackend` on ``confluent_kafka.Consumer``.

    ``config`` holds librdkafka properties (see :func:`consumer_config`);
    auto-commit and offset auto-store are forced off and the assignor to
    range. Construction does not contact the broker.
    """

    def __init__(self, config: Mapping[str, Any], *, statistics_interval_ms: int = 1000) -> None:
        ck = _confluent()
        self._ck = ck
        conf = dict(config)
        conf.update(
            {
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "partition.assignment.strategy": "range",
                "statistics.interval.ms": statistics_interval_ms,
                "error_cb": self._on_error,
                "stats_cb": self._on_stats,
                "logger": logging.getLogger("driftd.kafka.librdkafka"),
            }
        )
        try:
            self._consumer = ck.Consumer(conf)
        except ck.KafkaException as exc:
            raise BackendError(f"confluent consumer could not start: {exc!r}") from exc
        self._connected = False
        self._fatal: str | None = None
        self._on_assign: PartitionsCallback = lambda tps: None
        self._on_revoke: PartitionsCallback = lambda tps: None
        self._in_assign = False
        self._pending_seek: dict[TopicPartition, int] = {}
        self._pending_pause: set[TopicPartition] = set()
        self._callback_error: BaseException | None = None
        self._closed = False

    # -- client callbacks (served inside consume()) ----------------------------
    def _on_error(self, err: Any) -> None:
        code = err.code()
        if code == self._ck.KafkaError._ALL_BROKERS_DOWN:
            self._connected = False
        if err.fatal():
            self._fatal = err.str()
        log.debug("librdkafka error %s: %s", err.name(), err.str())

    def _on_stats(self, report: str) -> None:
        try:
            brokers = json.loads(report).get("brokers", {}).values()
            self._connected = any(
                b.get("nodeid", -1) >= 0 and b.get("state") == "UP" for b in brokers
            )
        except (ValueError, AttributeError):
            pass

    def _assign_cb(self, consumer: Any, partitions: list[Any]) -> None:
        self._in_assign = True
        self._pending_seek.clear()
        self._pending_pause.clear()
        try:
            self._on_assign([TopicPartition(tp.topic, tp.partition) for tp in partitions])
        except BaseException as exc:
            self._callback_error = self._callback_error or exc
        finally:
            self._in_assign = False
        for tp in partitions:
            offset = self._pending_seek.get(TopicPartition(tp.topic, tp.partition))
            if offset is not None:
                tp.offset = offset
        consumer.assign(partitions)
        if self._pending_pause:
            consumer.pause([self._ck.TopicPartition(t, p) for t, p in self._pending_pause])

    def _revoke_cb(self, consumer: Any, partitions: list[Any]) -> None:
        try:
            self._on_revoke([TopicPartition(tp.topic, tp.partition) for tp in partitions])
        except BaseException as exc:
            self._callback_error = self._callback_error or exc
        consumer.unassign()

    # -- ConsumerBackend -------------------------------------------------------
    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: PartitionsCallback,
        on_revoke: PartitionsCallback,
    ) -> None:
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._consumer.subscribe(
            list(topics),
            on_assign=self._assign_cb,
            on_revoke=self._revoke_cb,
            on_lost=self._revoke_cb,
        )

    def poll_batch(self, max_records: int, timeout: float) -> list[Fetched]:
        try:
            messages = self._consumer.consume(num_messages=max_records, timeout=max(0.0, timeout))
        except self._ck.KafkaException as exc:
            if self._callback_error is None:
                raise BackendError(f"confluent consume failed: {exc!r}") from exc
            messages = []
        error, self._callback_error = self._callback_error, None
        if error is not None:
            raise error
        if self._fatal is not None:
            raise BackendError(f"librdkafka fatal error: {self._fatal}")
        out: list[Fetched] = []
        append = out.append
        make = tuple.__new__  # Fetched(...) without NamedTuple.__new__'s overhead (hot path)
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() != self._ck.KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", err.str())
                continue
            headers = m.headers()
            append(
                make(
                    Fetched,
                    (
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.value() or b"",
                        tuple(headers) if headers else (),
                    ),
                )
            )
        if out:
            self._connected = True
        return out

    def seek(self, topic: str, partition: int, offset: int) -> None:
        if self._in_assign:  # not assigned yet: applied by assign() in _assign_cb
            self._pending_seek[TopicPartition(topic, partition)] = offset
            return
        try:
            self._consumer.seek(self._ck.TopicPartition(topic, partition, offset))
        except self._ck.KafkaException as exc:
            raise BackendError(f"seek {topic}:{partition}@{offset} failed: {exc!r}") from exc

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        if self._in_assign:
            self._pending_pause.update(partitions)
            return
        # librdkafka forgets the fetch start of a partition that has delivered
        # nothing yet when it is paused, and looks it up again on resume: under
        # repeated backpressure such a partition never starts. Leave it fetching
        # (its prefetch stays bounded by queued.max.messages.kbytes).
        started = [tp for tp in partitions if self._position(*tp) is not None]
        if started:
            self._consumer.pause([self._ck.TopicPartition(t, p) for t, p in started])

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        if self._in_assign:
            self._pending_pause.difference_update(partitions)
            return
        if partitions:
            self._consumer.resume([self._ck.TopicPartition(t, p) for t, p in partitions])

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(
            TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()
        )

    def _position(self, topic: str, partition: int) -> int | None:
        """librdkafka's own position: None until the partition delivered a message."""
        try:
            (tp,) = self._consumer.position([self._ck.TopicPartition(topic, partition)])
        except self._ck.KafkaException:
            return None
        return int(tp.offset) if tp.offset >= 0 else None

    def position(self, topic: str, partition: int) -> int | None:
        pos = self._position(topic, partition)
        if pos is None:
            # librdkafka knows no position until the partition delivered a
            # message; an empty one (low == high watermark) starts at its end
            # whatever the reset policy, so the merge need not wait on it.
            lo, hi = self._watermarks(topic, partition)
            if hi is not None and lo == hi:
                return hi
        return pos

    def _watermarks(self, topic: str, partition: int) -> tuple[int | None, int | None]:
        """The low and high watermarks of the last fetch response or statistics
        report (never asks the broker); None where unknown."""
        try:
            marks = self._consumer.get_watermark_offsets(
                self._ck.TopicPartition(topic, partition), cached=True
            )
        except self._ck.KafkaException:
            return None, None
        if marks is None:
            return None, None
        return (
            int(marks[0]) if marks[0] >= 0 else None,
            int(marks[1]) if marks[1] >= 0 else None,
        )

    def highwater(self, topic: str, partition: int) -> int | None:
        return self._watermarks(topic, partition)[1]

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        tps = [self._ck.TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            result = self._consumer.commit(offsets=tps, asynchronous=False)
        except self._ck.KafkaException as exc:
            raise BackendError(f"offset commit failed: {exc!r}") from exc
        failed = [tp for tp in result or () if tp.error is not None]
        if failed:
            raise BackendError(f"offset commit failed for {failed[0]}: {failed[0].error}")

    def connected(self) -> bool:
        return self._connected and not self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._consumer.close()
            except Exception as exc:  # closing must not fail the caller
                log.warning("confluent consumer close failed: %r", exc)


class ConfluentProducer(ProducerBackend):
    """A :class:`~connectors.kafka_backend.ProducerBackend` on ``confluent_kafka.Producer``
    (acks=all). Construction does not contact the broker."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        ck = _confluent()
        self._ck = ck
        conf = {"acks": "all", "linger.ms": 5, **config}
        conf["logger"] = logging.getLogger("driftd.kafka.librdkafka")
        self._producer = ck.Producer(conf)
        self._errors: list[str] = []
        self._closed = False

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err.str()}")

    def send(
        self,
        topic: str,
        value: bytes,
        headers: Headers = (),
        key: bytes | None = None,
        partition: int | None = None,
    ) -> None:
        extra = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers),
                    on_delivery=self._delivered,
                    **extra,
                )
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.05)
        self._producer.poll(0)

    def flush(self, timeout: float) -> None:
        left = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if left:
            raise BackendError(f"{left} records not acknowledged within {timeout}s")
        if errors:
            raise BackendError(f"{len(errors)} records not delivered: {errors[0]}")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._producer.purge()
            self._producer.flush(0)
