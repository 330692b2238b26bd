"""Crash safety of the file replay: kill -9 at random points, restart, and end
exactly where an uninterrupted run ends (state, counts, signals, one decision,
one webhook key)."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine

from monitor.batch import stored_window
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.pipeline import ShardState
from monitor.store import Store, batch_checks, dead_letters, decisions, deliveries, signals
from tests.helpers import Receiver, demo_config_text

KEY = "restart-test-key-0123456789"


COUNT_WINDOWS = 'window = "tumbling"\n  window_rows = 2500'


def _config(tmp: Path, name: str, receiver: Receiver, speed: float, window: str = "") -> Path:
    actions = (
        '[[actions]]\ntype = "webhook"\nname = "retrain"\n'
        f'url = "{receiver.url}/{name}"\nsigning_key = "${{DRIFTD_TEST_KEY}}"\nbackoff_seconds = 0.1\n'
    )
    text = demo_config_text(tmp / f"{name}.db", actions=actions)
    text = text.replace("checkpoint_interval_seconds = 5.0", "checkpoint_interval_seconds = 0.2")
    text = text.replace("batch_size = 2000", "batch_size = 500")
    text = text.replace("speed = 0 ", f"speed = {speed} ")
    if window:
        text = text.replace('window = "tumbling"', window)
    else:  # scheduled checks while the replay runs (and gets killed) ...
        text = text.replace("interval_seconds = 60.0", "interval_seconds = 0.3")
        # ... at wall-clock times: the decision is compared on streaming signals.
        text = text.replace(
            'name = "retrain-on-drift"\n',
            'name = "retrain-on-drift"\n'
            'detectors = ["adwin", "page_hinkley", "kswin", "hddm_a", "ddm", "category_chi2"]\n',
        )
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path


def _wait_for_line(proc: subprocess.Popen[bytes], text: str, timeout: float) -> bool:
    """Read the child's stderr until ``text`` (True) or it ends (False)."""
    found = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if text.encode() in line:
                found.set()
                # keep draining so the child never blocks on a full pipe
        found.set()

    threading.Thread(target=read, daemon=True).start()
    found.wait(timeout)
    return proc.poll() is None


def _final_state(db: Path) -> tuple[ShardState, dict[str, int]]:
    store = Store(create_engine(f"sqlite:///{db}"))
    (cp,) = store.load_checkpoints("shard/")
    state = pickle.loads(cp.state)
    return state, dict(cp.positions)


def _detector_states(state: ShardState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model, versions in state.versions.items():
        for version, vs in versions.items():
            out[f"{model}/{version}/n"] = (vs.n, vs.n_outcomes)
            for group in (*vs.numeric, *vs.categorical, vs.score, vs.error):
                for target, dtype, index, det in group:
                    out[f"{model}/{version}/{target}/{dtype}/{index}"] = pickle.dumps(det)
    return out


def _store_view(db: Path, counted_windows: bool = False) -> dict[str, Any]:
    store = Store(create_engine(f"sqlite:///{db}"))
    return {
        "signals": sorted(
            r["signal_key"]
            for r in store.rows(signals)
            if counted_windows or "|batch|" not in r["signal_key"]
        ),
        "decisions": sorted(
            r["idempotency_key"] for r in store.rows(decisions) if r["outcome"] == "fired"
        ),
        "dead": store.count(dead_letters),
        "deliveries": sorted((r["target"], r["status"]) for r in store.rows(deliveries)),
        # (Scheduled checks depend on wall time; windows that close themselves do not.)
        "checks": sorted(
            (r["id"], r["segment"], r["window_start"], r["window_end"], r["n_rows"], r["failed"])
            for r in store.rows(batch_checks)
        )
        if counted_windows
        else None,
    }


@pytest.mark.parametrize("window", ["", COUNT_WINDOWS], ids=["scheduled", "count-windows"])
def test_kill_9_at_random_points_loses_and_doubles_nothing(
    tmp_path: Path, receiver: Receiver, window: str
) -> None:
    env = {**os.environ, "DRIFTD_TEST_KEY": KEY}
    os.environ["DRIFTD_TEST_KEY"] = KEY
    try:
        reference = Daemon(
            load_config(_config(tmp_path, "ref", receiver, 0, window)),
            registry=CollectorRegistry(),
        )
        reference.run(serve_http=False)
    finally:
        del os.environ["DRIFTD_TEST_KEY"]
    ref_state, ref_positions = _final_state(tmp_path / "ref.db")

    # 20000 predictions, 2 s apart: at speed 10000 the replay takes about 4 s
    # of processing, so kills 0.05-0.6 s after each start land all along it
    # (in batches, in checkpoints, in deliveries).
    cfg = _config(tmp_path, "killed", receiver, 10000, window)
    rng = random.Random(20261125)
    kills = 0
    for _ in range(40):
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--config", str(cfg)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        started = _wait_for_line(proc, "serving /metrics", timeout=60)
        # Twelve kills, then the run that is allowed to finish.
        delay = rng.uniform(0.05, 0.6) if started and kills < 12 else 120
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
            continue
        finally:
            assert proc.stderr is not None
            proc.stderr.close()
        assert proc.returncode == 0
        break
    else:
        raise AssertionError("the replay never finished")
    assert kills >= 10, f"only {kills} kills landed; the test did not test restarts"

    state, positions = _final_state(tmp_path / "killed.db")
    assert positions == ref_positions
    assert state.counts == ref_state.counts
    assert state.join.stats == ref_state.join.stats
    assert _detector_states(state) == _detector_states(ref_state)
    counted = bool(window)
    view = _store_view(tmp_path / "killed.db", counted)
    ref_view = _store_view(tmp_path / "ref.db", counted)
    assert view == ref_view
    if counted:  # 20000 predictions: 8 windows, each judged once (and per segment)
        assert sum(1 for c in view["checks"] if c[1] == "") == 8
    else:
        # Scheduled checks close windows at wall-clock times, so they differ
        # from the uninterrupted run's; but each prediction is judged exactly
        # once (or waits in the last open window), whatever the kills hit.
        store = Store(create_engine(f"sqlite:///{tmp_path / 'killed.db'}"))
        checks = store.rows(batch_checks, batch_checks.c.segment == "")
        assert len(checks) >= 2
        spans = [(c["window_start"], c["window_end"]) for c in checks]
        assert len(set(spans)) == len(spans)
        left = stored_window(store, "credit-risk")
        assert sum(c["n_rows"] for c in checks) + (left.n if left else 0) == 20000
    assert state.windows is not None and state.windows.closed == []
    assert len(view["decisions"]) == 1
    # At-least-once delivery: a kill between send and record may repeat the
    # POST, always with the decision's key, so the receiver keeps one.
    keys = {r.headers["Idempotency-Key"] for r in receiver.requests if r.path == "/killed"}
    assert keys == set(view["decisions"])


def test_stop_and_resume_in_process(tmp_path: Path, receiver: Receiver) -> None:
    os.environ["DRIFTD_TEST_KEY"] = KEY
    try:
        ref = Daemon(
            load_config(_config(tmp_path, "ref2", receiver, 0)), registry=CollectorRegistry()
        )
        ref.run(serve_http=False)
        cfg = load_config(_config(tmp_path, "part", receiver, 0))
        first = Daemon(cfg, registry=CollectorRegistry())
        polls = 0
        original = first.sources[0].source.poll

        def stop_after_some(max_records: int, timeout: float) -> Any:
            nonlocal polls
            polls += 1
            if polls == 9:
                first.request_stop()  # as SIGTERM would: finish this batch, checkpoint, close
            return original(max_records, timeout)

        first.sources[0].source.poll = stop_after_some  # type: ignore[method-assign]
        first.run(serve_http=False)
        partial = first.pipeline.totals()["events:credit-risk:predictions"]
        assert 0 < partial < 20000
        second = Daemon(cfg, registry=CollectorRegistry())
        second.run(serve_http=False)
    finally:
        del os.environ["DRIFTD_TEST_KEY"]
    assert second.pipeline.totals() == ref.pipeline.totals()
    assert (
        _store_view(tmp_path / "part.db")["signals"] == _store_view(tmp_path / "ref2.db")["signals"]
    )
