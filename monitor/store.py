"""The SQL state store (SQLAlchemy Core): SQLite by default, PostgreSQL in production.

Writes are idempotent: every row that the pipeline derives from input has a
deterministic key (a dead letter by its source position, a signal by model,
version, target, detector and position, a decision by its idempotency key), and
inserts skip rows whose key exists. Replaying input after a crash therefore
re-derives the same rows and adds none, so nothing is double-counted. A decision
and its outbox deliveries are written in one transaction; the checkpoint
(positions + pipeline state) can ride in the same one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url

log = logging.getLogger("driftd")

SCHEMA_VERSION = 2
# The rule of rollback decisions (see monitor.versions), which are no retrains.
ROLLBACK_RULE = "rollback"
# rule_state's rule for a model's action cooldown, across its rules (rule names
# cannot contain "*").
MODEL_SLOT = "*"
# pg_advisory_xact_lock key serializing create_schema() across processes.
SCHEMA_LOCK_KEY = 0x64726966_74640001
# pg_advisory_xact_lock(namespace, hashtext(model)) serializing decision writes
# per model (a separate key space from the one-key form above).
MODEL_LOCK_NAMESPACE = 0x64726966

metadata = MetaData()

schema_version = Table(
    "driftd_schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_partition", String(255), nullable=False),
    Column("source_offset", BigInteger, nullable=False),
    Column("stream", String(32), nullable=False),
    Column("model", String(128)),
    Column("reason_code", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("source_partition", "source_offset", name="uq_dead_letter_position"),
)

signals = Table(
    "signals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("signal_key", String(512), nullable=False, unique=True),
    Column("model", String(128), nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("target", String(255), nullable=False),
    Column("detector", String(64), nullable=False),
    Column("statistic", String(64), nullable=False),
    Column("value", Float),
    Column("details", JSON, nullable=False),
    # Events of this model version seen when the detector fired (1-based).
    Column("position", BigInteger, nullable=False),
    Column("event_time", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("rule", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("event_time", Float, nullable=False),
    # For a "resolved" decision: the fired decision it closes.
    Column("resolves", String(128)),
    Column("payload", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decision_key", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # "action" or "alert"
    Column("target", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # pending, delivered, dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_error", Text),
    Column("result", JSON),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    UniqueConstraint("decision_key", "kind", "target", name="uq_delivery"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("detail", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("duration_seconds", Float, nullable=False),
)

# The last decision that fired per (rule, model): the cooldown every process
# sharing this store obeys, whichever shard's signals made the decision.
rule_state = Table(
    "rule_state",
    metadata,
    Column("rule", String(128), primary_key=True),
    Column("model", String(128), primary_key=True),
    Column("last_event_time", Float, nullable=False),
    Column("last_key", String(128), nullable=False),
)

# A model's reference, summarized (detectors.batch.ReferenceProfile as JSON)
# with its performance baseline: a check never needs the raw reference.
reference_profiles = Table(
    "reference_profiles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("model_version", String(128), nullable=False),  # "" = any version
    Column("segment", String(255), nullable=False, default=""),  # "" = all rows
    Column("source", Text, nullable=False),
    Column("n_rows", Integer, nullable=False),
    Column("profile", LargeBinary, nullable=False),
    Column("performance", JSON, nullable=False),
    # The fitted multivariate detector (pickled PCAReconstruction), if any.
    Column("multivariate", LargeBinary),
    Column("created_at", Float, nullable=False),
)

# One batch check of one model's window (and segment), and its per-column results.
batch_checks = Table(
    "batch_checks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("segment", String(255), nullable=False),  # "" = the whole window
    Column("window_start", Float, nullable=False),
    Column("window_end", Float, nullable=False),
    Column("n_rows", Integer, nullable=False),
    Column("n_labeled", Integer, nullable=False),
    Column("drifted_share", Float, nullable=False),
    Column("failed", Boolean, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("report", Text),
    Column("created_at", Float, nullable=False),
)

batch_results = Table(
    "batch_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("check_id", Integer, nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # drift, quality, performance
    Column("name", String(64), nullable=False),  # test, quality check or metric
    Column("column", String(255)),
    Column("statistic", Float),
    Column("p_value", Float),
    Column("threshold", Float),
    Column("failed", Boolean, nullable=False),
    Column("detail", JSON, nullable=False),
)

# Silences and maintenance windows: while one matches (wall-clock time), a
# decision is stored as "silenced" and nothing is sent.
silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),  # a model name or "*"
    Column("rule", String(128)),  # None: every rule
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expired_at", Float),
)

acknowledgements = Table(
    "acknowledgements",
    metadata,
    Column("decision_key", String(128), primary_key=True),
    Column("acknowledged_by", String(128), nullable=False),
    Column("comment", Text, nullable=False),
    Column("acknowledged_at", Float, nullable=False),
)

# Model versions reported by the retraining pipeline (POST .../versions): one
# row per (model, version); "candidate" versions are watched against the
# previous one and rolled back when they do worse.
model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("version", String(128), nullable=False),
    Column("previous_version", String(128)),
    Column("decision_key", String(128)),  # the decision that asked for the retrain
    Column("status", String(16), nullable=False),  # candidate, active, rolled_back
    Column("note", Text),
    Column("reported_at", Float, nullable=False),
    # adopt_reference: when the new version's reference was captured (None: pending).
    Column("reference_adopted_at", Float),
    Column("rollback_key", String(128)),  # the rollback decision, once rolled back
    # Schema 2: group-sequential looks done (compared with the previous version),
    # and when a candidate that passed enough of them became active.
    Column("looks", Integer, nullable=False, default=0, server_default="0"),
    Column("promoted_at", Float),
    UniqueConstraint("model", "version", name="uq_model_version"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("checkpoint_key", String(255), primary_key=True),
    Column("positions", JSON, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("state_version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)


class SchemaVersionError(RuntimeError):
    """The database was written by a newer driftd."""


def _add_columns(conn: Connection, table: Table, names: Sequence[str]) -> None:
    """ALTER TABLE ... ADD COLUMN for those of ``names`` the table lacks (a
    table created by this version's create_all has them already)."""
    have = {c["name"] for c in inspect(conn).get_columns(table.name)}
    preparer = conn.dialect.identifier_preparer
    for name in names:
        if name in have:
            continue
        col = table.c[name]
        ddl = f"ALTER TABLE {preparer.format_table(table)} "
        ddl += f"ADD COLUMN {preparer.format_column(col)} {col.type.compile(dialect=conn.dialect)}"
        if col.server_default is not None:
            default = col.server_default.arg  # type: ignore[attr-defined]
            ddl += f" DEFAULT {default}"
        if not col.nullable:
            ddl += " NOT NULL"
        conn.exec_driver_sql(ddl)


def _migrate_to_2(conn: Connection) -> None:
    """Schema 2: model_versions.looks (group-sequential looks) and promoted_at."""
    _add_columns(conn, model_versions, ["looks", "promoted_at"])


# Schema version -> the step that upgrades the version before it to it.
_MIGRATIONS = {2: _migrate_to_2}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: str
    offset: int
    stream: str
    model: str | None
    reason_code: str
    reason: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SignalRow:
    key: str
    model: str
    model_version: str
    target: str
    detector: str
    statistic: str
    value: float | None
    details: Mapping[str, Any]
    position: int
    event_time: float


@dataclass(frozen=True, slots=True)
class DecisionRow:
    idempotency_key: str
    rule: str
    model: str
    model_version: str
    severity: str
    event_time: float
    payload: Mapping[str, Any]
    # (kind, target) pairs to deliver: ("action", "retrain"), ("alert", "slack").
    deliveries: Sequence[tuple[str, str]] = ()
    # No other decision of this rule for this model may fire within this much
    # event time (either side); one that would is stored as "suppressed".
    cooldown_seconds: float = 0.0
    # "fired" or "resolved" (the rule's condition went quiet: hysteresis).
    outcome: str = "fired"
    resolves: str | None = None
    # At most this many fired, unresolved decisions of the rule per model.
    max_concurrent: int | None = None
    # Per model, for decisions that run actions (a ("action", ...) delivery):
    # no other such decision of any rule may fire within this much event time
    # (either side) ...
    model_cooldown_seconds: float = 0.0
    # ... nor while this many retrains are in flight (see Store._retrains_in_flight),
    # a retrain counting for at most ``retrain_timeout_seconds`` of store time.
    max_concurrent_retrains: int | None = None
    retrain_timeout_seconds: float = 86400.0

    @property
    def runs_actions(self) -> bool:
        return any(kind == "action" for kind, _ in self.deliveries)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    key: str
    positions: Mapping[str, int]
    state: bytes
    state_version: int


@dataclass(frozen=True, slots=True)
class _Claim:
    """A cooldown slot taken: what it held before (None: it was new)."""

    previous: tuple[float, str] | None


@dataclass
class BatchResult:
    """What a batch write actually added (rows already present are not counted)."""

    dead_letters: int = 0
    signals: int = 0
    decisions: list[str] = field(default_factory=list)  # fired
    suppressed: list[str] = field(default_factory=list)  # held by a cooldown
    # Why each suppressed decision was held back: "rule_cooldown", "model_cooldown",
    # "max_concurrent" or "max_concurrent_retrains" (also in its payload).
    suppressed_by: dict[str, str] = field(default_factory=dict)
    silenced: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)


def make_engine(url: str, password: str | None = None) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout for the
    dispatcher thread that writes beside the run loop."""
    u = make_url(url)
    if password is not None:
        u = u.set(password=password)
    if u.get_backend_name() == "postgresql" and u.get_driver_name() in ("", "psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    # JSON columns never carry NaN/inf (PostgreSQL's json rejects them).
    engine = create_engine(
        u, pool_pre_ping=True, json_serializer=lambda o: json.dumps(_json_safe(o), allow_nan=False)
    )
    if u.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


class Store:
    """driftd's tables on an engine it is handed (and does not dispose)."""

    def __init__(self, engine: Engine, clock: Any = time.time) -> None:
        self.engine = engine
        self._clock = clock
        self._dialect = engine.dialect.name

    # -- schema -------------------------------------------------------------
    def create_schema(self) -> None:
        """Create missing tables, upgrade an older schema and record the schema
        version. Safe to repeat, also from several processes at once, in one
        transaction (DDL is transactional on both): PostgreSQL under an advisory
        lock, SQLite under its write lock (BEGIN IMMEDIATE)."""
        with self.engine.begin() as conn:
            if self._dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            elif self._dialect == "sqlite":
                # pysqlite opens a transaction only before DML: take the lock now,
                # so that the DDL below is in the transaction and processes queue.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            metadata.create_all(conn)
            found = conn.execute(select(func.max(schema_version.c.version))).scalar()
            if found is None:
                conn.execute(
                    insert(schema_version).values(version=SCHEMA_VERSION, applied_at=self._clock())
                )
            elif found > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"database schema version {found} is newer than this driftd's "
                    f"({SCHEMA_VERSION}); upgrade driftd"
                )
            else:
                for version in range(found + 1, SCHEMA_VERSION + 1):
                    _MIGRATIONS[version](conn)
                    conn.execute(
                        insert(schema_version).values(version=version, applied_at=self._clock())
                    )
                    log.info("database schema upgraded to version %d", version)

    def schema_version(self) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(schema_version.c.version))).scalar()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
            return True
        except Exception:
            return False

    # -- batch writes ---------------------------------------------------------
    def _insert_ignore(self, table: Table) -> Any:
        """INSERT that skips rows whose unique key exists (both dialects)."""
        stmt: Any
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(table).on_conflict_do_nothing()
        elif self._dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table).on_conflict_do_nothing()
        else:
            raise NotImplementedError(f"unsupported database dialect {self._dialect!r}")
        # SQLAlchemy closes an INSERT's cursor without keeping its rowcount, and
        # psycopg 3 then reports -1: keep it, or every insert counts as new.
        return stmt.execution_options(preserve_rowcount=True)

    def write_batch(
        self,
        dead: Iterable[DeadLetter] = (),
        sigs: Iterable[SignalRow] = (),
        decs: Iterable[DecisionRow] = (),
        checkpoint: Iterable[Checkpoint] = (),
    ) -> BatchResult:
        """Write one batch's derived rows, and optionally checkpoints, atomically."""
        now = self._clock()
        result = BatchResult()
        with self.engine.begin() as conn:
            for d in dead:
                r = conn.execute(
                    self._insert_ignore(dead_letters).values(
                        source_partition=d.partition,
                        source_offset=d.offset,
                        stream=d.stream,
                        model=d.model,
                        reason_code=d.reason_code,
                        reason=_text(d.reason),
                        payload=d.payload,
                        created_at=now,
                    )
                )
                result.dead_letters += r.rowcount
            sig_rows = [
                {
                    "signal_key": s.key,
                    "model": s.model,
                    "model_version": s.model_version,
                    "target": s.target,
                    "detector": s.detector,
                    "statistic": s.statistic,
                    "value": _finite_or_none(s.value),
                    "details": {
                        k: _finite_or_none(v) if isinstance(v, float) else v
                        for k, v in s.details.items()
                    },
                    "position": s.position,
                    "event_time": s.event_time,
                    "created_at": now,
                }
                for s in sigs
            ]
            for row in sig_rows:
                result.signals += conn.execute(self._insert_ignore(signals).values(**row)).rowcount
            decs = list(decs)
            self._lock_models(conn, {d.model for d in decs})
            for dec in decs:
                outcome = self._insert_decision(conn, dec, now, result.suppressed_by)
                if outcome == "fired":
                    result.decisions.append(dec.idempotency_key)
                elif outcome == "suppressed":
                    result.suppressed.append(dec.idempotency_key)
                elif outcome == "silenced":
                    result.silenced.append(dec.idempotency_key)
                elif outcome == "resolved":
                    result.resolved.append(dec.idempotency_key)
            for cp in checkpoint:
                self._save_checkpoint(conn, cp, now)
        return result

    def _lock_models(self, conn: Connection, models: set[str]) -> None:
        """Serialize decision writes per model across processes until the end of
        the transaction, so that the counts behind ``max_concurrent`` and
        ``max_concurrent_retrains`` cannot be read by two writers at once.
        PostgreSQL: an advisory lock per model, taken in sorted order (no
        deadlock between batches); SQLite: the database's write lock (pysqlite
        starts the transaction at the first DML, not at a read)."""
        if not models:
            return
        if self._dialect == "postgresql":
            for model in sorted(models):
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:ns, hashtext(:model))"),
                    {"ns": MODEL_LOCK_NAMESPACE, "model": model},
                )
        else:
            c = rule_state.c
            conn.execute(
                update(rule_state)
                .where(c.rule == MODEL_SLOT, c.model == min(models))
                .values(last_key=c.last_key)
            )

    def _insert_decision(
        self, conn: Connection, dec: DecisionRow, now: float, why: dict[str, str] | None = None
    ) -> str | None:
        """Store a decision: "fired" (with its deliveries), "silenced" (a silence
        or maintenance window matches), "suppressed" (a limit holds: the reason,
        also put in ``why``, is the payload's "suppressed_by"), or None if it was
        stored before (a replay after a crash): then nothing new is sent."""
        seen = conn.execute(
            select(decisions.c.id).where(decisions.c.idempotency_key == dec.idempotency_key)
        ).first()
        if seen is not None:
            return None
        held: str | None = None
        if dec.outcome == "resolved":
            outcome = "resolved"  # always stored and told, silences or not
        elif self._silenced(conn, dec.rule, dec.model, self._clock()):
            outcome = "silenced"
        else:
            held = self._hold(conn, dec, now)
            outcome = "fired" if held is None else "suppressed"
        payload = dict(dec.payload)
        if held is not None:
            payload["suppressed_by"] = held
            if why is not None:
                why[dec.idempotency_key] = held
        r = conn.execute(
            self._insert_ignore(decisions).values(
                idempotency_key=dec.idempotency_key,
                rule=dec.rule,
                model=dec.model,
                model_version=dec.model_version,
                severity=dec.severity,
                outcome=outcome,
                event_time=dec.event_time,
                resolves=dec.resolves,
                payload=_json_safe(payload),
                created_at=now,
            )
        )
        if r.rowcount == 0:
            return None
        if outcome in ("fired", "resolved"):
            for kind, target in dec.deliveries:
                conn.execute(
                    self._insert_ignore(deliveries).values(
                        decision_key=dec.idempotency_key,
                        kind=kind,
                        target=target,
                        status="pending",
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
        return outcome

    def _open(self, conn: Connection, dec: DecisionRow) -> int:
        """Fired decisions of ``dec``'s rule and model that no decision resolved."""
        c = decisions.c
        closed = select(c.resolves).where(c.resolves.is_not(None))
        return int(
            conn.execute(
                select(func.count())
                .select_from(decisions)
                .where(
                    c.rule == dec.rule,
                    c.model == dec.model,
                    c.outcome == "fired",
                    c.idempotency_key.not_in(closed),
                )
            ).scalar()
            or 0
        )

    def _silenced(self, conn: Connection, rule: str, model: str, now: float) -> bool:
        c = silences.c
        hit = conn.execute(
            select(c.id).where(
                c.starts_at <= now,
                c.ends_at > now,
                c.expired_at.is_(None),
                (c.model == model) | (c.model == "*"),
                (c.rule == rule) | c.rule.is_(None),
            )
        ).first()
        return hit is not None

    def _hold(self, conn: Connection, dec: DecisionRow, now: float) -> str | None:
        """Why ``dec`` may not fire, or None once it has taken its cooldown slots.
        In order: the rule's ``max_concurrent``, the model's retrains in flight,
        the rule's cooldown, then the model's action cooldown (a model-level slot,
        rule ``MODEL_SLOT``); when only the last is held, the rule's claim is
        undone in this transaction, so the rule is not cooling down for a
        decision that did not fire. The last two apply to decisions that run
        actions only."""
        if dec.max_concurrent is not None and self._open(conn, dec) >= dec.max_concurrent:
            return "max_concurrent"
        acts = dec.runs_actions
        if acts and dec.max_concurrent_retrains is not None:
            since = now - dec.retrain_timeout_seconds
            if self._retrains_in_flight(conn, dec.model, since) >= dec.max_concurrent_retrains:
                return "max_concurrent_retrains"
        t, key = dec.event_time, dec.idempotency_key
        claim = self._claim_cooldown(conn, dec.rule, dec.model, t, dec.cooldown_seconds, key)
        if claim is None:
            return "rule_cooldown"
        if acts and dec.model_cooldown_seconds > 0:
            cd = dec.model_cooldown_seconds
            if self._claim_cooldown(conn, MODEL_SLOT, dec.model, t, cd, key) is None:
                self._release_cooldown(conn, dec.rule, dec.model, key, claim)
                return "model_cooldown"
        return None

    def _claim_cooldown(
        self, conn: Connection, rule: str, model: str, t: float, cd: float, key: str
    ) -> _Claim | None:
        """Atomically take the (rule, model) cooldown slot for event time ``t``
        (decision ``key``); None if another decision holds it, ``cd`` either side.
        The slot is locked first by a no-op UPDATE (its row on PostgreSQL, the
        database on SQLite) so that what it held is known for
        :meth:`_release_cooldown`; the conditional UPDATE (or the first INSERT)
        is atomic on both SQLite and PostgreSQL, so two processes cannot both win."""
        c = rule_state.c
        slot = (c.rule == rule) & (c.model == model)
        free = (c.last_event_time <= t - cd) | (c.last_event_time >= t + cd)
        for _ in range(3):
            conn.execute(update(rule_state).where(slot).values(last_key=c.last_key))
            held = conn.execute(select(c.last_event_time, c.last_key).where(slot)).first()
            if held is not None:
                take = update(rule_state).where(slot, free).values(last_event_time=t, last_key=key)
                if conn.execute(take).rowcount == 1:
                    return _Claim((held.last_event_time, held.last_key))
                return None
            first = self._insert_ignore(rule_state).values(
                rule=rule, model=model, last_event_time=t, last_key=key
            )
            if conn.execute(first).rowcount == 1:
                return _Claim(None)
        return None

    def _release_cooldown(
        self, conn: Connection, rule: str, model: str, key: str, claim: _Claim
    ) -> None:
        """Undo :meth:`_claim_cooldown` in the same transaction (the slot is still
        locked by it): give the slot back what it held, or remove a new one."""
        c = rule_state.c
        mine = (c.rule == rule) & (c.model == model) & (c.last_key == key)
        if claim.previous is None:
            conn.execute(delete(rule_state).where(mine))
        else:
            t, last = claim.previous
            conn.execute(update(rule_state).where(mine).values(last_event_time=t, last_key=last))

    def _retrains_in_flight(self, conn: Connection, model: str, since: float) -> int:
        """Retrains of ``model`` in flight: fired decisions of any rule but the
        rollback that run actions, created after ``since`` (store clock), that no
        decision resolved, that no reported version names as its decision (the
        pipeline finished), and that have an action delivery not dead."""
        d, dl, mv = decisions.c, deliveries.c, model_versions.c
        closed = select(d.resolves).where(d.model == model, d.resolves.is_not(None))
        done = select(mv.decision_key).where(mv.model == model, mv.decision_key.is_not(None))
        live = (
            select(dl.id)
            .where(dl.decision_key == d.idempotency_key, dl.kind == "action", dl.status != "dead")
            .exists()
        )
        return int(
            conn.execute(
                select(func.count())
                .select_from(decisions)
                .where(
                    d.model == model,
                    d.outcome == "fired",
                    d.rule != ROLLBACK_RULE,
                    d.created_at > since,
                    d.idempotency_key.not_in(closed),
                    d.idempotency_key.not_in(done),
                    live,
                )
            ).scalar()
            or 0
        )

    # -- checkpoints ------------------------------------------------------------
    def _save_checkpoint(self, conn: Connection, cp: Checkpoint, now: float) -> None:
        values = {
            "positions": dict(cp.positions),
            "state": cp.state,
            "state_version": cp.state_version,
            "updated_at": now,
        }
        stmt: Any
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(checkpoints)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(checkpoints)
        stmt = stmt.values(checkpoint_key=cp.key, **values)
        conn.execute(
            stmt.on_conflict_do_update(index_elements=[checkpoints.c.checkpoint_key], set_=values)
        )

    def save_checkpoints(self, cps: Iterable[Checkpoint]) -> None:
        self.write_batch(checkpoint=cps)

    def load_checkpoints(self, prefix: str) -> list[Checkpoint]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(checkpoints).where(
                    func.substr(checkpoints.c.checkpoint_key, 1, len(prefix)) == prefix
                )
            ).all()
        return [
            Checkpoint(r.checkpoint_key, dict(r.positions), bytes(r.state), r.state_version)
            for r in rows
        ]

    # -- outbox -----------------------------------------------------------------
    def due_deliveries(self, now: float, limit: int = 50) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(deliveries, decisions.c.payload)
                    .join(decisions, decisions.c.idempotency_key == deliveries.c.decision_key)
                    .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
                    .order_by(deliveries.c.id)
                    .limit(limit)
                ).all()
            )

    def record_attempt(
        self,
        delivery_id: int,
        attempt: int,
        ok: bool,
        detail: str,
        started_at: float,
        duration: float,
        status: str,
        next_attempt_at: float,
        result: Mapping[str, Any] | None = None,
    ) -> None:
        """Log one attempt and move the delivery on, in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(delivery_attempts).values(
                    delivery_id=delivery_id,
                    attempt=attempt,
                    ok=ok,
                    detail=_text(detail)[:4000],
                    started_at=started_at,
                    duration_seconds=duration,
                )
            )
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(
                    attempts=attempt,
                    status=status,
                    next_attempt_at=next_attempt_at,
                    last_error=None if ok else _text(detail)[:4000],
                    delivered_at=self._clock() if ok else None,
                    result=_json_safe(dict(result)) if result is not None else None,
                )
            )

    # -- references and batch checks ---------------------------------------------
    def save_reference(
        self,
        model: str,
        version: str,
        source: str,
        n_rows: int,
        profile: bytes,
        performance: Mapping[str, Any],
        segment: str = "",
        multivariate: bytes | None = None,
    ) -> int:
        with self.engine.begin() as conn:
            r = conn.execute(
                insert(reference_profiles).values(
                    model=model,
                    model_version=version,
                    segment=segment,
                    multivariate=multivariate,
                    source=source,
                    n_rows=n_rows,
                    profile=profile,
                    performance=dict(performance),
                    created_at=self._clock(),
                )
            )
            key = r.inserted_primary_key
            assert key is not None
            return int(key[0])

    def load_reference(
        self, model: str, version: str = "", segment: str = "", exact: bool = False
    ) -> dict[str, Any] | None:
        """The newest reference for ``model`` and ``version``; else the newest
        for every version (``""``); else, unless ``exact``, the newest of any
        version (a window mixing versions when references are per version)."""
        c = reference_profiles.c
        with self.engine.connect() as conn:
            for v in (*dict.fromkeys((version, "")), None):
                if v is None and exact:
                    break
                query = select(reference_profiles).where(c.model == model, c.segment == segment)
                if v is not None:
                    query = query.where(c.model_version == v)
                row = conn.execute(query.order_by(c.id.desc()).limit(1)).first()
                if row is not None:
                    return dict(row._mapping)
        return None

    def save_check(
        self, check: Mapping[str, Any], results: Iterable[Mapping[str, Any]], reuse: bool = False
    ) -> int:
        """Store one check and its results in one transaction. ``reuse``: if a
        check of the same model, segment, window bounds and size is stored
        (the same self-closed window judged again after a restart), return its
        id and store nothing."""
        with self.engine.begin() as conn:
            if reuse:
                c = batch_checks.c
                seen = conn.execute(
                    select(c.id).where(
                        c.model == check["model"],
                        c.segment == check["segment"],
                        c.window_start == check["window_start"],
                        c.window_end == check["window_end"],
                        c.n_rows == check["n_rows"],
                    )
                ).first()
                if seen is not None:
                    return int(seen[0])
            r = conn.execute(insert(batch_checks).values(**check, created_at=self._clock()))
            key = r.inserted_primary_key
            assert key is not None
            check_id = int(key[0])
            rows = [
                {
                    **res,
                    "statistic": _finite_or_none(res.get("statistic")),
                    "p_value": _finite_or_none(res.get("p_value")),
                    "threshold": _finite_or_none(res.get("threshold")),
                    "check_id": check_id,
                }
                for res in results
            ]
            if rows:
                conn.execute(insert(batch_results), rows)
            return check_id

    # -- model versions ------------------------------------------------------------
    def report_version(
        self,
        model: str,
        version: str,
        status: str,
        decision_key: str | None = None,
        note: str | None = None,
        fallback_previous: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Record a new version of ``model`` (its previous version: the newest
        active one, else ``fallback_previous``). Idempotent per (model, version):
        returns the stored row and whether it was stored before. The first
        version reported with no previous one is active whatever ``status`` says."""
        c = model_versions.c
        with self.engine.begin() as conn:
            seen = conn.execute(
                select(model_versions).where(c.model == model, c.version == version)
            ).first()
            if seen is not None:
                return dict(seen._mapping), True
            last = conn.execute(
                select(c.version)
                .where(c.model == model, c.status == "active")
                .order_by(c.id.desc())
                .limit(1)
            ).scalar()
            previous = last if last is not None else fallback_previous
            if previous == version:
                previous = None
            conn.execute(
                self._insert_ignore(model_versions).values(
                    model=model,
                    version=version,
                    previous_version=previous,
                    decision_key=decision_key,
                    status=status if previous is not None else "active",
                    note=note,
                    reported_at=self._clock(),
                )
            )
            row = conn.execute(
                select(model_versions).where(c.model == model, c.version == version)
            ).one()
        return dict(row._mapping), False

    def model_version(self, model: str, version: str) -> dict[str, Any] | None:
        c = model_versions.c
        found = self.rows(model_versions, c.model == model, c.version == version)
        return found[0] if found else None

    def update_version(self, model: str, version: str, **values: Any) -> None:
        c = model_versions.c
        with self.engine.begin() as conn:
            conn.execute(
                update(model_versions)
                .where(c.model == model, c.version == version)
                .values(**values)
            )

    def record_looks(self, model: str, version: str, done: int, looks: int, note: str) -> bool:
        """Move a candidate's look count from ``done`` to ``looks`` and append
        ``note`` (the looks' result) to its note; False if another process did
        these looks first, or it is no candidate any more (then nothing changes)."""
        c = model_versions.c
        with self.engine.begin() as conn:
            r = conn.execute(
                update(model_versions)
                .where(
                    c.model == model,
                    c.version == version,
                    c.status == "candidate",
                    c.looks == done,
                )
                .values(looks=looks, note=func.coalesce(c.note + "\n", "") + note)
            )
            return r.rowcount == 1

    def promote_version(self, model: str, version: str) -> bool:
        """The candidate ``version`` becomes active and the version it was
        compared with is retired, in one transaction; False if it is no
        candidate any more (rolled back or promoted meanwhile)."""
        c = model_versions.c
        with self.engine.begin() as conn:
            row = conn.execute(
                select(c.previous_version).where(c.model == model, c.version == version)
            ).first()
            r = conn.execute(
                update(model_versions)
                .where(c.model == model, c.version == version, c.status == "candidate")
                .values(status="active", promoted_at=self._clock())
            )
            if r.rowcount != 1:
                return False
            if row is not None and row.previous_version is not None:
                conn.execute(
                    update(model_versions)
                    .where(
                        c.model == model, c.version == row.previous_version, c.status == "active"
                    )
                    .values(status="retired")
                )
            return True

    # -- silences and acknowledgements -------------------------------------------
    def add_silence(
        self,
        model: str,
        rule: str | None,
        starts_at: float,
        ends_at: float,
        comment: str,
        created_by: str,
    ) -> int:
        if ends_at <= starts_at:
            raise ValueError("ends_at must be after starts_at")
        with self.engine.begin() as conn:
            r = conn.execute(
                insert(silences).values(
                    model=model,
                    rule=rule,
                    starts_at=starts_at,
                    ends_at=ends_at,
                    comment=comment,
                    created_by=created_by,
                    created_at=self._clock(),
                )
            )
            key = r.inserted_primary_key
            assert key is not None
            return int(key[0])

    def expire_silence(self, silence_id: int) -> bool:
        with self.engine.begin() as conn:
            r = conn.execute(
                update(silences)
                .where(silences.c.id == silence_id, silences.c.expired_at.is_(None))
                .values(expired_at=self._clock())
            )
            return r.rowcount == 1

    def acknowledge(self, decision_key: str, by: str, comment: str) -> bool:
        """Record that a person saw a decision; False if there is no such decision."""
        with self.engine.begin() as conn:
            found = conn.execute(
                select(decisions.c.id).where(decisions.c.idempotency_key == decision_key)
            ).first()
            if found is None:
                return False
            conn.execute(
                self._insert_ignore(acknowledgements).values(
                    decision_key=decision_key,
                    acknowledged_by=by,
                    comment=comment,
                    acknowledged_at=self._clock(),
                )
            )
            return True

    def delivery_result(self, decision_key: str, kind: str, target: str) -> dict[str, Any] | None:
        """What a delivered target reported back (a Slack message's ts, say)."""
        c = deliveries.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(c.result).where(
                    c.decision_key == decision_key,
                    c.kind == kind,
                    c.target == target,
                    c.status == "delivered",
                )
            ).first()
        return dict(row.result) if row is not None and row.result else None

    def pending_deliveries(self) -> int:
        with self.engine.connect() as conn:
            n = conn.execute(
                select(func.count()).select_from(deliveries).where(deliveries.c.status == "pending")
            ).scalar()
        return int(n or 0)

    # -- reads (CLI, HTTP API, tests) ---------------------------------------------
    def rows(
        self, table: Table, *where: Any, order_by: Any = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        stmt = (
            select(table).where(*where).order_by(order_by if order_by is not None else table.c[0])
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def count(self, table: Table, *where: Any) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(table).where(*where)).scalar() or 0
            )


def _finite_or_none(v: float | None) -> float | None:
    if v is None or v != v or v in (float("inf"), float("-inf")):
        return None
    return float(v)


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as None: PostgreSQL's json rejects NaN/Infinity."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _text(s: str) -> str:
    """PostgreSQL text cannot hold NUL."""
    return s.replace("\x00", "\ufffd")
