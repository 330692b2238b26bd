"""Raw consume throughput of each Kafka client on one topic: the ceiling figures.

Produces N prediction events (JSON, 20 numeric features, ~560 bytes) to a
4-partition topic, then reads them all with one consumer per client library
and layer, each in a fresh consumer group:

- ``raw``: the library's own batch call (kafka-python ``poll(max_records=)``,
  confluent-kafka ``consume(num_messages=)``), counting records;
- ``raw-nocrc``: the same for kafka-python with ``check_crcs=False`` (what
  librdkafka does by default; kafka-python checks CRCs in pure Python unless
  the ``crc32c`` package is installed) - not run by default;
- ``backend``: driftd's backend (``poll_batch``), which builds ``Fetched`` tuples;
- ``source``: ``KafkaSource.poll``, which builds the ``Record`` objects the
  daemon gets (positions, shards, backpressure bookkeeping).

The rate is records / seconds from the first record to the last (the group
join is reported apart). Without ``--bootstrap`` a Tansu broker (see
../shared/kafka.md, .ci/kafka.sh) is started on 127.0.0.1 and killed at the
end. SIGINT/SIGTERM only set a flag: the run stops after the current batch.

    python bench/bench_kafka_consume.py --events 1000000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.kafka_source import (  # noqa: E402
    Backpressure,
    KafkaSettings,
    KafkaSource,
    make_consumer,
)

STOP = False
STALL_SECONDS = 30.0


def _request_stop(signum: int, frame: FrameType | None) -> None:
    global STOP
    STOP = True


def event(i: int, rng: random.Random) -> bytes:
    features = ",".join(f'"f{j:02d}":{rng.gauss(0, 1):.6f}' for j in range(20))
    return (
        f'{{"model":"churn","model_version":"v3","prediction_id":"p-{i:09d}",'
        f'"timestamp":{1_790_000_000 + i * 0.001:.3f},"features":{{{features}}},'
        f'"prediction":{i % 2},"score":{rng.random():.6f}}}'
    ).encode()


class Tansu:
    """A throwaway broker on 127.0.0.1 (memory storage)."""

    def __init__(self) -> None:
        binary = subprocess.run(
            ["bash", str(ROOT / ".ci" / "kafka.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        url = f"tcp://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkdtemp(prefix="bench-tansu-")) / "tansu.log"
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"tansu did not start; see {self.log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, n: int, partitions: int) -> tuple[float, int]:
    """Write ``n`` events round-robin over the partitions; returns (seconds, bytes)."""
    rng = random.Random(7)
    total = 0
    began = time.perf_counter()
    if importlib.util.find_spec("confluent_kafka") is not None:
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": 1,
                      "batch.num.messages": 10_000, "queue.buffering.max.messages": 200_000})  # fmt: skip
        for i in range(n):
            if STOP:
                break
            value = event(i, rng)
            total += len(value)
            while True:
                try:
                    p.produce(topic, value, partition=i % partitions)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 10_000 == 0:
                p.poll(0)
        if p.flush(120):
            raise RuntimeError("records not acknowledged in 120 s")
    else:
        from kafka import KafkaProducer

        kp = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1,
                           batch_size=256 * 1024)  # fmt: skip
        for i in range(n):
            if STOP:
                break
            value = event(i, rng)
            total += len(value)
            kp.send(topic, value, partition=i % partitions)
        kp.flush(120)
        kp.close()
    return time.perf_counter() - began, total


def drain(poll: Callable[[], int], n: int) -> tuple[float, float, int]:
    """Call ``poll`` (returns records read) until ``n`` records; returns
    (seconds to the first record, seconds first..last, records)."""
    began = time.perf_counter()
    first = last = 0.0
    count = 0
    progress = time.monotonic()
    while count < n and not STOP:
        got = poll()
        now = time.monotonic()
        if got:
            if count == 0:
                first = time.perf_counter()
            count += got
            last = time.perf_counter()
            progress = now
        elif now - progress > STALL_SECONDS:
            print(f"  stalled at {count} records", file=sys.stderr)
            break
    return (first - began if count else 0.0), (last - first if count else 0.0), count


def run_raw_nocrc(client: str, settings: KafkaSettings, topic: str, n: int, batch: int) -> tuple:
    """kafka-python without CRC checks (librdkafka's default): without the
    ``crc32c`` package kafka-python checks CRCs in pure Python."""
    if client == "confluent":
        return run_raw(client, settings, topic, n, batch)
    return run_raw(client, settings, topic, n, batch, check_crcs=False)


def run_raw(
    client: str, settings: KafkaSettings, topic: str, n: int, batch: int, check_crcs: bool = True
) -> tuple:
    if client == "confluent":
        from confluent_kafka import Consumer

        from connectors.confluent_backend import consumer_config

        c = Consumer({**consumer_config(settings), "enable.auto.commit": False})
        c.subscribe([topic])
        try:
            return drain(lambda: sum(1 for m in c.consume(batch, 0.5) if m.error() is None), n)
        finally:
            c.close()
    from kafka import KafkaConsumer

    from connectors.kafka_python_backend import consumer_config as kp_config

    kc = KafkaConsumer(**{**kp_config(settings), "enable_auto_commit": False,
                          "check_crcs": check_crcs})  # fmt: skip
    kc.subscribe([topic])
    try:
        return drain(lambda: sum(map(len, kc.poll(500, max_records=batch).values())), n)
    finally:
        kc.close(autocommit=False)


def run_backend(client: str, settings: KafkaSettings, topic: str, n: int, batch: int) -> tuple:
    backend = make_consumer(settings)
    backend.subscribe([topic], lambda tps: None, lambda tps: None)
    try:
        return drain(lambda: len(backend.poll_batch(batch, 0.5)), n)
    finally:
        backend.close()


def run_source(client: str, settings: KafkaSettings, topic: str, n: int, batch: int) -> tuple:
    src = KafkaSource(settings, predictions_topic=topic, outcomes_topic=topic + "-outcomes",
                      positions_for=lambda shards: {},
                      backpressure=Backpressure(max_in_flight_records=n + batch))  # fmt: skip
    src.open({})
    try:
        return drain(lambda: len(src.poll(batch, 0.5)), n)
    finally:
        src.close()


LAYERS: dict[str, Callable[..., tuple]] = {
    "raw": run_raw,
    "raw-nocrc": run_raw_nocrc,
    "backend": run_backend,
    "source": run_source,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2000, help="records per poll call")
    ap.add_argument("--clients", default="kafka-python,confluent")
    ap.add_argument("--layers", default="raw,backend,source")
    ap.add_argument("--bootstrap", help="use this broker instead of starting Tansu")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)

    clients = [c for c in args.clients.split(",") if c]
    if "confluent" in clients and importlib.util.find_spec("confluent_kafka") is None:
        print("confluent-kafka not installed: skipping it (pip install 'driftd[confluent]')")
        clients.remove("confluent")
    broker = None if args.bootstrap else Tansu()
    bootstrap = args.bootstrap or f"127.0.0.1:{broker.port}"  # type: ignore[union-attr]
    results: list[dict[str, Any]] = []
    try:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        create_topics(bootstrap, [topic, topic + "-outcomes"], args.partitions)
        seconds, nbytes = produce(bootstrap, topic, args.events, args.partitions)
        print(f"produced {args.events:,} events ({nbytes / args.events:.0f} B avg) to "
              f"{args.partitions} partitions in {seconds:.1f}s = {args.events / seconds:,.0f}/s")  # fmt: skip
        crc = "crc32c (C)" if importlib.util.find_spec("crc32c") else "pure Python"
        print(f"kafka-python CRC32C: {crc}")
        print(f"{'client':<13}{'layer':<11}{'records':>10}{'join s':>8}{'read s':>8}"
              f"{'msg/s':>11}{'MB/s':>7}")  # fmt: skip
        for client in clients:
            for layer in [x for x in args.layers.split(",") if x]:
                if STOP:
                    break
                settings = KafkaSettings(
                    bootstrap_servers=bootstrap, client=client,
                    group_id=f"bench-{uuid.uuid4().hex[:8]}",
                    session_timeout_ms=6000, heartbeat_interval_ms=1000,
                )  # fmt: skip
                join, read, count = LAYERS[layer](client, settings, topic, args.events, args.batch)
                rate = count / read if read > 0 else 0.0
                mbps = rate * nbytes / args.events / 1e6
                print(f"{client:<13}{layer:<11}{count:>10,}{join:>8.1f}{read:>8.1f}"
                      f"{rate:>11,.0f}{mbps:>7.1f}", flush=True)  # fmt: skip
                results.append({"client": client, "layer": layer, "records": count,
                                "join_s": join, "read_s": read, "msg_per_s": rate})  # fmt: skip
    finally:
        if broker is not None:
            broker.stop()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"events": args.events, "results": results}, indent=2))
    return 0 if not STOP else 130


if __name__ == "__main__":
    sys.exit(main())
