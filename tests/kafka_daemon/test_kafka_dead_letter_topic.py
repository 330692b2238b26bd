"""``dead_letter_topic``: rejected Kafka records also go to a topic, at least once.

``driftd run`` (a subprocess, SQLite store) consumes the bundled demo stream
with the malformed records of test_kafka_crash.py on a fresh Tansu broker,
with ``dead_letter_topic`` set. It is killed with SIGKILL once a few records
were rejected, then restarted to the end. Every record in the
``dead_letters`` table must then be in the topic, raw value unchanged, with
``driftd-reason`` (starting with the reason code), ``driftd-source`` and
``driftd-offset`` headers: exactly once if a checkpoint had passed it before
the kill (the daemon flushes the producer before each checkpoint), at least
once otherwise (replayed after the restart). Nothing else is in the topic.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.store import Store, dead_letters
from tests.helpers import Receiver
from tests.kafka.conftest import TansuBroker, tansu_binary
from tests.kafka_daemon.test_kafka_crash import (
    CLIENTS,
    MALFORMED,
    Driftd,
    engine_for,
    kafka_config,
    need,
    need_client,
    produce,
    run_to_completion,
    safe_positions,
    stream,
    wait_until,
    with_group,
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    binary = tansu_binary()
    need(binary is not None, "Tansu broker not installed (run .ci/kafka.sh)")
    assert binary is not None
    b = TansuBroker(binary, tmp_path / "tansu.log")
    b.start()
    yield b
    b.stop()


def read_topic(
    bootstrap: str, topic: str, at_least: int, timeout: float = 20.0, settle: float = 1.5
) -> list[tuple[bytes, dict[str, bytes]]]:
    """Every record of the one-partition ``topic`` as (value, headers): read
    until ``at_least`` came, then ``settle`` seconds more (duplicates), at most
    ``timeout``. (No end offsets: Tansu's ListOffsets "latest" is wrong.)"""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None, request_timeout_ms=10_000)  # fmt: skip
    out: list[tuple[bytes, dict[str, bytes]]] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout
        settled: float | None = None
        while time.monotonic() < deadline and (settled is None or time.monotonic() < settled):
            for records in consumer.poll(200).values():
                out += [(r.value or b"", dict(r.headers or ())) for r in records]
            if settled is None and len(out) >= at_least:
                settled = time.monotonic() + settle
    finally:
        consumer.close(autocommit=False)
    return out


@pytest.mark.service
@pytest.mark.parametrize("client", CLIENTS)
def test_rejected_records_reach_the_dead_letter_topic_across_a_kill(
    client: str, broker: TansuBroker, tmp_path: Path, receiver: Receiver
) -> None:
    need_client(client)
    topics = produce(broker.bootstrap, stream(), "dlq")
    dlq = f"dead-{uuid.uuid4().hex[:8]}"
    broker.create_topics([dlq], partitions=1)
    group = f"dlq-{uuid.uuid4().hex[:8]}"
    base = kafka_config(tmp_path, "dlq", bootstrap=broker.bootstrap, topics=topics, client=client,
                        group=group, receiver=receiver,
                        source_extra=f'dead_letter_topic = "{dlq}"\n')  # fmt: skip
    store = Store(engine_for(f"sqlite:///{tmp_path / 'dlq.db'}"))

    def stored() -> int:
        try:
            return store.count(dead_letters)
        except Exception:  # no schema yet
            return 0

    first = Driftd(with_group(base, f"{group}-0", "dlq-0"), tmp_path / "dlq-0.log")
    try:
        wait_until(lambda: stored() >= 3, 60, "three rejected records", first)
        time.sleep(random.Random(group).uniform(0.0, 0.3))
    finally:
        first.kill9()
    at_kill = safe_positions(store)
    # A fresh group: no wait for the killed member's session (see test_kafka_crash.py).
    run_to_completion(with_group(base, f"{group}-1", "dlq-1"), store, topics,
                      tmp_path / "dlq-1.log", deliveries=False)  # fmt: skip

    rows = store.rows(dead_letters)
    assert len(rows) == len(MALFORMED)
    sent = read_topic(broker.bootstrap, dlq, at_least=len(rows))
    copies = Counter(
        (h["driftd-source"].decode(), int(h["driftd-offset"])) for _, h in sent
    )  # fmt: skip
    assert set(copies) == {(r["source_partition"], r["source_offset"]) for r in rows}, sent
    by_position = {(h["driftd-source"].decode(), int(h["driftd-offset"])): (v, h) for v, h in sent}
    before = after = 0
    for r in rows:
        key = (r["source_partition"], r["source_offset"])
        value, headers = by_position[key]
        assert value == bytes(r["payload"])
        assert headers["driftd-reason"].decode().startswith(f"{r['reason_code']}: "), headers
        if r["source_offset"] < at_kill.get(r["source_partition"], 0):
            before += 1
            assert copies[key] == 1, f"{key} was checkpointed before the kill: sent once"
        else:
            after += 1
            assert 1 <= copies[key] <= 2, f"{key}: {copies[key]} copies"
    # The kill fell between rejected records: both rules above were exercised.
    assert before and after, (before, after, at_kill)
