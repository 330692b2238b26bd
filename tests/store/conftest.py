"""Fixtures for the store suite: every test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``$DRIFTD_TEST_PG_URL`` (CI starts one with
``.ci/postgres.sh``); without it, a throwaway server is started here with that
script and stopped at the end of the session. Each PostgreSQL test gets its own
database (created here, dropped at teardown), each SQLite test its own file.

If PostgreSQL cannot be had, the PostgreSQL half of the suite fails under
``CI=true`` and is skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from monitor.store import Store, make_engine
from tests.helpers import drop_database

ROOT = Path(__file__).resolve().parents[2]
PG_SCRIPT = ROOT / ".ci" / "postgres.sh"
PG_URL_ENV = "DRIFTD_TEST_PG_URL"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(
            f"PostgreSQL is required when CI=true but is unavailable: {reason}", pytrace=False
        )
    pytest.skip(f"PostgreSQL unavailable ({reason}); set {PG_URL_ENV} or install postgresql")


def _check_reachable(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def _start_server(base: str) -> str:
    """Run .ci/postgres.sh on ``base`` and return the URL it exports."""
    env = dict(os.environ)
    if not in_ci():
        env["DRIFTD_PG_NO_INSTALL"] = "1"  # never apt-get from a local test run
    env.pop("DRIFTD_PG_DIR", None)
    proc = subprocess.run(
        ["bash", str(PG_SCRIPT), "start", base],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{PG_SCRIPT.name} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    exports: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            exports[name] = value
    if PG_URL_ENV not in exports:
        raise RuntimeError(f"{PG_SCRIPT.name} printed no {PG_URL_ENV}: {proc.stdout!r}")
    return exports[PG_URL_ENV]


def _stop_server(base: str) -> None:
    subprocess.run(
        ["bash", str(PG_SCRIPT), "stop", base], capture_output=True, timeout=120, check=False
    )
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose role may CREATE DATABASE."""
    url = os.environ.get(PG_URL_ENV)
    if url:
        try:
            _check_reachable(url)
        except Exception as exc:  # an explicit URL that does not work is an error, CI or not
            pytest.fail(f"{PG_URL_ENV}={url!r} is not reachable: {exc}", pytrace=False)
        yield url
        return
    if shutil.which("bash") is None:
        _unavailable("bash is not installed")
    base = tempfile.mkdtemp(prefix="driftd-pg-")
    try:
        started, error = "", ""
        try:
            started = _start_server(base)
            _check_reachable(started)
        except Exception as exc:
            error = f"could not start a server with {PG_SCRIPT.relative_to(ROOT)}: {exc}"
        if error:
            _unavailable(error)
        yield started
    finally:
        _stop_server(base)


@pytest.fixture(scope="session")
def pg_admin(pg_url: str) -> Iterator[Engine]:
    """An autocommit engine on the base database, for CREATE/DROP DATABASE."""
    engine = make_engine(pg_url).execution_options(isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_database(pg_url: str, pg_admin: Engine) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = f"driftd_t_{uuid.uuid4().hex[:16]}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    drop_database(pg_admin, name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A Store on a fresh, empty database (no schema yet) of each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'driftd.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    engine = make_engine(url)
    yield Store(engine)
    engine.dispose()
