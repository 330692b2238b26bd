"""Crash safety of ``driftd run`` on a Kafka source, against a real broker.

The bundled demo stream (20,000 predictions, 18,003 outcomes, drift at
prediction 12,000) plus a few malformed records is produced, merged in event
time and keyed by prediction_id, to two co-partitioned 4-partition topics on
a fresh Tansu broker (see ../../../shared/kafka.md). ``driftd run`` then
consumes it as a subprocess (SQLite store, checkpoints every 0.2 s, a signed
webhook action on a local receiver) and is killed with SIGKILL at random
points: during start-up, while it joins the group, while it processes and
checkpoints. After the last restart has consumed everything, the detector
state of every shard, the per-model counts, the join, the signals, the dead
letters and the decisions must equal a run that was never killed (on its own
topics, group and database), and the webhook must have seen exactly one
idempotency key per fired decision.

A Kafka source never ends: a run is complete when the positions stored with
the checkpoints equal the topics' high watermarks (known from the producer's
acknowledgements: Tansu's ListOffsets "latest" is wrong). Every wait has a
deadline; processes are stopped by PID.

Outside CI a missing broker binary or confluent-kafka skips; under CI=true it fails.

The helpers here are reused by test_kafka_scaleout.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from kafka.partitioner.default import murmur2
from sqlalchemy import Engine

from monitor.pipeline import ShardState
from monitor.store import Store, dead_letters, decisions, deliveries, make_engine, signals
from tests.helpers import DEMO, ROOT, Receiver, demo_config_text, free_port
from tests.kafka.conftest import TansuBroker, tansu_binary

CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
PARTITIONS = 4
SOURCE = "demo"
KEY_ENV = "DRIFTD_TEST_KEY"
KEY = "kafka-crash-test-key-0123456789"
PREDICTIONS_TOTAL = 20_000
OUTCOMES_TOTAL = 18_003

CLIENTS = ("kafka-python", pytest.param("confluent", marks=pytest.mark.service))

#: Records driftd must reject: (stream, key, value). ``{ts}`` becomes the event
#: time of the record before it in the stream, so that a source merging the
#: topics by event time keeps them in place. Spread through the stream (``stream``).
MALFORMED: tuple[tuple[str, str, str], ...] = (
    ("predictions", "bad-0", '{"model": "credit-risk", "prediction_id": "bad-0", '),
    ("outcomes", "bad-1", "not json at all"),
    ("predictions", "bad-2",
     '{"model":"no-such-model","model_version":"v1","prediction_id":"bad-2",'
     '"timestamp":{ts},"features":{},"prediction":"repaid"}'),
    ("predictions", "bad-3",
     '{"model":"credit-risk","model_version":"v1","prediction_id":"bad-3",'
     '"timestamp":{ts},"features":{"income":"lots"},"prediction":"repaid"}'),
    ("outcomes", "bad-4",
     '{"model":"credit-risk","prediction_id":"bad-4","timestamp":{ts},'
     '"label":"default","extra":1}'),
    ("predictions", "bad-5", ""),  # a tombstone (null value)
    ("predictions", "bad-6",
     '{"model":"credit-risk","model_version":"v1","prediction_id":"bad-6",'
     '"timestamp":NaN,"features":{},"prediction":"repaid"}'),
    ("outcomes", "bad-7", '{"model":"credit-risk","prediction_id":"bad-7"}'),
)  # fmt: skip


def need(ok: bool, reason: str) -> None:
    """Skip when ``ok`` is false, or fail under CI=true (no silent gaps there)."""
    if not ok:
        if CI:
            pytest.fail(f"{reason} (CI=true: missing dependencies fail)", pytrace=False)
        pytest.skip(reason)


def need_client(client: str) -> None:
    if client == "confluent":
        need(
            importlib.util.find_spec("confluent_kafka") is not None, "confluent-kafka not installed"
        )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A fresh Tansu broker per test (a stuck group never leaks into another test)."""
    binary = tansu_binary()
    need(binary is not None, "Tansu broker not installed (run .ci/kafka.sh)")
    assert binary is not None
    b = TansuBroker(binary, tmp_path / "tansu.log")
    b.start()
    yield b
    b.stop()


# -- the stream ---------------------------------------------------------------------
def partition_for(key: bytes) -> int:
    """Kafka's default partitioner (murmur2), applied here so both topics and both
    client libraries agree: same key, same partition number, same shard."""
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def stream(malformed: bool = True) -> list[tuple[str, bytes, bytes]]:
    """(stream, key, value) for the demo files merged in event time (predictions
    first on ties), with the malformed records spread evenly through it."""
    rows: list[tuple[float, int, str, bytes, bytes]] = []
    for order, name in enumerate(("predictions", "outcomes")):
        for line in (DEMO / f"{name}.jsonl").read_bytes().splitlines():
            d = json.loads(line)
            rows.append((float(d["timestamp"]), order, name, d["prediction_id"].encode(), line))
    rows.sort(key=lambda r: (r[0], r[1]))
    out = [(name, key, value) for _, _, name, key, value in rows]
    if malformed:
        step = len(rows) // (len(MALFORMED) + 1)
        for i, (name, key, value) in reversed(list(enumerate(MALFORMED, start=1))):
            ts = repr(rows[i * step - 1][0])
            out.insert(i * step, (name, key.encode(), value.replace("{ts}", ts).encode()))
    return out


@dataclass(frozen=True)
class Topics:
    predictions: str
    outcomes: str
    #: partition name ("kafka:TOPIC:N") -> high watermark after producing.
    highwater: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.highwater.values())


def produce(bootstrap: str, records: list[tuple[str, bytes, bytes]], tag: str) -> Topics:
    """Create two fresh 4-partition topics and write ``records`` to them, keyed by
    prediction id; returns the high watermarks from the acknowledgements."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    suffix = uuid.uuid4().hex[:8]
    names = {"predictions": f"{tag}-pred-{suffix}", "outcomes": f"{tag}-out-{suffix}"}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names.values()])
    finally:
        admin.close()
    highwater: dict[str, int] = {}

    def acked(topic: str, partition: int, offset: int) -> None:
        name = f"kafka:{topic}:{partition}"
        highwater[name] = max(highwater.get(name, 0), offset + 1)

    if importlib.util.find_spec("confluent_kafka") is not None:
        from confluent_kafka import Producer

        errors: list[str] = []

        def report(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                acked(msg.topic(), msg.partition(), msg.offset())

        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                      "enable.idempotence": False})  # fmt: skip
        for stream_name, key, value in records:
            while True:
                try:
                    p.produce(names[stream_name], value or None, key=key,
                              partition=partition_for(key), on_delivery=report)  # fmt: skip
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        assert p.flush(60) == 0, "records not acknowledged within 60 s"
        assert not errors, errors[:3]
    else:
        from kafka import KafkaProducer

        kp = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
        futures = [
            kp.send(names[s], value or None, key=key, partition=partition_for(key))
            for s, key, value in records
        ]
        kp.flush(60)
        for f in futures:
            md = f.get(timeout=10)
            acked(md.topic, md.partition, md.offset)
        kp.close()
    assert sum(highwater.values()) == len(records)
    return Topics(names["predictions"], names["outcomes"], highwater)


# -- configuration --------------------------------------------------------------------
def kafka_config(
    tmp: Path,
    name: str,
    *,
    bootstrap: str,
    topics: Topics,
    client: str,
    group: str,
    receiver: Receiver,
    storage_url: str | None = None,
    max_in_flight_records: int = 2000,
    source_extra: str = "",
) -> Path:
    """The bundled config with the file source swapped for a Kafka source, a
    signed webhook as the retrain action (``/NAME`` on the receiver), quick
    checkpoints, and batch checks that never come due (their schedule is wall
    clock: a run could not be compared with another)."""
    actions = (
        '[[actions]]\ntype = "webhook"\nname = "retrain"\n'
        f'url = "{receiver.url}/{name}"\nsigning_key = "${{{KEY_ENV}}}"\nbackoff_seconds = 0.1\n'
    )
    text = demo_config_text(tmp / f"{name}.db", actions=actions)
    source = (
        f'[[sources]]\ntype = "kafka"\nname = "{SOURCE}"\n'
        f'bootstrap_servers = "{bootstrap}"\n'
        f'predictions_topic = "{topics.predictions}"\noutcomes_topic = "{topics.outcomes}"\n'
        f'client = "{client}"\ngroup_id = "{group}"\n'
        "session_timeout_ms = 6000\nheartbeat_interval_ms = 1000\nfetch_max_wait_ms = 100\n"
        # Backpressure: at most this many records between checkpoints, which
        # also stretches the run so that kills land all along it.
        f"max_in_flight_records = {max_in_flight_records}\n{source_extra}\n"
    )
    text, n = re.subn(r"\[\[sources\]\].*?(?=\[\[models\]\])", lambda m: source, text, flags=re.S)
    assert n == 1
    if storage_url is not None:
        text = re.sub(
            r'(?m)^url = "sqlite:///.*"$',
            lambda m: f"url = {json.dumps(storage_url)}",
            text,
            count=1,
        )
    for old, new in (
        ("checkpoint_interval_seconds = 5.0", "checkpoint_interval_seconds = 0.2"),
        ("batch_size = 2000", "batch_size = 500\npoll_timeout_seconds = 0.1"),
        ("interval_seconds = 60.0", "interval_seconds = 86400.0"),
    ):
        assert old in text
        text = text.replace(old, new)
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path


def with_group(config: Path, group: str, name: str) -> Path:
    """A copy of ``config`` under another group id (and its own HTTP port)."""
    text = re.sub(r'(?m)^group_id = ".*"$', f'group_id = "{group}"', config.read_text())
    text = re.sub(r'(?m)^bind = "127\.0\.0\.1:\d+"$', f'bind = "127.0.0.1:{free_port()}"', text)
    path = config.with_name(f"{name}.toml")
    path.write_text(text)
    return path


# -- processes --------------------------------------------------------------------------
class Driftd:
    """One ``driftd run`` subprocess; its stderr goes to a file that waits read."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
            cwd=ROOT, env={**os.environ, KEY_ENV: KEY, **(env or {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> bool:
        """Wait until ``pattern`` (a regex) shows in the log past character ``after``;
        False on timeout or if the process ends first."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            if rx.search(self.log(), after):
                return True
            if not self.alive():
                return bool(rx.search(self.log(), after))
            time.sleep(0.02)
        return False

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.reap()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (the daemon finishes its batch, checkpoints, leaves the group);
        SIGKILL if it has not exited within ``timeout``. Returns the exit code."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(
                f"driftd ignored SIGTERM for {timeout}s; log: {self.log_path}"
            ) from None
        self.reap()
        return self.proc.returncode

    def reap(self) -> None:
        try:
            self.proc.wait(timeout=15)
        finally:
            self._log.close()


# -- the store ----------------------------------------------------------------------------
def positions(store: Store) -> dict[str, int]:
    out: dict[str, int] = {}
    for cp in store.load_checkpoints(f"shard/{SOURCE}/"):
        out.update(cp.positions)
    return out


def safe_positions(store: Store) -> dict[str, int]:
    """``positions``, or {} while the schema does not exist yet (or SQLite is busy)."""
    try:
        return positions(store)
    except Exception:
        return {}


def processed(store: Store, topics: Topics) -> bool:
    return safe_positions(store) == topics.highwater


def deliveries_done(store: Store) -> bool:
    try:
        rows = store.rows(deliveries)
    except Exception:
        return False
    return bool(rows) and all(r["status"] != "pending" for r in rows)


def wait_until(cond: Callable[[], bool], timeout: float, what: str, *procs: Driftd) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        for p in procs:
            assert p.alive(), (
                f"driftd exited with {p.proc.returncode} while waiting for {what}:\n{p.log()[-3000:]}"
            )
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.log_path}\n{p.log()[-3000:]}" for p in procs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


def shard_states(store: Store) -> dict[str, ShardState]:
    return {cp.key: pickle.loads(cp.state) for cp in store.load_checkpoints(f"shard/{SOURCE}/")}


def detector_states(state: ShardState) -> dict[str, Any]:
    """Every detector pickled, by model/version/target/type/spec index (as
    tests/test_restart.py compares them)."""
    out: dict[str, Any] = {}
    for model, versions in state.versions.items():
        for version, vs in versions.items():
            out[f"{model}/{version}/n"] = (vs.n, vs.n_outcomes)
            for group in (*vs.numeric, *vs.categorical, vs.score, vs.error):
                for target, dtype, index, det in group:
                    out[f"{model}/{version}/{target}/{dtype}/{index}"] = pickle.dumps(det)
    return out


def final_view(store: Store) -> dict[str, Any]:
    """What two runs over the same input must agree on. Which of several
    decisions derived in different shards wins the rule's (cross-shard)
    cooldown depends on how the shards' processing interleaves, so decisions
    are compared as a set and by outcome count, not by which one fired."""
    states = shard_states(store)
    counts: Counter[str] = Counter()
    join: Counter[str] = Counter()
    for s in states.values():
        counts.update(s.counts)
        join.update(s.join.stats.as_dict())
    decs = store.rows(decisions)
    return {
        "positions": positions(store),
        "counts": dict(counts),
        "join": dict(join),
        "detectors": {k: detector_states(s) for k, s in states.items()},
        "shard_counts": {k: dict(s.counts) for k, s in states.items()},
        "signals": sorted(r["signal_key"] for r in store.rows(signals)),
        "dead_letters": sorted(
            (
                r["source_partition"].rsplit(":", 1)[1],
                r["source_offset"],
                r["stream"],
                r["reason_code"],
            )
            for r in store.rows(dead_letters)
        ),
        "decisions": sorted(r["idempotency_key"] for r in decs),
        "decision_outcomes": dict(Counter(r["outcome"] for r in decs)),
    }


def fired(store: Store) -> set[str]:
    return {r["idempotency_key"] for r in store.rows(decisions) if r["outcome"] == "fired"}


def differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Human-readable differences between two ``final_view``s (topic names stripped)."""
    out = []
    for key in want:
        a, b = got[key], want[key]
        if key == "positions":
            a = sorted(
                ((p.split(":")[1].split("-")[1], int(p.rsplit(":", 1)[1])), o) for p, o in a.items()
            )
            b = sorted(
                ((p.split(":")[1].split("-")[1], int(p.rsplit(":", 1)[1])), o) for p, o in b.items()
            )
        if a == b:
            continue
        if key == "detectors":
            diff = sorted(
                f"{shard}:{det}" for shard in set(a) | set(b)
                for det in set(a.get(shard, {})) | set(b.get(shard, {}))
                if a.get(shard, {}).get(det) != b.get(shard, {}).get(det)
            )  # fmt: skip
            out.append(f"detectors differ ({len(diff)}): {diff[:12]}")
        elif isinstance(a, list):
            extra, missing = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            out.append(f"{key}: {len(a)} vs {len(b)}; extra {extra[:8]}, missing {missing[:8]}")
        else:
            out.append(f"{key}: {a} != {b}")
    return out


def join_problems(view: dict[str, Any], what: str) -> list[str]:
    """Every demo outcome arrives 60-900 s (event time) after its prediction,
    well within join.ttl_seconds (3600): a source that hands each shard's two
    topics over in event-time order (as the file replay does) joins all 18,003
    and orphans none. One that lets a topic run ahead of the other expires
    predictions and orphans outcomes, and the error detectors then see a
    stream that depends on how fetches happened to interleave."""
    join = view["join"]
    if (join.get("matched"), join.get("orphan_outcomes")) == (OUTCOMES_TOTAL, 0):
        return []
    return [f"{what}: join matched {join.get('matched')} of {OUTCOMES_TOTAL} outcomes: {join}"]


def engine_for(url: str) -> Engine:
    return make_engine(url)


def run_to_completion(
    config: Path,
    store: Store,
    topics: Topics,
    log_path: Path,
    timeout: float = 120.0,
    deliveries: bool = True,
) -> Driftd:
    """Start driftd, wait until every record is checkpointed (and, with
    ``deliveries``, every delivery is settled), then SIGTERM it (exit 0 expected)."""
    proc = Driftd(config, log_path)
    try:
        wait_until(lambda: processed(store, topics), timeout, "all records processed", proc)
        if deliveries:
            wait_until(lambda: deliveries_done(store), 30, "deliveries settled", proc)
    except BaseException:
        proc.kill9()
        raise
    assert proc.terminate() == 0, proc.log()[-3000:]
    return proc


# -- the test --------------------------------------------------------------------------------
ASSIGNED = r"assigned shards"
#: How each launch but the last is killed: "start" at 0.05-4.5 s after the
#: process starts (imports, schema, restore, connect, group join); "assigned"
#: 0-0.5 s after it got its partitions (restore, first batches, first
#: checkpoint); "progress" 0-0.5 s after it checkpointed past the previous
#: launch (batches, checkpoints, commits, backpressure, deliveries).
KILLS = ("start", "progress", "assigned", "progress", "progress", "start",
         "progress", "assigned", "progress", "start", "progress")  # fmt: skip
#: Launches (by index; len(KILLS) is the last, unkilled one) that rejoin the
#: group of the member just killed; the others join a fresh group (see below).
REUSE_GROUP = frozenset({len(KILLS)})


def kill_at_random_points(
    base: Path, store: Store, topics: Topics, tmp: Path, group: str, rng: random.Random
) -> list[int]:
    """Launch and SIGKILL driftd per ``KILLS``; returns the total checkpointed
    position after each kill."""
    generation = 0
    progress: list[int] = []
    for launch, mode in enumerate(KILLS):
        if launch > 0 and launch not in REUSE_GROUP:
            generation += 1
        before = sum(safe_positions(store).values())
        cfg = with_group(base, f"{group}-{generation}", f"{base.stem}-{launch}")
        proc = Driftd(cfg, tmp / f"{base.stem}-{launch}.log")
        try:
            if mode == "start":
                time.sleep(rng.uniform(0.05, 4.5))
            elif mode == "assigned":
                assert proc.wait_for(ASSIGNED, 40), f"no assignment:\n{proc.log()[-3000:]}"
                time.sleep(rng.uniform(0.0, 0.5))
            else:
                if before < topics.total:
                    wait_until(
                        lambda before=before: sum(safe_positions(store).values()) > before,
                        40,
                        f"launch {launch} to checkpoint past {before}",
                        proc,
                    )
                time.sleep(rng.uniform(0.0, 0.5))
            assert proc.alive(), f"driftd exited early:\n{proc.log()[-3000:]}"
        finally:
            proc.kill9()
        progress.append(sum(safe_positions(store).values()))
    return progress


@pytest.mark.service
@pytest.mark.parametrize("client", CLIENTS)
def test_kill_9_at_random_points_loses_and_doubles_nothing(
    client: str, broker: TansuBroker, tmp_path: Path, receiver: Receiver
) -> None:
    need_client(client)
    records = stream()
    ref_topics = produce(broker.bootstrap, records, "ref")
    topics = produce(broker.bootstrap, records, "killed")
    run_id = uuid.uuid4().hex[:8]

    # The reference runs beside the killed runs (own topics, group, database).
    ref_cfg = kafka_config(tmp_path, "ref", bootstrap=broker.bootstrap, topics=ref_topics,
                           client=client, group=f"ref-{run_id}", receiver=receiver)  # fmt: skip
    ref_store = Store(engine_for(f"sqlite:///{tmp_path / 'ref.db'}"))
    reference = Driftd(ref_cfg, tmp_path / "ref.log")

    # A member killed with SIGKILL stays in its group until its session times
    # out (6 s); a restart into that group then waits ~12 s for its assignment
    # on Tansu. Positions come from driftd's store (the source prefers them to
    # the group's offsets), so most launches join a fresh group to keep the
    # test short; the launches in REUSE_GROUP rejoin the group of the member
    # just killed, the production path.
    base = kafka_config(tmp_path, "killed", bootstrap=broker.bootstrap, topics=topics,
                        client=client, group=f"killed-{run_id}", receiver=receiver)  # fmt: skip
    store = Store(engine_for(f"sqlite:///{tmp_path / 'killed.db'}"))
    try:
        progress = kill_at_random_points(
            base, store, topics, tmp_path, f"killed-{run_id}", random.Random(20261126)
        )
        generation = sum(1 for i in range(1, len(KILLS) + 1) if i not in REUSE_GROUP)
        last = with_group(base, f"killed-{run_id}-{generation}", "killed-last")
        run_to_completion(last, store, topics, tmp_path / "killed-last.log", timeout=150)
        wait_until(lambda: processed(ref_store, ref_topics), 60, "reference processed", reference)
        wait_until(lambda: deliveries_done(ref_store), 30, "reference deliveries", reference)
        assert reference.terminate() == 0, reference.log()[-3000:]
    finally:
        reference.kill9()

    # The kills landed all along the stream, not all before or after it.
    partial = [p for p in progress if 0 < p < topics.total]
    assert len(set(partial)) >= 5, f"checkpointed positions at the kills: {progress}"

    view, ref_view = final_view(store), final_view(ref_store)
    # Every record was counted once: every event, every malformed record.
    totals = view["counts"]
    assert totals.get("events:credit-risk:predictions") == PREDICTIONS_TOTAL, totals
    assert totals.get("events:credit-risk:outcomes") == OUTCOMES_TOTAL, totals
    assert len(view["dead_letters"]) == len(MALFORMED), view["dead_letters"]
    problems = join_problems(ref_view, "reference run") + differences(view, ref_view)
    assert not problems, "killed run vs reference run:\n" + "\n".join(problems)

    # At-least-once delivery with one key per decision.
    keys = {r.headers["Idempotency-Key"] for r in receiver.requests if r.path == "/killed"}
    assert keys == fired(store)
    assert len(keys) == ref_view["decision_outcomes"].get("fired", 0) >= 1
    ref_keys = {r.headers["Idempotency-Key"] for r in receiver.requests if r.path == "/ref"}
    assert ref_keys == fired(ref_store)
