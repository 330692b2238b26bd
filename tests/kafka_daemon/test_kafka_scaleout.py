"""Scale-out: two ``driftd run`` processes in one consumer group, one PostgreSQL store.

The bundled demo stream (with a few malformed records, see test_kafka_crash.py)
is produced to a fresh Tansu broker. Two processes consume it in one group,
two shards each, sharing a PostgreSQL store; one is killed with SIGKILL while
its shards are mid-stream. The survivor must take over its partitions once
the dead member's session expires, restore their state from the dead
member's last checkpoints (not start them fresh), and end where a single
process ends on the same input (its own topics, group and database):
detector state, counts per model, join, signals, dead letters, decisions,
and one webhook idempotency key per fired decision.

Processes are stopped one at a time (a Tansu group can get stuck when two
members leave at the same moment). PostgreSQL comes from
``$DRIFTD_TEST_PG_URL`` or is started with .ci/postgres.sh as
tests/store/conftest.py does; missing, it skips, or fails under CI=true.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from monitor.store import SCHEMA_VERSION, Store, make_engine
from tests.helpers import Receiver, drop_database
from tests.kafka.conftest import TansuBroker, tansu_binary
from tests.kafka_daemon.test_kafka_crash import (
    MALFORMED,
    OUTCOMES_TOTAL,
    PREDICTIONS_TOTAL,
    SOURCE,
    Driftd,
    deliveries_done,
    differences,
    final_view,
    fired,
    join_problems,
    kafka_config,
    need,
    processed,
    produce,
    safe_positions,
    stream,
    wait_until,
    with_group,
)
from tests.store.conftest import PG_URL_ENV, _check_reachable, _start_server, _stop_server

PASSWORD_ENV = "DRIFTD_TEST_PG_PASSWORD"
SERVING = r"serving /metrics"  # logged after the schema is created and state restored


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """A PostgreSQL URL whose role may CREATE DATABASE (as tests/store/conftest.py)."""
    url = os.environ.get(PG_URL_ENV)
    if url:
        try:
            _check_reachable(url)
        except Exception as exc:  # an explicit URL that does not work is an error
            pytest.fail(f"{PG_URL_ENV}={url!r} is not reachable: {exc}", pytrace=False)
        yield url
        return
    need(shutil.which("bash") is not None, "PostgreSQL unavailable: bash is not installed")
    base = tempfile.mkdtemp(prefix="driftd-pg-")
    try:
        started, error = "", ""
        try:
            started = _start_server(base)
            _check_reachable(started)
        except Exception as exc:
            error = f"could not start PostgreSQL with .ci/postgres.sh: {exc}"
        need(not error, error)
        yield started
    finally:
        _stop_server(base)


@pytest.fixture
def pg_databases(pg_server: str) -> Iterator[list[str]]:
    """Two fresh databases (URLs without the password), dropped afterwards.
    The password reaches driftd as a secret from the environment."""
    admin = make_engine(pg_server).execution_options(isolation_level="AUTOCOMMIT")
    names = [f"driftd_scale_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    base = make_url(pg_server)
    os.environ[PASSWORD_ENV] = base.password or ""
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield [base.set(database=n, password=None).render_as_string() for n in names]
    finally:
        for name in names:
            drop_database(admin, name)
        admin.dispose()
        os.environ.pop(PASSWORD_ENV, None)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    binary = tansu_binary()
    need(binary is not None, "Tansu broker not installed (run .ci/kafka.sh)")
    assert binary is not None
    b = TansuBroker(binary, tmp_path / "tansu.log")
    b.start()
    yield b
    b.stop()


def _pg_config(path: Path) -> Path:
    text_ = path.read_text().replace(
        '# password = "${DRIFTD_DB_PASSWORD}"', f'password = "${{{PASSWORD_ENV}}}"'
    )
    assert PASSWORD_ENV in text_
    path.write_text(text_)
    return path


def _store(url: str) -> tuple[Store, Engine]:
    engine = make_engine(url, os.environ[PASSWORD_ENV])
    return Store(engine), engine


def _shards(proc: Driftd) -> set[int]:
    """The shards a process holds now, from its log (assignments and moves)."""
    held: set[int] = set()
    for m in re.finditer(r"shards \[([\d, ]*)\]( moved away)?", proc.log()):
        shards = {int(x) for x in m.group(1).split(",") if x.strip()}
        held = held - shards if m.group(2) else held | shards
    return held


def _left(store: Store, highwater: dict[str, int], shards: set[int]) -> int:
    """Records of ``shards`` past their checkpointed positions."""
    pos = safe_positions(store)
    return sum(
        hw - pos.get(p, 0) for p, hw in highwater.items() if int(p.rsplit(":", 1)[1]) in shards
    )


def _shard_positions(store: Store, shards: set[int]) -> dict[str, int]:
    return {p: o for p, o in safe_positions(store).items() if int(p.rsplit(":", 1)[1]) in shards}


@pytest.mark.service
def test_survivor_takes_over_a_killed_member_and_ends_like_one_process(
    broker: TansuBroker,
    pg_databases: list[str],
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    client = "kafka-python"  # the default client; the crash test covers both
    ref_url, url = pg_databases
    records = stream()
    ref_topics = produce(broker.bootstrap, records, "single")
    topics = produce(broker.bootstrap, records, "scale")
    run_id = uuid.uuid4().hex[:8]
    # Slow enough (backpressure: 1000 records per checkpoint per member) that
    # a member is killed with most of its shards still to read.
    ref_cfg = _pg_config(kafka_config(
        tmp_path, "single", bootstrap=broker.bootstrap, topics=ref_topics, client=client,
        group=f"single-{run_id}", receiver=receiver, storage_url=ref_url,
        max_in_flight_records=1000,
    ))  # fmt: skip
    base = _pg_config(kafka_config(
        tmp_path, "scale", bootstrap=broker.bootstrap, topics=topics, client=client,
        group=f"scale-{run_id}", receiver=receiver, storage_url=url, max_in_flight_records=1000,
    ))  # fmt: skip
    ref_store, ref_engine = _store(ref_url)
    store, engine = _store(url)
    env = {PASSWORD_ENV: os.environ[PASSWORD_ENV]}
    procs: list[Driftd] = []
    try:
        # The single-process reference runs beside (own topics, group, database).
        reference = Driftd(ref_cfg, tmp_path / "single.log", env=env)
        procs.append(reference)
        # The second member starts once the first has created the schema (see
        # test_members_create_the_schema_at_once); Tansu holds a JoinGroup for
        # half the session timeout, so both usually land in one generation.
        first = Driftd(with_group(base, f"scale-{run_id}", "scale-a"), tmp_path / "a.log", env=env)
        procs.append(first)
        assert first.wait_for(SERVING, 30), first.log()[-3000:]
        second = Driftd(with_group(base, f"scale-{run_id}", "scale-b"), tmp_path / "b.log", env=env)
        procs.append(second)
        wait_until(lambda: bool(_shards(first)) and bool(_shards(second))
                   and not _shards(first) & _shards(second),
                   60, "both members holding shards", first, second)  # fmt: skip
        # The victim: the member with more of its shards left to read (the
        # first may have read alone for a while before the second joined).
        victim, survivor = sorted(
            (first, second), key=lambda p: -_left(store, topics.highwater, _shards(p))
        )
        lost = _shards(victim)
        wait_until(lambda: sum(_shard_positions(store, lost).values()) > 0, 30,
                   f"the victim to checkpoint shards {sorted(lost)}", victim)  # fmt: skip
        time.sleep(random.Random(run_id).uniform(0.0, 0.3))
        victim.kill9()
        at_kill = _shard_positions(store, lost)
        left = _left(store, topics.highwater, lost)
        assert left > 2000, f"the victim had (almost) finished its shards: {left} left, {at_kill}"
        mark = len(survivor.log())

        wait_until(lambda: processed(store, topics), 120, "the survivor to finish", survivor)
        wait_until(lambda: deliveries_done(store), 30, "deliveries settled", survivor)
        assert _shards(survivor) == {0, 1, 2, 3}
        after = survivor.log()[mark:]
        # Shards the victim had checkpointed are restored from there, not started fresh.
        checkpointed = {int(p.rsplit(":", 1)[1]) for p in at_kill}
        assert checkpointed
        for n in checkpointed:
            assert re.search(rf"restored shard/{SOURCE}/{n} at ", after), after[-3000:]
        assert survivor.terminate() == 0, survivor.log()[-3000:]

        wait_until(lambda: processed(ref_store, ref_topics), 60, "reference processed", reference)
        wait_until(lambda: deliveries_done(ref_store), 30, "reference deliveries", reference)
        assert reference.terminate() == 0, reference.log()[-3000:]
    finally:
        for p in procs:  # one at a time
            p.kill9()

    view, ref_view = final_view(store), final_view(ref_store)
    totals = view["counts"]
    assert totals.get("events:credit-risk:predictions") == PREDICTIONS_TOTAL, totals
    assert totals.get("events:credit-risk:outcomes") == OUTCOMES_TOTAL, totals
    assert len(view["dead_letters"]) == len(MALFORMED), view["dead_letters"]
    problems = join_problems(ref_view, "single process") + differences(view, ref_view)
    assert not problems, "two processes vs one:\n" + "\n".join(problems)
    keys = {r.headers["Idempotency-Key"] for r in receiver.requests if r.path == "/scale"}
    assert keys == fired(store)
    assert len(keys) == ref_view["decision_outcomes"].get("fired", 0) >= 1
    engine.dispose()
    ref_engine.dispose()


def _create_schema_together(url: str, members: int = 2) -> list[str]:
    """``create_schema()`` from ``members`` stores at once (own engines, released
    by a barrier, as processes started together would be); returns the errors."""
    engines = [make_engine(url, os.environ[PASSWORD_ENV]) for _ in range(members)]
    for e in engines:  # connect first: only create_schema() races
        with e.connect() as conn:
            conn.execute(text("SELECT 1"))
    barrier = threading.Barrier(members, timeout=30)
    errors: list[str] = []

    def start(engine: Engine) -> None:
        barrier.wait()
        try:
            Store(engine).create_schema()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e in engines:
        e.dispose()
    assert not any(t.is_alive() for t in threads), "create_schema() hung"
    return errors


@pytest.mark.service
def test_members_create_the_schema_at_once(pg_server: str) -> None:
    """Members of a group started together (a Deployment scaled out, every
    replica restarted) each create the schema of a fresh database at start-up;
    none may fail at it (seen: `driftd run` exiting 1 with UniqueViolation on
    pg_type for driftd_schema_version)."""
    admin = make_engine(pg_server).execution_options(isolation_level="AUTOCOMMIT")
    base = make_url(pg_server)
    os.environ[PASSWORD_ENV] = base.password or ""
    try:
        for _ in range(3):
            name = f"driftd_race_{uuid.uuid4().hex[:12]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = base.set(database=name, password=None).render_as_string()
                errors = _create_schema_together(url)
                assert not errors, (
                    f"create_schema() failed for a member started with another: {errors}"
                )
                engine = make_engine(url, os.environ[PASSWORD_ENV])
                assert Store(engine).schema_version() == SCHEMA_VERSION
                engine.dispose()
            finally:
                drop_database(admin, name)
    finally:
        admin.dispose()
        os.environ.pop(PASSWORD_ENV, None)
