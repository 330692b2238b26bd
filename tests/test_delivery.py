"""Delivery guarantees against real local HTTP receivers (and a real subprocess)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alerts.slack_channel import SlackChannel
from monitor.config import CommandActionConfig, SlackAlertConfig, WebhookActionConfig
from monitor.dispatcher import Dispatcher
from monitor.metrics import Metrics
from monitor.secrets import Secret
from monitor.store import DecisionRow, Store, deliveries, delivery_attempts, make_engine
from tests.helpers import Receiver, free_port
from triggers.base import Deliverer
from triggers.command import Command
from triggers.signing import verify
from triggers.webhook import Webhook

KEY = "k" * 24
DECISION = {
    "decision_id": "d1",
    "rule": "r",
    "model": "m",
    "model_version": "v1",
    "severity": "warning",
    "event_time": 0.0,
    "actions": ["retrain"],
    "alerts": [],
    "signals": [
        {
            "target": "score",
            "detector": "adwin",
            "statistic": "mean",
            "value": 0.5,
            "position": 10,
            "event_time": 0.0,
        }
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(
    tmp_path: Path, target: Deliverer, kind: str = "action"
) -> tuple[Store, Dispatcher, Clock, CollectorRegistry]:
    clock = Clock()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'd.db'}"), clock=clock)
    store.create_schema()
    store.write_batch(
        decs=[DecisionRow("d1", "r", "m", "v1", "warning", 0.0, DECISION, [(kind, target.name)])]
    )
    registry = CollectorRegistry()
    dispatcher = Dispatcher(
        store, {(kind, target.name): target}, Metrics(registry), clock=clock, seed=1
    )
    return store, dispatcher, clock, registry


def webhook(url: str, **over: Any) -> Webhook:
    cfg = WebhookActionConfig(
        name="retrain",
        url=url,
        signing_key=Secret("K", KEY),
        max_attempts=over.pop("max_attempts", 5),
        backoff_seconds=1.0,
        timeout_seconds=over.pop("timeout_seconds", 2.0),
    )
    return Webhook(cfg)


def run_until(
    dispatcher: Dispatcher, clock: Clock, store: Store, done: Callable[[], bool], rounds: int = 10
) -> None:
    for _ in range(rounds):
        dispatcher.run_once()
        if done():
            return
        clock.now += 400  # past any backoff
    raise AssertionError("delivery did not settle")


def delivery(store: Store) -> dict[str, Any]:
    return store.rows(deliveries)[0]


def test_500_then_200_is_delivered_once_with_same_key(tmp_path: Path, receiver: Receiver) -> None:
    receiver.responses.append((500, {}, b"boom", 0.0))
    store, disp, clock, reg = setup(tmp_path, webhook(f"{receiver.url}/hook"))
    run_until(disp, clock, store, lambda: delivery(store)["status"] != "pending")
    d = delivery(store)
    assert (d["status"], d["attempts"]) == ("delivered", 2)
    reqs = receiver.requests
    assert len(reqs) == 2
    assert {r.headers["Idempotency-Key"] for r in reqs} == {"d1"}
    for r in reqs:
        assert verify(
            KEY.encode(),
            r.headers["X-Driftd-Timestamp"],
            r.body,
            r.headers["X-Driftd-Signature"],
            now=float(r.headers["X-Driftd-Timestamp"]),
        )
    attempts = store.rows(delivery_attempts, order_by=delivery_attempts.c.attempt)
    assert [a["ok"] for a in attempts] == [False, True]
    assert "HTTP 500" in attempts[0]["detail"]
    assert (
        reg.get_sample_value("driftd_actions_total", {"action": "retrain", "status": "failed"}) == 1
    )
    assert (
        reg.get_sample_value("driftd_actions_total", {"action": "retrain", "status": "delivered"})
        == 1
    )


def test_receiver_down_then_up(tmp_path: Path, receiver_factory: Any) -> None:
    port = free_port()
    store, disp, clock, _ = setup(tmp_path, webhook(f"http://127.0.0.1:{port}/hook"))
    disp.run_once()
    d = delivery(store)
    assert (d["status"], d["attempts"]) == ("pending", 1)
    assert "refused" in d["last_error"].lower()
    assert d["next_attempt_at"] > clock.now  # backing off
    disp.run_once()
    assert delivery(store)["attempts"] == 1  # not due yet: no attempt
    rec, _stop = receiver_factory(port)
    clock.now += 400
    disp.run_once()
    assert delivery(store)["status"] == "delivered"
    disp.run_once()
    assert len(rec.requests) == 1


def test_slow_receiver_times_out_then_succeeds(tmp_path: Path, receiver: Receiver) -> None:
    receiver.responses.append((200, {}, b"late", 2.0))
    store, disp, clock, _ = setup(tmp_path, webhook(f"{receiver.url}/hook", timeout_seconds=0.3))
    t0 = time.monotonic()
    disp.run_once()
    assert time.monotonic() - t0 < 1.5
    d = delivery(store)
    assert d["status"] == "pending" and "timed out" in d["last_error"]
    run_until(disp, clock, store, lambda: delivery(store)["status"] == "delivered")
    assert len(receiver.wait_for(2)) == 2


def test_client_error_is_final_and_max_attempts_go_dead(tmp_path: Path, receiver: Receiver) -> None:
    receiver.responses.append((400, {}, b"bad request", 0.0))
    store, disp, _, reg = setup(tmp_path, webhook(f"{receiver.url}/hook"))
    disp.run_once()
    assert (delivery(store)["status"], delivery(store)["attempts"]) == ("dead", 1)
    assert (
        reg.get_sample_value("driftd_actions_total", {"action": "retrain", "status": "dead"}) == 1
    )

    receiver.responses.extend([(503, {}, b"", 0.0)] * 3)
    (tmp_path / "second").mkdir()
    store2, disp2, clock2, _ = setup(
        tmp_path / "second", webhook(f"{receiver.url}/hook", max_attempts=3)
    )
    run_until(disp2, clock2, store2, lambda: delivery(store2)["status"] != "pending")
    assert (delivery(store2)["status"], delivery(store2)["attempts"]) == ("dead", 3)


def test_retry_after_is_honoured(tmp_path: Path, receiver: Receiver) -> None:
    receiver.responses.append((429, {"Retry-After": "120"}, b"", 0.0))
    store, disp, clock, _ = setup(tmp_path, webhook(f"{receiver.url}/hook"))
    disp.run_once()
    assert delivery(store)["next_attempt_at"] >= clock.now + 120


def test_slack_429_retry_after_through_slack_sdk(tmp_path: Path, receiver: Receiver) -> None:
    receiver.responses.append((429, {"Retry-After": "1"}, b"rate limited", 0.0))
    channel = SlackChannel(
        SlackAlertConfig(name="slack", webhook_url=Secret("S", f"{receiver.url}/slack"))
    )
    store, disp, _, reg = setup(tmp_path, channel, kind="alert")
    t0 = time.monotonic()
    disp.run_once()
    assert time.monotonic() - t0 >= 0.9  # slack-sdk waited out Retry-After
    assert delivery(store)["status"] == "delivered"
    reqs = receiver.requests
    assert len(reqs) == 2
    assert json.loads(reqs[1].body)["text"].startswith("[WARNING] drift on m v1")
    assert (
        reg.get_sample_value("driftd_alerts_total", {"channel": "slack", "status": "delivered"})
        == 1
    )


def test_slack_chat_post_message(tmp_path: Path, receiver: Receiver) -> None:
    receiver.responses.append(
        (
            200,
            {"Content-Type": "application/json"},
            b'{"ok": true, "channel": "C1", "ts": "1700000000.1"}',
            0.0,
        )
    )
    channel = SlackChannel(
        SlackAlertConfig(
            name="slack",
            token=Secret("T", "xoxb-test"),
            channel="#ml",
            base_url=f"{receiver.url}/api/",
        )
    )
    store, disp, _, _ = setup(tmp_path, channel, kind="alert")
    disp.run_once()
    assert delivery(store)["status"] == "delivered"
    req = receiver.requests[0]
    assert req.path == "/api/chat.postMessage"
    assert req.headers["Authorization"] == "Bearer xoxb-test"
    assert json.loads(req.body)["channel"] == "#ml"


def test_command_runs_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "should-not-exist"
    script = tmp_path / "echo_args.py"
    script.write_text(
        "import json, os, sys\n"
        "d = json.load(sys.stdin)\n"
        "print(json.dumps({'argv': sys.argv[1:], 'model': d['model'], 'key': os.environ['DRIFTD_IDEMPOTENCY_KEY']}))\n"
    )
    hostile = f"; touch {marker}"
    cmd = Command(
        CommandActionConfig(name="retrain", argv=[sys.executable, str(script), hostile, "$(id)"])
    )
    store, disp, _, _ = setup(tmp_path, cmd)
    disp.run_once()
    d = delivery(store)
    assert d["status"] == "delivered"
    printed = json.loads(d["result"]["stdout"])
    assert printed == {"argv": [hostile, "$(id)"], "model": "m", "key": "d1"}
    assert not marker.exists()


def test_command_timeout_and_failure(tmp_path: Path) -> None:
    slow = Command(
        CommandActionConfig(
            name="retrain",
            argv=[sys.executable, "-c", "import time; time.sleep(5)"],
            timeout_seconds=0.3,
            max_attempts=1,
        )
    )
    store, disp, _, _ = setup(tmp_path, slow)
    disp.run_once()
    d = delivery(store)
    assert d["status"] == "dead" and "timed out" in d["last_error"]
    missing = Command(CommandActionConfig(name="retrain", argv=[str(tmp_path / "no-such-program")]))
    with pytest.raises(Exception, match="No such file"):
        missing.deliver(DECISION, "d1", 1)


def test_resolved_decision_follows_up_in_the_slack_thread(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.responses.append(
        (
            200,
            {"Content-Type": "application/json"},
            b'{"ok": true, "channel": "C42", "ts": "1700000000.5"}',
            0.0,
        )
    )
    channel = SlackChannel(
        SlackAlertConfig(
            name="slack",
            token=Secret("T", "xoxb-test"),
            channel="#ml",
            base_url=f"{receiver.url}/api/",
        )
    )
    store, disp, _, _ = setup(tmp_path, channel, kind="alert")
    disp.run_once()
    resolved = {**DECISION, "decision_id": "d1r", "outcome": "resolved", "resolves": "d1"}
    store.write_batch(
        decs=[
            DecisionRow(
                "d1r",
                "r",
                "m",
                "v1",
                "warning",
                9.0,
                resolved,
                [("alert", "slack")],
                0.0,
                "resolved",
                "d1",
            )
        ]
    )
    disp.run_once()
    first, follow_up = (json.loads(r.body) for r in receiver.wait_for(2))
    assert "thread_ts" not in first
    assert follow_up["thread_ts"] == "1700000000.5" and follow_up["channel"] == "C42"
    assert follow_up["text"].startswith("[RESOLVED] drift on m v1")
