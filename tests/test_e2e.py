"""End to end: the bundled replay through the real CLI, a real webhook receiver,
a Slack stand-in reached through slack-sdk, and a scrape of /metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from monitor.store import Store, decisions, deliveries, signals
from tests.helpers import DRIFT_AT, DRIFT_TIME, Receiver, demo_config_text, free_port
from triggers.signing import verify

SIGNING_KEY = "test-signing-key-0123456789"
# The bundled replay drifts at prediction 12000; every detector in config.toml
# must fire within this many predictions after it, and none before.
MAX_DELAY_EVENTS = 600


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        assert proc.poll() is None, f"driftd exited early: {path.read_text()}"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} did not appear in {timeout}s")


def test_replay_end_to_end(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "driftd.db"
    port = free_port()
    actions = (
        '[[actions]]\ntype = "webhook"\nname = "retrain"\n'
        f'url = "{receiver.url}/retrain"\nsigning_key = "${{DRIFTD_TEST_SIGNING_KEY}}"\n'
        "max_attempts = 3\nbackoff_seconds = 0.1\n"
    )
    slack = '[[alerts]]\ntype = "slack"\nname = "slack"\nwebhook_url = "${DRIFTD_TEST_SLACK}"\n'
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        demo_config_text(
            db, http_port=port, actions=actions, rule_alerts='["log", "slack"]', extra=slack
        )
    )
    env = {
        **os.environ,
        "DRIFTD_TEST_SIGNING_KEY": SIGNING_KEY,
        "DRIFTD_TEST_SLACK": f"{receiver.url}/slack",
    }
    out = tmp_path / "out.txt"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--config", str(cfg), "--keep-serving"],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(out, "driftd summary", proc, timeout=120)
        log = out.read_text()
        assert SIGNING_KEY not in log

        # The store: drift found after the true drift point, never before.
        store = Store(create_engine(f"sqlite:///{db}"))
        sig = store.rows(signals, order_by=signals.c.position)
        assert sig, "no drift detected"
        assert all(s["event_time"] >= DRIFT_TIME for s in sig), [
            (s["target"], s["position"]) for s in sig
        ]
        assert DRIFT_AT < sig[0]["position"] <= DRIFT_AT + MAX_DELAY_EVENTS
        targets = {s["target"] for s in sig}
        assert {
            "feature:utilization",
            "feature:debt_ratio",
            "feature:region",
            "score",
            "error",
        } <= targets
        decs = store.rows(decisions)
        fired = [d for d in decs if d["outcome"] == "fired"]
        assert len(fired) == 1
        key = fired[0]["idempotency_key"]
        # The end-of-replay batch check confirms the drift; the rule (the
        # shard's, which fired) is cooling down: no second decision.
        assert [d["outcome"] for d in decs] == ["fired"]
        batch = {s["target"] for s in sig if s["detector"].startswith("drift:")}
        assert {"feature:utilization", "feature:debt_ratio", "score"} <= batch

        # The webhook receiver: exactly one correctly signed request.
        got = [r for r in receiver.wait_for(2) if r.path == "/retrain"]
        assert len(got) == 1
        req = got[0]
        assert verify(
            SIGNING_KEY.encode(),
            req.headers["X-Driftd-Timestamp"],
            req.body,
            req.headers["X-Driftd-Signature"],
        )
        assert req.headers["Idempotency-Key"] == key
        body = json.loads(req.body)
        assert body["model"] == "credit-risk" and body["model_version"] == "v1"
        assert body["decision_id"] == key and len(body["signals"]) == 3

        # Slack, through slack-sdk's WebhookClient: one readable message.
        slack_reqs = [r for r in receiver.requests if r.path == "/slack"]
        assert len(slack_reqs) == 1
        msg = json.loads(slack_reqs[0].body)
        assert "drift on credit-risk v1" in msg["text"]
        assert "action: retrain" in msg["text"]
        assert msg["blocks"][0]["type"] == "header"
        dl = store.rows(deliveries)
        assert {(d["kind"], d["target"], d["status"], d["attempts"]) for d in dl} == {
            ("action", "retrain", "delivered", 1),
            ("alert", "log", "delivered", 1),
            ("alert", "slack", "delivered", 1),
        }

        # /metrics matches the data.
        m = _metrics(port)
        assert (
            m[("driftd_events_total", (("model", "credit-risk"), ("stream", "predictions")))]
            == 20000
        )
        assert (
            m[("driftd_events_total", (("model", "credit-risk"), ("stream", "outcomes")))] == 18003
        )
        assert not [k for k in m if k[0] == "driftd_events_invalid_total"]
        sig_total = sum(v for k, v in m.items() if k[0] == "driftd_drift_signals_total")
        assert sig_total == len(sig)
        assert m[("driftd_actions_total", (("action", "retrain"), ("status", "delivered")))] == 1
        assert m[("driftd_alerts_total", (("channel", "slack"), ("status", "delivered")))] == 1
        assert m[("driftd_join_total", (("result", "matched"),))] == 18003
        assert (
            m[
                (
                    "driftd_decisions_total",
                    (("model", "credit-risk"), ("outcome", "fired"), ("rule", "retrain-on-drift")),
                )
            ]
            == 1
        )
        for probe in ("healthz", "readyz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{probe}", timeout=5) as r:
                assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
