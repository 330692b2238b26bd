"""A kill -9 of driftd between the decision and the send: the outbox delivers
after restart, exactly one decision, idempotency key unchanged.

The webhook's receiver is down while the decision is made, so its delivery is
stored and pending (attempted, refused) when the daemon is killed. The
receiver then comes up on that port, the daemon restarts, the replay resumes
from its checkpoint and finishes, and the stored delivery goes out.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tests.helpers import DEMO, demo_config_text, free_port
from triggers.signing import verify

KEY = "outbox-crash-test-key-0123456789"


def _config(tmp: Path, port: int) -> Path:
    actions = (
        '[[actions]]\ntype = "webhook"\nname = "retrain"\n'
        f'url = "http://127.0.0.1:{port}/retrain"\nsigning_key = "${{DRIFTD_TEST_KEY}}"\n'
        # Keep retrying while the receiver is down; never give up in this test.
        "max_attempts = 1000\nbackoff_seconds = 0.1\nbackoff_max_seconds = 0.5\n"
        "timeout_seconds = 5.0\n"
    )
    text = demo_config_text(tmp / "driftd.db", actions=actions)
    text = text.replace("checkpoint_interval_seconds = 5.0", "checkpoint_interval_seconds = 0.2")
    text = text.replace("batch_size = 2000", "batch_size = 500")
    # Paced replay (about 4 s of event-time pacing for the whole file), so the
    # kill lands while the replay is still going.
    text = text.replace("speed = 0 ", "speed = 10000 ")
    # A finished replay waits for pending deliveries: long enough for the second
    # run to deliver, and the first run is killed long before this.
    text = text.replace("drain_timeout_seconds = 30.0", "drain_timeout_seconds = 120.0")
    path = tmp / "driftd.toml"
    path.write_text(text)
    return path


def _query(db: Path, sql: str) -> list[dict[str, Any]]:
    """Rows from the daemon's SQLite store (empty while it does not exist yet)."""
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
            c.row_factory = sqlite3.Row
            return [dict(r) for r in c.execute(sql)]
    except sqlite3.OperationalError:  # schema not created yet, or briefly locked
        return []


def _pending_webhook(db: Path) -> list[dict[str, Any]]:
    return _query(
        db,
        "SELECT d.idempotency_key, d.outcome, v.status, v.attempts, v.last_error "
        "FROM decisions d JOIN deliveries v ON v.decision_key = d.idempotency_key "
        "WHERE v.kind = 'action' AND v.target = 'retrain'",
    )


def _predictions_position(db: Path) -> int:
    (cp,) = _query(db, "SELECT positions FROM checkpoints")
    positions: dict[str, int] = json.loads(cp["positions"])
    return next(v for k, v in positions.items() if k.startswith("file:predictions:"))


def _poll(condition: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(0.05)
    return False


def _start(cfg: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "run", "--config", str(cfg)],
        cwd=cfg.parent,
        env={**os.environ, "DRIFTD_TEST_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def test_kill_9_between_decision_and_send(tmp_path: Path, receiver_factory: Any) -> None:
    port = free_port()  # nothing listens here until after the kill
    cfg = _config(tmp_path, port)
    db = tmp_path / "driftd.db"
    log_path = tmp_path / "driftd.log"

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    with log_path.open("wb") as log:
        first = _start(cfg, log)
        try:
            # The decision is stored with its delivery, attempted and refused.
            stored = _poll(
                lambda: any(
                    r["status"] == "pending" and r["attempts"] >= 1 for r in _pending_webhook(db)
                ),
                timeout=180,
                proc=first,
            )
            assert stored, f"no pending webhook delivery appeared\n{log_tail()}"
            assert first.poll() is None, f"driftd exited before the kill\n{log_tail()}"
            first.send_signal(signal.SIGKILL)
            assert first.wait(timeout=10) == -signal.SIGKILL
        finally:
            _stop(first)

    before = _pending_webhook(db)
    assert len(before) == 1, before
    (row,) = before
    key = row["idempotency_key"]
    assert (row["outcome"], row["status"]) == ("fired", "pending")
    assert "refused" in (row["last_error"] or "").lower()
    assert row["attempts"] >= 1
    # Killed mid-replay: the restart resumes from this checkpoint, not the start.
    killed_at = _predictions_position(db)
    assert 0 < killed_at < (DEMO / "predictions.jsonl").stat().st_size

    receiver, _stop_receiver = receiver_factory(port)
    with log_path.open("ab") as log:
        second = _start(cfg, log)
        try:
            second.wait(timeout=240)
        finally:
            _stop(second)
    assert second.returncode == 0, log_tail()

    requests: list[Any] = receiver.wait_for(1, timeout=5)
    assert requests, "the stored delivery was never sent after the restart"
    # All requests (a repeat would be at-least-once) carry the stored decision's key.
    assert {r.headers["Idempotency-Key"] for r in requests} == {key}
    for r in requests:
        assert r.path == "/retrain"
        body = json.loads(r.body)
        assert body["decision_id"] == key and body["idempotency_key"] == key
        ts = r.headers["X-Driftd-Timestamp"]
        assert verify(KEY.encode(), ts, r.body, r.headers["X-Driftd-Signature"], now=float(ts))

    assert _predictions_position(db) > killed_at

    fired = _query(db, "SELECT idempotency_key FROM decisions WHERE outcome = 'fired'")
    assert [f["idempotency_key"] for f in fired] == [key]
    after = _pending_webhook(db)
    assert [(r["idempotency_key"], r["status"]) for r in after] == [(key, "delivered")]
    attempts = _query(
        db,
        "SELECT a.ok FROM delivery_attempts a JOIN deliveries v ON a.delivery_id = v.id "
        "WHERE v.kind = 'action' AND v.target = 'retrain' ORDER BY a.attempt",
    )
    oks = [bool(a["ok"]) for a in attempts]
    # Refused while the receiver was down, then one success after the restart.
    assert oks[-1] and oks.count(True) == 1 and len(oks) >= 2, oks
