"""The SQL store, run against SQLite and PostgreSQL alike (see conftest.py).

Several tests pin PostgreSQL behaviours SQLite does not have (INSERT row
counts, NaN in json, int4 overflow, NUL in text, concurrent first upserts).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, inspect, select, text

from monitor.store import (
    SCHEMA_VERSION,
    BatchResult,
    Checkpoint,
    DeadLetter,
    DecisionRow,
    SchemaVersionError,
    SignalRow,
    Store,
    acknowledgements,
    checkpoints,
    dead_letters,
    decisions,
    deliveries,
    delivery_attempts,
    make_engine,
    metadata,
    schema_version,
    signals,
)
from tests.helpers import run_concurrently

TABLES = {
    "driftd_schema_version",
    "dead_letters",
    "signals",
    "decisions",
    "deliveries",
    "delivery_attempts",
    "checkpoints",
}
ACTION_AND_ALERT: tuple[tuple[str, str], ...] = (("action", "retrain"), ("alert", "slack"))


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- row builders -------------------------------------------------------------------


def dead(i: int, partition: str = "file:predictions:p.jsonl") -> DeadLetter:
    return DeadLetter(
        partition, i, "predictions", "churn", "schema", f"bad record {i}", b'{"x": %d}' % i
    )


def sig(i: int, value: float | None = 0.25, details: dict[str, float] | None = None) -> SignalRow:
    return SignalRow(
        key=f"churn|v1|age|ks|0|{i}",
        model="churn",
        model_version="v1",
        target="age",
        detector="ks",
        statistic="p_value",
        value=value,
        details=details if details is not None else {"p_value": 0.001, "threshold": 0.05},
        position=i,
        event_time=1_767_225_600.0 + i,
    )


def dec(
    key: str,
    deliveries: Sequence[tuple[str, str]] = ACTION_AND_ALERT,
    payload: dict[str, Any] | None = None,
    event_time: float = 1_767_225_700.5,
    cooldown: float = 0.0,
    model: str = "churn",
) -> DecisionRow:
    return DecisionRow(
        idempotency_key=key,
        rule="retrain-on-drift",
        model=model,
        model_version="v1",
        severity="critical",
        event_time=event_time,
        payload=payload if payload is not None else {"decision_id": key, "signals": []},
        deliveries=deliveries,
        cooldown_seconds=cooldown,
    )


def counts(store: Store) -> dict[str, int]:
    return {
        t.name: store.count(t)
        for t in (dead_letters, signals, decisions, deliveries, delivery_attempts, checkpoints)
    }


def url_of(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def is_pg(store: Store) -> bool:
    return store.engine.dialect.name == "postgresql"


@pytest.fixture
def db(store: Store) -> Store:
    """The store with its schema created."""
    store.create_schema()
    return store


# -- schema ---------------------------------------------------------------------------


def test_create_schema_is_idempotent_and_records_version(store: Store) -> None:
    store.create_schema()
    assert TABLES <= set(inspect(store.engine).get_table_names())
    assert store.schema_version() == SCHEMA_VERSION
    store.create_schema()
    Store(store.engine).create_schema()  # a second process starting on the same database
    assert store.schema_version() == SCHEMA_VERSION
    assert store.count(schema_version) == 1
    assert store.ping()


def test_create_schema_keeps_existing_rows(db: Store) -> None:
    db.write_batch(dead=[dead(1)], sigs=[sig(1)], decs=[dec("k1")])
    before = counts(db)
    db.create_schema()
    assert counts(db) == before


def test_newer_schema_version_is_refused(db: Store) -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(schema_version).values(version=SCHEMA_VERSION + 1, applied_at=1.0))
    with pytest.raises(SchemaVersionError, match=f"version {SCHEMA_VERSION + 1} is newer"):
        db.create_schema()
    assert db.schema_version() == SCHEMA_VERSION + 1


def test_ping_fails_on_unreachable_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    try:
        assert Store(engine).ping() is False
    finally:
        engine.dispose()


# -- batch writes and idempotency -------------------------------------------------


def test_write_batch_inserts_every_kind_and_replay_adds_nothing(db: Store) -> None:
    batch: dict[str, Any] = {
        "dead": [dead(i) for i in range(3)],
        "sigs": [sig(i) for i in range(4)],
        "decs": [dec("k1"), dec("k2", deliveries=[("action", "retrain")])],
    }
    first = db.write_batch(**batch)
    assert first == BatchResult(dead_letters=3, signals=4, decisions=["k1", "k2"])
    after_first = counts(db)
    assert after_first == {
        "dead_letters": 3,
        "signals": 4,
        "decisions": 2,
        "deliveries": 3,
        "delivery_attempts": 0,
        "checkpoints": 0,
    }

    again = db.write_batch(**batch)
    assert again == BatchResult(dead_letters=0, signals=0, decisions=[])
    assert counts(db) == after_first

    dl = db.rows(dead_letters, order_by=dead_letters.c.source_offset)
    assert [(r["source_partition"], r["source_offset"]) for r in dl] == [
        ("file:predictions:p.jsonl", i) for i in range(3)
    ]
    assert dl[1]["payload"] == b'{"x": 1}'
    assert dl[1]["reason_code"] == "schema" and dl[1]["model"] == "churn"

    s = db.rows(signals, signals.c.signal_key == sig(2).key)[0]
    assert (s["model"], s["model_version"], s["target"], s["detector"], s["statistic"]) == (
        "churn",
        "v1",
        "age",
        "ks",
        "p_value",
    )
    assert (s["value"], s["position"], s["event_time"]) == (0.25, 2, 1_767_225_602.0)

    d = db.rows(decisions, decisions.c.idempotency_key == "k1")[0]
    assert (d["rule"], d["severity"], d["outcome"], d["event_time"]) == (
        "retrain-on-drift",
        "critical",
        "fired",
        1_767_225_700.5,
    )
    dv = db.rows(deliveries, order_by=deliveries.c.id)
    assert [
        (r["decision_key"], r["kind"], r["target"], r["status"], r["attempts"]) for r in dv
    ] == [
        ("k1", "action", "retrain", "pending", 0),
        ("k1", "alert", "slack", "pending", 0),
        ("k2", "action", "retrain", "pending", 0),
    ]


def test_dead_letter_key_is_partition_and_offset(db: Store) -> None:
    first = db.write_batch(dead=[dead(7), dead(7, partition="kafka:preds:1")])
    assert first.dead_letters == 2
    other_reason = DeadLetter("kafka:preds:1", 7, "outcomes", None, "malformed", "other", b"")
    assert db.write_batch(dead=[other_reason]).dead_letters == 0
    row = db.rows(dead_letters, dead_letters.c.source_partition == "kafka:preds:1")[0]
    assert row["reason_code"] == "schema"  # the first write wins


def test_duplicates_within_one_batch_are_written_once(db: Store) -> None:
    result = db.write_batch(
        dead=[dead(1), dead(1)], sigs=[sig(1), sig(1)], decs=[dec("k1"), dec("k1")]
    )
    assert result == BatchResult(dead_letters=1, signals=1, decisions=["k1"])
    assert counts(db)["deliveries"] == 2


def test_replayed_decision_creates_no_deliveries(db: Store) -> None:
    db.write_batch(decs=[dec("k1", deliveries=[("action", "retrain")])])
    # A replay re-derives the decision; by then the config may name more targets.
    replay = db.write_batch(
        decs=[dec("k1", deliveries=[("action", "retrain"), ("alert", "slack")]), dec("k2")]
    )
    assert replay.decisions == ["k2"]
    dv = db.rows(deliveries, order_by=deliveries.c.id)
    assert [(r["decision_key"], r["kind"], r["target"]) for r in dv] == [
        ("k1", "action", "retrain"),
        ("k2", "action", "retrain"),
        ("k2", "alert", "slack"),
    ]


def test_decision_without_deliveries(db: Store) -> None:
    assert db.write_batch(decs=[dec("quiet", deliveries=())]).decisions == ["quiet"]
    assert db.count(decisions) == 1 and db.count(deliveries) == 0
    assert db.pending_deliveries() == 0


def test_failed_batch_rolls_back_everything(db: Store) -> None:
    bad = Checkpoint("shard/src/0", {"p": 1}, None, 1)  # type: ignore[arg-type]  # NOT NULL
    with pytest.raises(Exception, match=r"(?i)null"):
        db.write_batch(
            dead=[dead(1)],
            sigs=[sig(1)],
            decs=[dec("k1")],
            checkpoint=[Checkpoint("rules", {}, b"r", 1), bad],
        )
    assert set(counts(db).values()) == {0}
    # The same rows written again are new: nothing of the failed batch stuck.
    assert db.write_batch(dead=[dead(1)], sigs=[sig(1)], decs=[dec("k1")]) == BatchResult(
        1, 1, ["k1"]
    )


def test_created_at_comes_from_the_clock(db: Store) -> None:
    clocked = Store(db.engine, clock=FakeClock(1234.5))
    clocked.write_batch(dead=[dead(1)], sigs=[sig(1)], decs=[dec("k1")])
    for table in (dead_letters, signals, decisions, deliveries):
        assert {r["created_at"] for r in db.rows(table)} == {1234.5}
    assert {r["next_attempt_at"] for r in db.rows(deliveries)} == {1234.5}


# -- checkpoints ------------------------------------------------------------------


def test_checkpoints_upsert_and_load_back_exactly(db: Store) -> None:
    state = bytes(range(256)) * 3 + b"\x00"
    first = Checkpoint(
        "shard/src/0", {"file:predictions:p.jsonl": 17, "kafka:preds:0": 2**40}, state, 3
    )
    db.save_checkpoints([first, Checkpoint("rules", {}, b"rules-state", 1)])
    assert db.load_checkpoints("shard/src/") == [first]
    assert db.load_checkpoints("rules") == [Checkpoint("rules", {}, b"rules-state", 1)]

    moved = Checkpoint("shard/src/0", {"file:predictions:p.jsonl": 99}, b"\x01\x02", 4)
    Store(db.engine, clock=FakeClock(5.0)).save_checkpoints([moved])
    assert db.load_checkpoints("shard/src/") == [moved]
    assert db.count(checkpoints) == 2
    row = db.rows(checkpoints, checkpoints.c.checkpoint_key == "shard/src/0")[0]
    assert row["updated_at"] == 5.0
    assert isinstance(db.load_checkpoints("shard/src/")[0].state, bytes)


def test_checkpoint_prefix_filtering(db: Store) -> None:
    keys = ["shard/src/0", "shard/src/1", "shard/src/12", "shard/src2/0", "shard/other/0", "rules"]
    db.save_checkpoints([Checkpoint(k, {k: i}, k.encode(), 1) for i, k in enumerate(keys)])
    assert sorted(c.key for c in db.load_checkpoints("shard/src/")) == [
        "shard/src/0",
        "shard/src/1",
        "shard/src/12",
    ]
    assert sorted(c.key for c in db.load_checkpoints("shard/")) == sorted(keys[:-1])
    assert [c.key for c in db.load_checkpoints("rules")] == ["rules"]
    assert sorted(c.key for c in db.load_checkpoints("")) == sorted(keys)
    assert db.load_checkpoints("nope/") == []


def test_checkpoint_prefix_is_literal_and_case_sensitive(db: Store) -> None:
    keys = ["shard/kafka_a/0", "shard/kafkaXa/0", "shard/KAFKA_A/0", "shard/100%/0", "shard/100x/0"]
    db.save_checkpoints([Checkpoint(k, {}, b"", 1) for k in keys])
    assert [c.key for c in db.load_checkpoints("shard/kafka_a/")] == ["shard/kafka_a/0"]
    assert [c.key for c in db.load_checkpoints("shard/100%/")] == ["shard/100%/0"]


def test_checkpoint_rides_in_the_batch_transaction(db: Store) -> None:
    cp = Checkpoint("shard/src/0", {"p": 5}, b"state", 1)
    result = db.write_batch(sigs=[sig(1)], checkpoint=[cp])
    assert result.signals == 1
    assert db.load_checkpoints("shard/src/") == [cp]


def test_concurrent_first_checkpoint_saves_do_not_collide(
    request: pytest.FixtureRequest, db: Store
) -> None:
    """Two writers save the same new checkpoint key at once: both must succeed."""
    entered, release = threading.Event(), threading.Event()

    class BlockingPositions(Mapping[str, int]):
        """Copied by _save_checkpoint inside the transaction: holds it open."""

        def __getitem__(self, key: str) -> int:
            raise KeyError(key)

        def __len__(self) -> int:
            return 0

        def __iter__(self) -> Iterator[str]:
            entered.set()
            release.wait(10)
            return iter(())

    key = "shard/src/0"
    errors: list[BaseException] = []

    def first_writer() -> None:
        try:
            db.save_checkpoints(
                [
                    Checkpoint(key, {"p": 1}, b"a", 1),
                    Checkpoint("hold", BlockingPositions(), b"", 1),
                ]
            )
        except BaseException as exc:
            errors.append(exc)

    other = Store(make_engine(url_of(db)))
    try:
        t = threading.Thread(target=first_writer)
        t.start()
        assert entered.wait(10)  # the first writer has inserted `key` and not committed

        second_result: list[BaseException | None] = []

        def second_writer() -> None:
            try:
                other.save_checkpoints([Checkpoint(key, {"p": 2}, b"b", 1)])
                second_result.append(None)
            except BaseException as exc:
                second_result.append(exc)

        t2 = threading.Thread(target=second_writer)
        t2.start()
        _wait_until_blocked(db, t2)
        release.set()
        t.join(20)
        t2.join(20)
        assert errors == []
        assert len(second_result) == 1
        if second_result[0] is not None:
            raise second_result[0]
        assert [(c.positions, c.state) for c in db.load_checkpoints(key)] == [({"p": 2}, b"b")]
    finally:
        release.set()
        other.engine.dispose()


def _wait_until_blocked(store: Store, thread: threading.Thread, timeout: float = 5.0) -> None:
    """Wait until ``thread`` waits on a lock (PostgreSQL) or for a moment (SQLite)."""
    if not is_pg(store):
        time.sleep(0.3)
        return
    deadline = time.monotonic() + timeout
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with store.engine.connect() as conn:
        while time.monotonic() < deadline and thread.is_alive():
            if conn.execute(query).scalar():
                return
            time.sleep(0.02)


# -- outbox -------------------------------------------------------------------------


def test_outbox_due_deliveries_attempts_and_pending(db: Store) -> None:
    clock = FakeClock(1_000.0)
    store = Store(db.engine, clock=clock)
    payload = {"decision_id": "k1", "model": "churn", "signals": [{"value": 0.5}]}
    store.write_batch(decs=[dec("k1", payload=payload)])
    clock.now = 1_001.0
    store.write_batch(decs=[dec("k2", deliveries=[("action", "retrain")])])

    assert store.pending_deliveries() == 3
    assert store.due_deliveries(999.9) == []
    due = store.due_deliveries(1_000.0)
    assert [(r.decision_key, r.kind, r.target) for r in due] == [
        ("k1", "action", "retrain"),
        ("k1", "alert", "slack"),
    ]
    assert due[0].payload == payload  # the decision's payload rides along
    assert due[0].status == "pending" and due[0].attempts == 0
    assert len(store.due_deliveries(2_000.0)) == 3
    assert len(store.due_deliveries(2_000.0, limit=1)) == 1
    ids = [r.id for r in store.due_deliveries(2_000.0)]
    assert ids == sorted(ids)
    retrain, slack, k2 = ids

    # A failed attempt: still pending, retried later.
    clock.now = 1_010.0
    store.record_attempt(retrain, 1, False, "HTTP 503", 1_002.0, 0.25, "pending", 1_060.0)
    assert [r.id for r in store.due_deliveries(1_059.0)] == [slack, k2]
    assert [r.id for r in store.due_deliveries(1_060.0)] == [retrain, slack, k2]
    row = store.rows(deliveries, deliveries.c.id == retrain)[0]
    assert (row["status"], row["attempts"], row["last_error"], row["delivered_at"]) == (
        "pending",
        1,
        "HTTP 503",
        None,
    )
    assert row["next_attempt_at"] == 1_060.0
    assert store.pending_deliveries() == 3

    # Delivered on the second attempt.
    clock.now = 1_061.0
    store.record_attempt(
        retrain,
        2,
        True,
        "HTTP 200",
        1_060.0,
        0.5,
        "delivered",
        1_060.0,
        result={"status": 200, "response": "queued"},
    )
    row = store.rows(deliveries, deliveries.c.id == retrain)[0]
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 2, None)
    assert row["delivered_at"] == 1_061.0
    assert row["result"] == {"status": 200, "response": "queued"}
    assert store.pending_deliveries() == 2

    # Given up on.
    store.record_attempt(slack, 1, False, "x" * 5_000, 1_061.0, 1.5, "dead", 1_061.0)
    assert [r.id for r in store.due_deliveries(1e12)] == [k2]
    assert store.pending_deliveries() == 1
    row = store.rows(deliveries, deliveries.c.id == slack)[0]
    assert row["status"] == "dead" and row["last_error"] == "x" * 4_000

    attempts = store.rows(delivery_attempts, order_by=delivery_attempts.c.id)
    assert [
        (a["delivery_id"], a["attempt"], a["ok"], a["started_at"], a["duration_seconds"])
        for a in attempts
    ] == [
        (retrain, 1, False, 1_002.0, 0.25),
        (retrain, 2, True, 1_060.0, 0.5),
        (slack, 1, False, 1_061.0, 1.5),
    ]
    assert [len(a["detail"]) for a in attempts] == [8, 8, 4_000]
    assert all(isinstance(a["ok"], bool) for a in attempts)


# -- cooldowns, silences, acknowledgements ----------------------------------------


def outcomes(store: Store) -> dict[str, str]:
    return {r["idempotency_key"]: r["outcome"] for r in store.rows(decisions)}


def test_cooldown_is_shared_by_processes(db: Store) -> None:
    other = Store(make_engine(url_of(db)))  # another process on the same database
    try:
        assert db.write_batch(decs=[dec("k1", event_time=5_000.0, cooldown=1_000.0)]).decisions == [
            "k1"
        ]
        held = other.write_batch(decs=[dec("k2", event_time=5_010.0, cooldown=1_000.0)])
        assert held.decisions == [] and held.suppressed == ["k2"]
        earlier = other.write_batch(decs=[dec("k0", event_time=4_500.0, cooldown=1_000.0)])
        assert earlier.suppressed == ["k0"]
        # Another model has its own cooldown.
        assert other.write_batch(
            decs=[dec("m1", event_time=5_010.0, cooldown=1_000.0, model="fraud")]
        ).decisions == ["m1"]
        # Replays of stored decisions do nothing, whatever their outcome was.
        replay = db.write_batch(
            decs=[dec("k1", event_time=5_000.0, cooldown=1_000.0), dec("k2", event_time=5_010.0)]
        )
        assert replay == BatchResult()
        assert other.write_batch(
            decs=[dec("k3", event_time=6_001.0, cooldown=1_000.0)]
        ).decisions == ["k3"]
        assert outcomes(db) == {
            "k1": "fired",
            "k2": "suppressed",
            "k0": "suppressed",
            "m1": "fired",
            "k3": "fired",
        }
        assert sorted({r["decision_key"] for r in db.rows(deliveries)}) == ["k1", "k3", "m1"]
    finally:
        other.engine.dispose()


def test_concurrent_decisions_within_a_cooldown_fire_once(db: Store) -> None:
    """Shards in four processes decide on the same drift at once: one fires."""
    stores = [db] + [Store(make_engine(url_of(db))) for _ in range(3)]
    try:
        jobs = [
            (
                lambda s=s, i=i: s.write_batch(
                    decs=[dec(f"k{i}", event_time=5_000.0 + i, cooldown=1_000.0)]
                )
            )
            for i, s in enumerate(stores)
        ]
        results = run_concurrently(*jobs)
        fired = [k for r in results for k in r.decisions]
        suppressed = [k for r in results for k in r.suppressed]
        assert len(fired) == 1 and len(suppressed) == 3
        assert sorted(fired + suppressed) == ["k0", "k1", "k2", "k3"]
        assert {r["decision_key"] for r in db.rows(deliveries)} == set(fired)
        assert sorted(outcomes(db).values()) == ["fired", "suppressed", "suppressed", "suppressed"]
    finally:
        for s in stores[1:]:
            s.engine.dispose()


def test_silences_and_acknowledgements(db: Store) -> None:
    clock = FakeClock(100.0)
    store = Store(db.engine, clock=clock)
    sid = store.add_silence("churn", None, 50.0, 200.0, "deploying v2", "alice")
    assert isinstance(sid, int)
    store.add_silence("*", "other-rule", 0.0, 1e12, "another rule", "bob")
    store.add_silence("fraud", None, 0.0, 1e12, "another model", "bob")
    silenced = store.write_batch(decs=[dec("k1")])
    assert silenced.silenced == ["k1"] and silenced.decisions == []
    assert store.pending_deliveries() == 0
    clock.now = 150.0
    assert store.expire_silence(sid) is True
    assert store.expire_silence(sid) is False
    assert store.write_batch(decs=[dec("k2")]).decisions == ["k2"]
    wildcard = store.add_silence("*", None, 0.0, 1e12, "freeze", "carol")
    assert wildcard != sid
    assert store.write_batch(decs=[dec("k3")]).silenced == ["k3"]
    assert outcomes(store) == {"k1": "silenced", "k2": "fired", "k3": "silenced"}
    assert {r["decision_key"] for r in store.rows(deliveries)} == {"k2"}

    assert store.acknowledge("k2", "alice", "retraining") is True
    assert store.acknowledge("k2", "bob", "again") is True  # the first acknowledgement stays
    assert store.acknowledge("nope", "alice", "") is False
    (ack,) = store.rows(acknowledgements)
    assert (ack["decision_key"], ack["acknowledged_by"], ack["comment"]) == (
        "k2",
        "alice",
        "retraining",
    )


# -- concurrency ----------------------------------------------------------------------


def test_concurrent_writers_leave_exactly_one_row_per_key(db: Store) -> None:
    """Two engines write overlapping batches at once (as two instances replaying
    the same input would): every key lands once and is reported added once."""
    other = Store(make_engine(url_of(db)))

    def writer(store: Store, keys: range, batch: int) -> Callable[[], BatchResult]:
        def job() -> BatchResult:
            total = BatchResult()
            ks = list(keys)
            for start in range(0, len(ks), batch):
                part = ks[start : start + batch]
                r = store.write_batch(
                    dead=[dead(i) for i in part],
                    sigs=[sig(i) for i in part],
                    decs=[dec(f"k{i:03d}") for i in part],
                    checkpoint=[Checkpoint("shard/src/0", {"p": part[-1]}, b"s", 1)],
                )
                total.dead_letters += r.dead_letters
                total.signals += r.signals
                total.decisions += r.decisions
            return total

        return job

    try:
        db.save_checkpoints([Checkpoint("shard/src/0", {"p": 0}, b"s", 1)])
        a, b = run_concurrently(writer(db, range(0, 60), 10), writer(other, range(20, 80), 7))
        assert a.dead_letters + b.dead_letters == 80
        assert a.signals + b.signals == 80
        added = a.decisions + b.decisions
        assert sorted(added) == [f"k{i:03d}" for i in range(80)]  # each reported once
        assert counts(db) == {
            "dead_letters": 80,
            "signals": 80,
            "decisions": 80,
            "deliveries": 160,
            "delivery_attempts": 0,
            "checkpoints": 1,
        }
        for table, key in (
            (dead_letters, (dead_letters.c.source_partition, dead_letters.c.source_offset)),
            (signals, (signals.c.signal_key,)),
            (decisions, (decisions.c.idempotency_key,)),
            (deliveries, (deliveries.c.decision_key, deliveries.c.kind, deliveries.c.target)),
        ):
            dupes = select(*key).group_by(*key).having(func.count() > 1)
            with db.engine.connect() as conn:
                assert conn.execute(dupes).all() == [], table.name
    finally:
        other.engine.dispose()


# -- JSON and non-finite numbers ----------------------------------------------------


def test_json_columns_round_trip(db: Store) -> None:
    details = {
        "p_value": 0.012345678901234567,
        "statistic": 1e-300,
        "threshold": 0.05,
        "negative": -2.5,
        "huge": 1.7976931348623157e308,
        "integral": 3.0,
    }
    payload: dict[str, Any] = {
        "decision_id": "k1",
        "model": "modèle ✓",
        "event_time": 1_767_225_700.123456,
        "count": 2**53,
        "flags": [True, False, None],
        "signals": [{"target": "age", "value": 0.1, "nested": {"a": [1, 2.5, "x"]}}],
        "actions": ["retrain"],
        "empty": {},
    }
    db.write_batch(
        sigs=[sig(1, value=0.123456789, details=details)], decs=[dec("k1", payload=payload)]
    )

    row = db.rows(signals)[0]
    assert row["details"] == details
    assert row["value"] == 0.123456789
    assert db.rows(decisions)[0]["payload"] == payload
    due = db.due_deliveries(1e12)
    assert due[0].payload == payload

    result = {"status": 201, "response": '{"run": "r-1"}', "ratio": 0.1}
    db.record_attempt(due[0].id, 1, True, "HTTP 201", 1.0, 0.1, "delivered", 1.0, result=result)
    assert db.rows(deliveries, deliveries.c.id == due[0].id)[0]["result"] == result

    positions = {"kafka:preds:0": 2**62, "file:outcomes:o.jsonl": 0}
    db.save_checkpoints([Checkpoint("shard/src/0", positions, b"", 1)])
    assert db.load_checkpoints("shard/src/")[0].positions == positions


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_statistics_are_stored_as_null(db: Store, bad: float) -> None:
    details = {"statistic": bad, "p_value": 0.5, "threshold": bad}
    db.write_batch(sigs=[sig(1, value=bad, details=details), sig(2, value=None), sig(3, value=7)])
    rows = {r["position"]: r for r in db.rows(signals)}
    assert rows[1]["value"] is None
    assert rows[1]["details"] == {"statistic": None, "p_value": 0.5, "threshold": None}
    assert rows[2]["value"] is None
    assert rows[3]["value"] == 7.0
    with db.engine.connect() as conn:
        nulls = conn.execute(
            select(func.count()).select_from(signals).where(signals.c.value.is_(None))
        ).scalar()
    assert nulls == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_numbers_in_payloads_do_not_break_writes(
    request: pytest.FixtureRequest, db: Store, bad: float
) -> None:
    """A decision payload or delivery result with NaN/inf must not fail the write
    (PostgreSQL's json type rejects NaN/Infinity tokens; SQLite stores them)."""
    payload = {"signals": [{"value": bad, "position": 3}]}
    result = db.write_batch(decs=[dec("k1", payload=payload)])
    assert result.decisions == ["k1"]
    due = db.due_deliveries(1e12)
    db.record_attempt(due[0].id, 1, True, "ok", 1.0, 0.1, "delivered", 1.0, result={"x": bad})
    assert db.count(delivery_attempts) == 1


def test_large_source_offsets(request: pytest.FixtureRequest, db: Store) -> None:
    """Kafka offsets are 64-bit; a long-lived topic passes 2**31."""
    big = 2**31 + 5
    assert db.write_batch(dead=[dead(big)], sigs=[sig(big)]) == BatchResult(1, 1, [])
    assert db.rows(dead_letters)[0]["source_offset"] == big
    assert db.write_batch(dead=[dead(big)]).dead_letters == 0


def test_nul_characters_in_text(request: pytest.FixtureRequest, db: Store) -> None:
    """A command action's output may contain NUL; recording the attempt must not fail
    (it would leave a delivered action pending, to be run again)."""
    db.write_batch(decs=[dec("k1", deliveries=[("action", "retrain")])])
    (row,) = db.due_deliveries(1e12)
    db.record_attempt(
        row.id, 1, True, "exit 0: a\x00b", 1.0, 0.1, "delivered", 1.0, result={"stdout": "a\x00b"}
    )
    assert db.pending_deliveries() == 0


# -- make_engine on PostgreSQL ----------------------------------------------------------


@pytest.mark.service
def test_make_engine_switches_to_psycopg_and_takes_the_password(pg_database: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_database)
    assert url.drivername == "postgresql"
    no_password = url.set(password=None).render_as_string(hide_password=False)
    engine = make_engine(no_password, password=url.password)
    try:
        assert engine.dialect.driver == "psycopg"
        store = Store(engine)
        store.create_schema()
        assert store.schema_version() == SCHEMA_VERSION
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
