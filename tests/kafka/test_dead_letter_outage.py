"""A dead-letter topic whose broker is away stops nothing, and loses nothing.

The producer is built on first need and rebuilt with backoff; dead letters wait
in a bounded queue (a full one pauses reading); a checkpoint whose dead letters
cannot be flushed is skipped for that source only (nothing written, nothing
committed past an unacknowledged dead letter) and retried at the next one.

The logic runs on the in-memory broker (connectors/memory_broker.py); the last
test starts ``driftd run`` against a real client and a closed port, then a real
Tansu broker on it (see conftest.py: outside CI a missing broker skips it).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from connectors.base import Record
from connectors.kafka_backend import BackendError, ProducerBackend, TopicPartition
from connectors.kafka_source import REASON_HEADER, DeadLetterProducer, KafkaSettings, KafkaSource
from connectors.memory_broker import MemoryBroker, MemoryProducer
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.store import dead_letters
from tests.helpers import DEMO, demo_config_text, free_port
from tests.kafka.conftest import TansuBroker, need, tansu_binary

pytestmark = pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning")

PARTITIONS = 4


class Producers:
    """A producer factory for the in-memory broker whose builds (``builds_fail``)
    or flushes (``flushes_fail``) raise BackendError while the count is > 0."""

    def __init__(self, broker: MemoryBroker, builds_fail: int = 0, flushes_fail: int = 0) -> None:
        self.broker = broker
        self.builds_fail, self.flushes_fail = builds_fail, flushes_fail
        self.builds = self.failures = 0

    def __call__(self) -> ProducerBackend:
        self.builds += 1
        if self.builds_fail > 0:
            self.builds_fail -= 1
            self.failures += 1
            raise BackendError("test: producer cannot bootstrap")
        return _FlakyProducer(self)


class _FlakyProducer(MemoryProducer):
    def __init__(self, owner: Producers) -> None:
        super().__init__(owner.broker)
        self._owner = owner

    def flush(self, timeout: float) -> None:
        if self._owner.flushes_fail > 0:
            self._owner.flushes_fail -= 1
            self._owner.failures += 1
            raise BackendError("test: 1 record not delivered")
        super().flush(timeout)


def settings(**overrides: int) -> KafkaSettings:
    base = {"reconnect_backoff_ms": 0, "reconnect_backoff_max_ms": 0, **overrides}
    return KafkaSettings(bootstrap_servers="memory", group_id=f"g-{uuid.uuid4().hex[:8]}", **base)


def letters(broker: MemoryBroker, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    return [(v, dict(h)) for v, h in broker.read(topic, 0)]


def source_over(
    broker: MemoryBroker, s: KafkaSettings, topics: tuple[str, str], dead: DeadLetterProducer | None
) -> KafkaSource:
    return KafkaSource(
        s,
        predictions_topic=topics[0],
        outcomes_topic=topics[1],
        positions_for=lambda shards: {},
        backend_factory=lambda: broker.consumer(s.group_id),
        dead_letters=dead,
    )


# -- the producer on its own -----------------------------------------------------------
def test_producer_is_built_on_first_need_and_rebuilt_with_backoff() -> None:
    broker = MemoryBroker()
    broker.create_topic("dlq", 1)
    producers = Producers(broker, builds_fail=2)
    dead = DeadLetterProducer(
        settings(reconnect_backoff_ms=300, reconnect_backoff_max_ms=600),
        "dlq",
        producer_factory=producers,
    )
    dead.flush()  # nothing queued: nothing to build
    assert producers.builds == 0

    dead.send(b"raw", "malformed: x", source="kafka:p:0", offset=7)  # first need: a build fails
    assert (producers.builds, dead.pending) == (1, 1)
    with pytest.raises(BackendError, match=r"1 dead letters for topic 'dlq' held"):
        dead.flush()  # within the backoff: fails at once, builds nothing
    assert producers.builds == 1
    time.sleep(0.35)
    with pytest.raises(BackendError, match="cannot bootstrap"):
        dead.flush()  # due: builds again, fails again (the backoff doubles)
    assert producers.builds == 2
    time.sleep(0.35)
    with pytest.raises(BackendError):
        dead.flush()
    assert producers.builds == 2
    time.sleep(0.35)
    dead.flush()
    assert producers.builds == 3 and dead.pending == 0
    [(value, headers)] = letters(broker, "dlq")
    assert value == b"raw" and headers[REASON_HEADER] == b"malformed: x"
    assert headers["driftd-source"] == b"kafka:p:0" and headers["driftd-offset"] == b"7"
    dead.close()


def test_failed_flush_sends_every_unacknowledged_letter_again_exactly_once() -> None:
    broker = MemoryBroker()
    broker.create_topic("dlq", 1)
    producers = Producers(broker, flushes_fail=2)
    dead = DeadLetterProducer(settings(), "dlq", producer_factory=producers)
    for i in range(3):
        dead.send(f"v{i}".encode(), "bad", offset=i)
    for _ in range(2):
        with pytest.raises(BackendError, match="'dlq' not acknowledged"):
            dead.flush()
        assert dead.pending == 3 and letters(broker, "dlq") == []
    dead.send(b"v3", "bad", offset=3)
    dead.flush()
    assert [v for v, _ in letters(broker, "dlq")] == [b"v0", b"v1", b"v2", b"v3"]
    assert producers.builds == 3 and dead.pending == 0 and dead.pending_bytes == 0
    dead.flush()  # nothing left: nothing sent again
    assert len(letters(broker, "dlq")) == 4
    dead.close()


def test_the_queue_is_bounded_by_count_and_bytes() -> None:
    broker = MemoryBroker()
    broker.create_topic("dlq", 1)
    by_count = DeadLetterProducer(
        settings(), "dlq", producer_factory=Producers(broker, builds_fail=99), max_records=3
    )
    for i in range(3):
        assert not by_count.full
        by_count.send(b"x", "r", offset=i)
    assert by_count.full
    by_bytes = DeadLetterProducer(
        settings(), "dlq", producer_factory=Producers(broker, builds_fail=99), max_bytes=1000
    )
    by_bytes.send(b"x" * 900, "r")
    assert not by_bytes.full and by_bytes.pending_bytes > 900
    by_bytes.send(b"x" * 100, "r")
    assert by_bytes.full


# -- the source --------------------------------------------------------------------------
def reject(src: KafkaSource, record: Record) -> None:
    """What the daemon does with a record it cannot use."""
    assert isinstance(record.value, bytes)
    src.dead_letter(record.partition, record.offset, record.value, "malformed")


def test_a_full_dead_letter_queue_pauses_reading_until_delivered() -> None:
    broker = MemoryBroker()
    for t in ("p", "o"):
        broker.create_topic(t, 1)
    broker.create_topic("dlq", 1)
    for i in range(20):
        broker.produce("p", f"bad-{i}".encode())
    producers = Producers(broker, builds_fail=10**6)
    s = settings()
    dead = DeadLetterProducer(s, "dlq", producer_factory=producers, max_records=3)
    src = source_over(broker, s, ("p", "o"), dead)
    src.open({})
    got = 0
    for _ in range(20):
        for r in src.poll(2, 0.01):  # the daemon rejects them all
            reject(src, r)
            got += 1
    # Reading stopped at the bound, passed by at most one batch.
    assert got == 4 and dead.pending == 4 and src.paused
    with pytest.raises(BackendError):
        src.flush_dead_letters()

    producers.builds_fail = 0
    src.flush_dead_letters()
    src.commit({"kafka:p:0": 4})
    for _ in range(40):
        for r in src.poll(2, 0.01):
            reject(src, r)
            got += 1
        if dead.full:
            src.flush_dead_letters()
    src.flush_dead_letters()
    assert got == 20
    assert [v for v, _ in letters(broker, "dlq")] == [f"bad-{i}".encode() for i in range(20)]
    src.close()


def test_flush_fails_at_once_while_the_broker_is_away_and_delivers_after() -> None:
    broker = MemoryBroker()
    for t in ("p", "o"):
        broker.create_topic(t, 1)
    broker.create_topic("dlq", 1)
    broker.produce("p", b"bad")
    s = settings()
    dead = DeadLetterProducer(s, "dlq", producer_factory=broker.producer)
    src = source_over(broker, s, ("p", "o"), dead)
    src.open({})
    deadline = time.monotonic() + 5
    records = []
    while not records and time.monotonic() < deadline:
        records = src.poll(10, 0.01)
    src.dead_letter("kafka:p:0", 0, b"bad", "malformed")

    broker.stop()
    assert src.poll(10, 0.01) == [] and not src.ready()
    began = time.monotonic()
    with pytest.raises(BackendError, match="kafka unreachable"):
        src.flush_dead_letters()
    assert time.monotonic() - began < 0.5
    broker.start()
    src.poll(10, 0.01)
    src.flush_dead_letters()
    src.flush_dead_letters()
    assert letters(broker, "dlq") == [
        (
            b"bad",
            {REASON_HEADER: b"malformed", "driftd-source": b"kafka:p:0", "driftd-offset": b"0"},
        )
    ]
    src.close()


# -- the daemon ----------------------------------------------------------------------------
def demo_lines(first: int, n: int) -> list[bytes]:
    return (DEMO / "predictions.jsonl").read_bytes().splitlines()[first : first + n]


def wait_until(
    cond: Callable[[], bool], timeout: float, what: str, check: Callable[[], None] = lambda: None
) -> None:
    """Wait for ``cond``; ``check`` raises meanwhile if waiting is pointless."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        check()
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def quick_config(tmp_path: Path) -> Path:
    text = demo_config_text(tmp_path / "d.db")
    for old, new in (
        ("checkpoint_interval_seconds = 5.0", "checkpoint_interval_seconds = 0.05"),
        ("batch_size = 2000", "batch_size = 50\npoll_timeout_seconds = 0.02"),
        ("interval_seconds = 60.0", "interval_seconds = 86400.0"),
    ):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("failing", ["build", "flush"])
def test_daemon_skips_the_checkpoint_until_dead_letters_are_delivered(
    failing: str, quick_config: Path
) -> None:
    broker = MemoryBroker()
    for t in ("bad-p", "bad-o", "ok-p", "ok-o"):
        broker.create_topic(t, PARTITIONS)
    broker.create_topic("dlq", 1)
    # Source "bad": 20 valid predictions per partition, two malformed ones among them.
    bad_at: dict[int, list[int]] = {}
    good = iter(demo_lines(0, 80))
    for p in range(PARTITIONS):
        for _ in range(20):
            broker.produce("bad-p", next(good), p)
            if len(broker.read("bad-p", p)) in (5 + p, 15):
                bad_at.setdefault(p, []).append(
                    broker.produce("bad-p", f"not json {p}".encode(), p)
                )
    # Source "ok": valid only, no dead-letter topic.
    for i, line in enumerate(demo_lines(100, 80)):
        broker.produce("ok-p", line, i % PARTITIONS)

    big = 10**6
    producers = Producers(
        broker, **({"builds_fail": big} if failing == "build" else {"flushes_fail": big})
    )
    sources: list[KafkaSource] = []
    registry = CollectorRegistry()
    daemon: Daemon | None = None

    def positions_for(i: int) -> Callable[[frozenset[int]], dict[str, int]]:
        def get(shards: frozenset[int]) -> dict[str, int]:
            assert daemon is not None
            return daemon._load_shards(daemon.sources[i], shards)

        return get

    for i, (name, topics, dlq) in enumerate(
        (("bad", ("bad-p", "bad-o"), True), ("ok", ("ok-p", "ok-o"), False))
    ):
        s = settings(reconnect_backoff_ms=10, reconnect_backoff_max_ms=20)
        dead = DeadLetterProducer(s, "dlq", producer_factory=producers) if dlq else None
        sources.append(
            KafkaSource(
                s,
                predictions_topic=topics[0],
                outcomes_topic=topics[1],
                positions_for=positions_for(i),
                backend_factory=lambda s=s: broker.consumer(s.group_id),
                dead_letters=dead,
                name=name,
            )
        )
    groups = [src._settings.group_id for src in sources]
    daemon = Daemon(load_config(quick_config), registry=registry, sources=sources)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run(serve_http=False, dry_run=True)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def committed(i: int, topic: str) -> dict[int, int | None]:
        return {p: broker.committed(groups[i], TopicPartition(topic, p)) for p in range(PARTITIONS)}

    def failures() -> float:
        v = registry.get_sample_value("driftd_dead_letter_flush_failures_total", {"source": "bad"})
        return v or 0.0

    def stored(name: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for cp in daemon.store.load_checkpoints(f"shard/{name}/"):
            out.update(cp.positions)
        return out

    def rejected() -> int:
        try:
            return daemon.store.count(dead_letters)
        except Exception:  # no schema yet, or SQLite busy
            return 0

    def running() -> None:
        assert not errors and thread.is_alive(), f"the daemon stopped: {errors!r}"

    ends = {p: len(broker.read("bad-p", p)) for p in range(PARTITIONS)}
    try:
        wait_until(lambda: rejected() == 2 * PARTITIONS, 20, "rejections", running)
        wait_until(lambda: failures() >= 3, 20, "failed checkpoints", running)
        # The healthy source checkpoints meanwhile.
        wait_until(
            lambda: committed(1, "ok-p") == dict.fromkeys(range(PARTITIONS), 20), 20, "ok", running
        )
        assert not errors and thread.is_alive()
        # Nothing of "bad" moved past its first unacknowledged dead letter.
        for p, offset in committed(0, "bad-p").items():
            assert offset is None or offset <= bad_at[p][0], (p, offset, bad_at[p])
        for name, offset in stored("bad").items():
            assert offset <= bad_at[int(name.rsplit(":", 1)[1])][0], (name, offset)
        assert daemon.sources[0].dirty and letters(broker, "dlq") == []

        # The broker takes them now: the next checkpoint delivers and commits.
        producers.builds_fail = producers.flushes_fail = 0
        wait_until(lambda: committed(0, "bad-p") == ends, 20, "bad source committed", running)
        wait_until(lambda: len(letters(broker, "dlq")) == 2 * PARTITIONS, 5, "dead letters")
    finally:
        daemon.request_stop()
        thread.join(30)
    assert not thread.is_alive() and not errors, errors
    got = letters(broker, "dlq")
    keys = sorted((h["driftd-source"], int(h["driftd-offset"])) for _, h in got)
    assert keys == sorted(
        (f"kafka:bad-p:{p}".encode(), o) for p, offsets in bad_at.items() for o in offsets
    )  # each exactly once
    for value, headers in got:
        p = int(headers["driftd-source"].rsplit(b":", 1)[1])
        assert value == f"not json {p}".encode()
        assert headers[REASON_HEADER].startswith(b"malformed: ")
    assert stored("bad") == {f"kafka:bad-p:{p}": e for p, e in ends.items()}
    assert failures() >= 3
    for src in sources:
        src.close()


# -- the real client, a broker away at start-up ---------------------------------------------
def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@pytest.fixture
def tansu_binary_path() -> Iterator[str]:
    binary = tansu_binary()
    need(binary is not None, "Tansu broker not installed (run .ci/kafka.sh)")
    assert binary is not None
    yield binary


@pytest.mark.service
def test_daemon_with_a_dead_letter_topic_starts_while_the_broker_is_away(
    tmp_path: Path, tansu_binary_path: str
) -> None:
    from tests.kafka_daemon.test_kafka_crash import Driftd
    from tests.kafka_daemon.test_kafka_dead_letter_topic import read_topic

    kafka_port, http_port = free_port(), free_port()
    text = demo_config_text(tmp_path / "d.db", http_port=http_port)
    source = (
        '[[sources]]\ntype = "kafka"\nname = "k"\n'
        f'bootstrap_servers = "127.0.0.1:{kafka_port}"\n'
        'predictions_topic = "preds"\noutcomes_topic = "outs"\ndead_letter_topic = "dlq"\n'
        f'group_id = "g-{uuid.uuid4().hex[:8]}"\n'
        "session_timeout_ms = 6000\nheartbeat_interval_ms = 1000\nfetch_max_wait_ms = 100\n\n"
    )
    text, n = re.subn(r"\[\[sources\]\].*?(?=\[\[models\]\])", lambda m: source, text, flags=re.S)
    assert n == 1
    text = text.replace("checkpoint_interval_seconds = 5.0", "checkpoint_interval_seconds = 0.2")
    config = tmp_path / "c.toml"
    config.write_text(text)

    began = time.monotonic()
    proc = Driftd(config, tmp_path / "driftd.log")
    broker = TansuBroker(tansu_binary_path, tmp_path / "tansu.log", port=kafka_port)
    try:
        # kafka-python gives up bootstrapping after 5 s: a dead-letter producer
        # built at start-up used to end the process then, before /readyz existed.
        wait_until(lambda: readyz(http_port) == 503 or not proc.alive(), 15, "/readyz")
        watched_until = time.monotonic() + 6
        while time.monotonic() < watched_until:
            assert proc.alive(), proc.log()[-3000:]
            assert readyz(http_port) == 503
            time.sleep(0.2)

        # The broker comes: the source connects, and a rejected record reaches the topic.
        broker.start()
        broker.create_topics(["preds", "outs"])
        broker.create_topics(["dlq"], partitions=1)
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        producer.send("preds", b"not json", partition=0).get(timeout=10)
        producer.close()
        wait_until(lambda: readyz(http_port) == 200 or not proc.alive(), 20, "ready")
        assert proc.alive(), proc.log()[-3000:]
        sent = read_topic(broker.bootstrap, "dlq", at_least=1, timeout=10, settle=0.5)
        assert [(v, h["driftd-source"]) for v, h in sent] == [(b"not json", b"kafka:preds:0")]
    finally:
        code = proc.terminate(timeout=20)
        broker.stop()
    assert code == 0, proc.log()[-3000:]
    assert "Traceback" not in proc.log()
    print(f"took {time.monotonic() - began:.1f}s")
