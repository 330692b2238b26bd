"""Per-model limits on decisions that run actions (the model's action cooldown
across its rules, retrains in flight), the model versions' looks and
promotion, and the upgrade of a schema-1 database; on SQLite and PostgreSQL
(see conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    inspect,
    select,
    update,
)

from monitor.store import (
    MODEL_SLOT,
    SCHEMA_VERSION,
    BatchResult,
    DecisionRow,
    Store,
    decisions,
    deliveries,
    make_engine,
    metadata,
    model_versions,
    rule_state,
    schema_version,
)
from tests.helpers import run_concurrently

ACTION = (("action", "retrain"), ("alert", "slack"))
ALERT = (("alert", "slack"),)


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def row(
    key: str,
    rule: str,
    t: float,
    deliveries: Sequence[tuple[str, str]] = ACTION,
    model: str = "churn",
    cooldown: float = 0.0,
    model_cooldown: float = 0.0,
    max_retrains: int | None = None,
    timeout: float = 1_000.0,
    outcome: str = "fired",
    resolves: str | None = None,
    max_concurrent: int | None = None,
) -> DecisionRow:
    return DecisionRow(
        key,
        rule,
        model,
        "v1",
        "warning",
        t,
        {"decision_id": key},
        deliveries,
        cooldown,
        outcome,
        resolves,
        max_concurrent,
        model_cooldown_seconds=model_cooldown,
        max_concurrent_retrains=max_retrains,
        retrain_timeout_seconds=timeout,
    )


def url_of(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(store: Store, clock: FakeClock) -> Store:
    s = Store(store.engine, clock=clock)
    s.create_schema()
    return s


def outcome_of(store: Store, key: str) -> tuple[str, str | None]:
    (r,) = store.rows(decisions, decisions.c.idempotency_key == key)
    return r["outcome"], r["payload"].get("suppressed_by")


def slots(store: Store) -> dict[tuple[str, str], tuple[float, str]]:
    return {
        (r["rule"], r["model"]): (r["last_event_time"], r["last_key"])
        for r in store.rows(rule_state)
    }


@pytest.fixture
def others(db: Store, clock: FakeClock) -> Iterator[list[Store]]:
    """Three more processes' stores on the same database (and the same clock)."""
    stores = [Store(make_engine(url_of(db)), clock=clock) for _ in range(3)]
    yield stores
    for s in stores:
        s.engine.dispose()


# -- the model's action cooldown -------------------------------------------------------


def test_model_cooldown_holds_action_decisions_of_every_rule(
    db: Store, others: list[Store]
) -> None:
    mc = 1_000.0
    assert db.write_batch(decs=[row("a", "r2", 3_000.0, model_cooldown=mc)]).decisions == ["a"]
    assert db.write_batch(decs=[row("b", "r1", 5_000.0, model_cooldown=mc)]).decisions == ["b"]
    # r2's own cooldown (500) is free at 5100, the model's (b at 5000) is not:
    # suppressed, and r2's slot is given back what it held (a at 3000).
    held = db.write_batch(decs=[row("c", "r2", 5_100.0, cooldown=500.0, model_cooldown=mc)])
    assert held.suppressed == ["c"] and held.suppressed_by == {"c": "model_cooldown"}
    assert outcome_of(db, "c") == ("suppressed", "model_cooldown")
    assert slots(db) == {
        ("r1", "churn"): (5_000.0, "b"),
        ("r2", "churn"): (3_000.0, "a"),
        (MODEL_SLOT, "churn"): (5_000.0, "b"),
    }
    # A rule's first decision held by the model's cooldown leaves no slot behind;
    # earlier in event time counts too (either side); another process sees it.
    assert others[0].write_batch(decs=[row("d", "r3", 4_200.0, model_cooldown=mc)]).suppressed == [
        "d"
    ]
    assert ("r3", "churn") not in slots(db)
    # Alert-only decisions are governed by their rule's cooldown alone.
    assert db.write_batch(
        decs=[row("e", "r2", 5_200.0, ALERT, cooldown=500.0, model_cooldown=mc)]
    ).decisions == ["e"]
    same_rule = db.write_batch(decs=[row("f", "r2", 5_300.0, cooldown=500.0, model_cooldown=mc)])
    assert same_rule.suppressed_by == {"f": "rule_cooldown"}
    # Another model has its own slot; a zero model cooldown holds nothing back.
    assert db.write_batch(
        decs=[row("g", "r1", 5_010.0, model="fraud", model_cooldown=mc)]
    ).decisions
    assert db.write_batch(decs=[row("h", "r4", 5_020.0)]).decisions == ["h"]
    # Once the model's cooldown has passed, any rule fires again.
    assert others[1].write_batch(
        decs=[row("i", "r2", 6_000.0, cooldown=500.0, model_cooldown=mc)]
    ).decisions == ["i"]
    assert sorted({d["decision_key"] for d in db.rows(deliveries)}) == list("abeghi")
    assert db.write_batch(decs=[row("c", "r2", 9_000.0, model_cooldown=mc)]) == BatchResult()


def test_model_cooldown_rule_claim_is_undone_inside_a_batch(db: Store) -> None:
    """The undo is in the batch's transaction: a later decision of the same
    batch sees the rule's slot as it was."""
    mc = 1_000.0
    out = db.write_batch(
        decs=[
            row("a", "r1", 5_000.0, model_cooldown=mc),
            row("b", "r2", 5_010.0, cooldown=100.0, model_cooldown=mc),
            row("c", "r2", 5_020.0, ALERT, cooldown=100.0),  # r2 is not cooling down
        ]
    )
    assert out.decisions == ["a", "c"] and out.suppressed_by == {"b": "model_cooldown"}
    assert slots(db)[("r2", "churn")] == (5_020.0, "c")


def test_concurrent_action_decisions_of_different_rules_fire_once(
    db: Store, others: list[Store]
) -> None:
    """Four processes, four rules, one model, at once: one decision fires; the
    others leave no rule in a cooldown."""
    stores = [db, *others]
    jobs = [
        (
            lambda s=s, i=i: s.write_batch(
                decs=[row(f"k{i}", f"r{i}", 5_000.0 + i, cooldown=1_000.0, model_cooldown=1_000.0)]
            )
        )
        for i, s in enumerate(stores)
    ]
    results: list[BatchResult] = run_concurrently(*jobs)
    fired = [k for r in results for k in r.decisions]
    assert len(fired) == 1
    assert sorted(k for r in results for k in r.suppressed) == sorted(
        {"k0", "k1", "k2", "k3"} - set(fired)
    )
    assert {why for r in results for why in r.suppressed_by.values()} == {"model_cooldown"}
    winner = f"r{fired[0][1]}"
    assert set(slots(db)) == {(winner, "churn"), (MODEL_SLOT, "churn")}


# -- retrains in flight ---------------------------------------------------------------------


def in_flight(store: Store, model: str = "churn", since: float = 0.0) -> int:
    with store.engine.connect() as conn:
        return store._retrains_in_flight(conn, model, since)


def test_max_concurrent_retrains(db: Store, clock: FakeClock) -> None:
    def limited(key: str, rule: str, t: float, *d: tuple[str, str]) -> DecisionRow:
        return row(key, rule, t, d or ACTION, max_retrains=2, timeout=1_000.0)

    assert db.write_batch(decs=[limited("a", "r1", 10.0), limited("b", "r2", 20.0)]).decisions == [
        "a",
        "b",
    ]
    held = db.write_batch(decs=[limited("c", "r3", 30.0)])
    assert held.suppressed_by == {"c": "max_concurrent_retrains"}
    assert outcome_of(db, "c") == ("suppressed", "max_concurrent_retrains")
    # Alert-only decisions neither count nor are held; nor are other models'.
    assert db.write_batch(decs=[limited("al", "r3", 31.0, *ALERT)]).decisions == ["al"]
    assert db.write_batch(decs=[row("x", "r1", 32.0, model="fraud", max_retrains=1)]).decisions
    assert in_flight(db) == 2
    # A resolved decision closes its retrain.
    db.write_batch(decs=[row("a-r", "r1", 40.0, ALERT, outcome="resolved", resolves="a")])
    assert in_flight(db) == 1
    # A rollback runs actions but is no retrain: it does not count.
    db.write_batch(decs=[row("rb", "rollback", 41.0)])
    assert in_flight(db) == 1
    assert db.write_batch(decs=[limited("d", "r3", 50.0)]).decisions == ["d"]
    assert db.write_batch(decs=[limited("e", "r4", 51.0)]).suppressed == ["e"]
    # The pipeline reports the version that b asked for: b is done.
    db.report_version("churn", "v1", "active")
    db.report_version("churn", "v2", "candidate", decision_key="b")
    assert in_flight(db) == 1
    # A retrain with two actions counts until both are dead.
    assert db.write_batch(decs=[limited("f", "r4", 60.0, *ACTION, ("action", "page"))]).decisions
    assert in_flight(db) == 2
    dead = update(deliveries).values(status="dead")
    with db.engine.begin() as conn:
        conn.execute(dead.where(deliveries.c.decision_key == "f", deliveries.c.target == "page"))
    assert in_flight(db) == 2
    with db.engine.begin() as conn:
        conn.execute(dead.where(deliveries.c.decision_key == "f", deliveries.c.kind == "action"))
    assert in_flight(db) == 1
    # Delivered actions still count: the retrain runs until it reports back.
    with db.engine.begin() as conn:
        conn.execute(
            update(deliveries).where(deliveries.c.decision_key == "d").values(status="delivered")
        )
    assert in_flight(db) == 1
    assert db.write_batch(decs=[limited("g", "r5", 70.0)]).decisions == ["g"]
    assert db.write_batch(decs=[limited("h", "r6", 71.0)]).suppressed == ["h"]
    # Timed out (store clock, wall time): d and g were created at 1000.
    clock.now = 1_000.0 + 999.0
    assert db.write_batch(decs=[limited("i", "r7", 80.0)]).suppressed == ["i"]
    clock.now = 1_000.0 + 1_000.0
    assert in_flight(db, since=clock.now - 1_000.0) == 0
    assert db.write_batch(decs=[limited("j", "r7", 81.0)]).decisions == ["j"]


def test_rule_max_concurrent_is_recorded_as_the_reason(db: Store) -> None:
    assert db.write_batch(decs=[row("a", "r1", 10.0, max_concurrent=1)]).decisions == ["a"]
    held = db.write_batch(decs=[row("b", "r1", 20.0, max_concurrent=1)])
    assert held.suppressed_by == {"b": "max_concurrent"}
    assert outcome_of(db, "b") == ("suppressed", "max_concurrent")
    assert outcome_of(db, "a") == ("fired", None)


def test_concurrent_retrains_across_processes(db: Store, others: list[Store]) -> None:
    """max_concurrent_retrains = 1 with a model cooldown: four processes, one fires."""
    stores = [db, *others]
    jobs = [
        (
            lambda s=s, i=i: s.write_batch(
                decs=[
                    row(f"k{i}", f"r{i}", 5_000.0 + 10_000 * i, model_cooldown=1.0, max_retrains=1)
                ]
            )
        )
        for i, s in enumerate(stores)
    ]
    results: list[BatchResult] = run_concurrently(*jobs)
    assert len([k for r in results for k in r.decisions]) == 1
    assert {why for r in results for why in r.suppressed_by.values()} == {"max_concurrent_retrains"}


# -- model versions: looks and promotion -----------------------------------------------------


def test_record_looks_once_and_promote(db: Store, others: list[Store]) -> None:
    db.report_version("churn", "v1", "active")
    db.report_version("churn", "v2", "candidate", note="retrained")
    assert db.model_version("churn", "v2")["looks"] == 0  # type: ignore[index]
    won = run_concurrently(
        lambda: db.record_looks("churn", "v2", 0, 1, "look 0: a"),
        lambda: others[0].record_looks("churn", "v2", 0, 1, "look 0: b"),
    )
    assert sorted(won) == [False, True]
    v2 = db.model_version("churn", "v2")
    assert v2 is not None and v2["looks"] == 1
    assert v2["note"] in ("retrained\nlook 0: a", "retrained\nlook 0: b")
    assert db.record_looks("churn", "v2", 1, 3, "look 1-2: c") is True
    assert db.model_version("churn", "v2")["note"].endswith("\nlook 1-2: c")  # type: ignore[index]
    db.report_version("churn", "v3", "candidate")  # no note of its own
    assert db.record_looks("churn", "v3", 0, 1, "look 0: d") is True
    assert db.model_version("churn", "v3")["note"] == "look 0: d"  # type: ignore[index]
    assert db.promote_version("churn", "v2") is True
    assert db.promote_version("churn", "v2") is False
    v1, v2 = db.model_version("churn", "v1"), db.model_version("churn", "v2")
    assert v1 is not None and v2 is not None
    assert (v1["status"], v2["status"]) == ("retired", "active")
    assert v2["promoted_at"] == 1_000.0
    assert db.record_looks("churn", "v2", 3, 4, "late") is False  # no candidate any more


# -- upgrading a schema-1 database ------------------------------------------------------------


def v1_metadata() -> MetaData:
    """The tables as schema 1 had them: model_versions without looks/promoted_at."""
    old = MetaData()
    for table in metadata.sorted_tables:
        if table.name != "model_versions":
            table.to_metadata(old)
    Table(
        "model_versions",
        old,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("model", String(128), nullable=False),
        Column("version", String(128), nullable=False),
        Column("previous_version", String(128)),
        Column("decision_key", String(128)),
        Column("status", String(16), nullable=False),
        Column("note", Text),
        Column("reported_at", Float, nullable=False),
        Column("reference_adopted_at", Float),
        Column("rollback_key", String(128)),
        UniqueConstraint("model", "version", name="uq_model_version"),
    )
    return old


def make_v1(store: Store) -> None:
    old = v1_metadata()
    with store.engine.begin() as conn:
        old.create_all(conn)
        conn.execute(insert(old.tables["driftd_schema_version"]).values(version=1, applied_at=1.0))
        conn.execute(
            insert(old.tables["model_versions"]).values(
                model="churn",
                version="v2",
                previous_version="v1",
                status="candidate",
                note="old",
                reported_at=2.0,
            )
        )


def test_upgrade_from_schema_1(store: Store, clock: FakeClock) -> None:
    make_v1(store)
    columns = {c["name"] for c in inspect(store.engine).get_columns("model_versions")}
    assert "looks" not in columns
    s = Store(store.engine, clock=clock)
    s.create_schema()
    columns = {c["name"] for c in inspect(store.engine).get_columns("model_versions")}
    assert {"looks", "promoted_at"} <= columns
    assert SCHEMA_VERSION == 2 and s.schema_version() == 2
    versions = s.rows(schema_version, order_by=schema_version.c.version)
    assert [(r["version"], r["applied_at"]) for r in versions] == [(1, 1.0), (2, 1_000.0)]
    old = s.model_version("churn", "v2")
    assert old is not None and old["looks"] == 0 and old["promoted_at"] is None
    assert old["note"] == "old"
    # The upgraded table works as a new one: looks, promotion, new rows.
    assert s.record_looks("churn", "v2", 0, 1, "look 0: x")
    s.report_version("churn", "v3", "candidate")
    assert s.model_version("churn", "v3")["looks"] == 0  # type: ignore[index]
    s.create_schema()  # again: nothing to do
    assert s.count(schema_version) == 2


def test_concurrent_upgrades_from_schema_1(store: Store) -> None:
    """Two processes start on a schema-1 database at once: one upgrades, the
    other waits for it and finds schema 2."""
    make_v1(store)
    other = Store(make_engine(url_of(store)))
    try:
        run_concurrently(store.create_schema, other.create_schema)
    finally:
        other.engine.dispose()
    assert [r["version"] for r in store.rows(schema_version)] == [1, 2]
    with store.engine.connect() as conn:
        assert conn.execute(select(model_versions.c.looks)).scalars().all() == [0]
