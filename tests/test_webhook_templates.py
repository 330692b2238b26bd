"""Webhook body templates, secret headers, PUT, and the webhook alert channel,
against real local HTTP receivers."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alerts.message import summary
from alerts.registry import make_channel
from alerts.webhook_channel import WebhookChannel
from monitor.config import (
    ConfigError,
    WebhookActionConfig,
    WebhookAlertConfig,
    load_config,
    parse_config,
)
from monitor.daemon import Daemon
from monitor.dispatcher import Dispatcher
from monitor.metrics import Metrics
from monitor.secrets import Secret
from monitor.store import DecisionRow, Store, decisions, deliveries, delivery_attempts, make_engine
from tests.helpers import ROOT, Received, Receiver, demo_config_text
from triggers.base import Deliverer
from triggers.registry import make_action
from triggers.signing import verify
from triggers.webhook import (
    ACTION_PLACEHOLDERS,
    SAMPLE_DECISION,
    BodyTemplate,
    TemplateError,
    Webhook,
    template_values,
)

KEY = "template-test-key-0123456789"
TOKEN = "Bearer ghp_not-a-real-token-0123456789"
ENV = {"DRIFTD_TEST_KEY": KEY, "DRIFTD_TEST_TOKEN": TOKEN}

DECISION: dict[str, Any] = {
    "decision_id": "d1",
    "idempotency_key": "d1",
    "outcome": "fired",
    "resolves": None,
    "rule": "retrain-on-drift",
    "model": "credit-risk",
    "model_version": "v1",
    "severity": "warning",
    "event_time": 1767249600.0,
    "signals": [
        {
            "target": "score",
            "detector": "adwin",
            "statistic": "mean",
            "value": 0.61,
            "position": 12000,
            "event_time": 1767249600.0,
        }
    ],
    "actions": ["retrain"],
    "alerts": ["hook"],
}

ALL_PLACEHOLDERS = (
    '{"model": {{model}}, "model_version": {{model_version}}, "rule": {{rule}}, '
    '"decision_id": {{decision_id}}, "severity": {{severity}}, "event_time": {{event_time}}, '
    '"signals": {{signals_json}}, "decision": {{decision_json}}}'
)


def action_config(url: str, **over: Any) -> WebhookActionConfig:
    return WebhookActionConfig(
        name="retrain",
        url=url,
        signing_key=Secret("DRIFTD_TEST_KEY", KEY),
        backoff_seconds=1.0,
        timeout_seconds=2.0,
        **over,
    )


def signed_ok(r: Received) -> bool:
    ts = r.headers["X-Driftd-Timestamp"]
    return verify(KEY.encode(), ts, r.body, r.headers["X-Driftd-Signature"], now=float(ts))


# --- rendering ---------------------------------------------------------------


def test_every_placeholder_renders_as_json() -> None:
    body = BodyTemplate(ALL_PLACEHOLDERS).render(template_values(DECISION))
    assert json.loads(body) == {
        "model": "credit-risk",
        "model_version": "v1",
        "rule": "retrain-on-drift",
        "decision_id": "d1",
        "severity": "warning",
        "event_time": 1767249600.0,
        "signals": DECISION["signals"],
        "decision": DECISION,
    }
    assert set(ACTION_PLACEHOLDERS) == set(BodyTemplate(ALL_PLACEHOLDERS).placeholders)


def test_placeholders_inside_strings_are_escaped_text() -> None:
    template = BodyTemplate(
        '{"title": "drift on {{model}} {{ model_version }} at {{event_time}}", '
        '"conf": "{{decision_json}}", "signals": "{{signals_json}}"}'
    )
    out = json.loads(template.render(template_values(DECISION)))
    assert out["title"] == "drift on credit-risk v1 at 1767249600.0"
    assert json.loads(out["conf"]) == DECISION  # a JSON string, for string-only parameters
    assert json.loads(out["signals"]) == DECISION["signals"]


@pytest.mark.parametrize(
    "hostile",
    [
        'a "quoted" model',
        "line one\nline two\r\n\ttabbed",
        "ends with a backslash \\",
        '"}, "injected": true, "x": {"',
        "{{rule}} is not expanded twice",
        "unicode: é ü \u2028 \u0000",
    ],
)
def test_hostile_values_stay_valid_json(hostile: str) -> None:
    decision = {**DECISION, "model": hostile, "rule": hostile, "model_version": hostile}
    template = BodyTemplate('{"bare": {{model}}, "inside": "<{{rule}}>", "d": {{decision_json}}}')
    out = json.loads(template.render(template_values(decision)))
    assert out == {"bare": hostile, "inside": f"<{hostile}>", "d": decision}


def test_non_finite_numbers_render_as_null() -> None:
    decision = {**DECISION, "event_time": float("inf")}
    decision["signals"] = [{**DECISION["signals"][0], "value": float("nan")}]
    out = json.loads(
        BodyTemplate('{"t": {{event_time}}, "s": {{signals_json}}, "in": "{{event_time}}"}').render(
            template_values(decision)
        )
    )
    assert out["t"] is None and out["s"][0]["value"] is None and out["in"] == "null"


def test_no_template_sends_the_decision_json_unchanged() -> None:
    hook = Webhook(action_config("http://127.0.0.1:9/hook"))
    assert (
        hook.body(DECISION) == json.dumps(DECISION, sort_keys=True, separators=(",", ":")).encode()
    )


# --- config errors -------------------------------------------------------------


def _parse(section: str, item: dict[str, Any]) -> Any:
    return parse_config({section: [item]}, ENV)


BASE = {"type": "webhook", "name": "hook", "url": "http://127.0.0.1:9/h"}


def test_unknown_placeholders_are_a_config_error_naming_them() -> None:
    with pytest.raises(ConfigError) as err:
        _parse(
            "actions",
            {
                **BASE,
                "signing_key": "${DRIFTD_TEST_KEY}",
                "body_template": '{"m": {{modle}}, "x": "{{run_id}}", "ok": {{model}}}',
            },
        )
    message = str(err.value)
    assert message.startswith("actions[0]: body_template: unknown placeholders")
    assert "{{modle}}" in message and "{{run_id}}" in message
    assert "{{model}}," in message.partition("valid:")[2]  # and lists the valid ones
    # {{text}} is an alert placeholder, not an action one.
    with pytest.raises(ConfigError, match=r"unknown placeholder \{\{text\}\}"):
        _parse(
            "actions",
            {**BASE, "signing_key": "${DRIFTD_TEST_KEY}", "body_template": '{"t": {{text}}}'},
        )
    with pytest.raises(ConfigError, match=r"alerts\[0\]: body_template: unknown placeholder"):
        _parse(
            "alerts",
            {**BASE, "signing_key": "${DRIFTD_TEST_KEY}", "body_template": '{"t": {{txt}}}'},
        )


@pytest.mark.parametrize(
    "template",
    [
        '{"conf": {{decision_json}}',  # unbalanced
        '{"model": {{model}} {{rule}}}',  # two values in a row
        "model={{model}}",  # not JSON at all
        '{"quoted": "{{model}}}',  # unterminated string
        "",
    ],
)
def test_template_that_does_not_render_to_json_is_a_config_error(template: str) -> None:
    with pytest.raises(ConfigError, match=r"^actions\[0\]: body_template: does not render to JSON"):
        _parse("actions", {**BASE, "signing_key": "${DRIFTD_TEST_KEY}", "body_template": template})


def test_secret_header_config_errors() -> None:
    with pytest.raises(ConfigError, match="secrets must come from the environment"):
        _parse(
            "actions",
            {
                **BASE,
                "signing_key": "${DRIFTD_TEST_KEY}",
                "secret_headers": {"Authorization": TOKEN},
            },
        )
    with pytest.raises(ConfigError, match="DRIFTD_UNSET_TOKEN is not set"):
        _parse(
            "actions",
            {
                **BASE,
                "signing_key": "${DRIFTD_TEST_KEY}",
                "secret_headers": {"Authorization": "${DRIFTD_UNSET_TOKEN}"},
            },
        )
    with pytest.raises(ConfigError, match=r"secret_headers.authorization: also set in headers"):
        _parse(
            "actions",
            {
                **BASE,
                "signing_key": "${DRIFTD_TEST_KEY}",
                "headers": {"Authorization": "x"},
                "secret_headers": {"authorization": "${DRIFTD_TEST_TOKEN}"},
            },
        )
    with pytest.raises(ConfigError, match="driftd sets this header itself"):
        _parse(
            "alerts",
            {
                **BASE,
                "signing_key": "${DRIFTD_TEST_KEY}",
                "secret_headers": {"Idempotency-Key": "${DRIFTD_TEST_TOKEN}"},
            },
        )
    # A token with a line break would smuggle in a header: refused, value unshown.
    with pytest.raises(ConfigError, match=r"secret_headers.Authorization: the value of \$\{T\}"):
        parse_config(
            {
                "actions": [
                    {
                        **BASE,
                        "signing_key": "${DRIFTD_TEST_KEY}",
                        "secret_headers": {"Authorization": "${T}"},
                    }
                ]
            },
            {**ENV, "T": "Bearer x\r\nX-Evil: 1"},
        )
    with pytest.raises(ConfigError, match=r"headers.X Y: not a valid HTTP header name"):
        _parse("actions", {**BASE, "signing_key": "${DRIFTD_TEST_KEY}", "headers": {"X Y": "1"}})
    with pytest.raises(ConfigError, match=r"actions\[0\].method: Invalid enum value 'GET'"):
        _parse("actions", {**BASE, "signing_key": "${DRIFTD_TEST_KEY}", "method": "GET"})


def test_template_error_without_config() -> None:
    with pytest.raises(TemplateError):
        BodyTemplate("{{decision_json")


# --- on the wire -----------------------------------------------------------------


def test_signature_verifies_over_the_rendered_body(receiver: Receiver) -> None:
    template = '{"event_type": "driftd-retrain", "client_payload": {"model": {{model}}, "decision": {{decision_json}}}}'
    hook = Webhook(
        action_config(
            f"{receiver.url}/dispatch",
            body_template=template,
            content_type="application/vnd.github+json",
            headers={"Accept": "application/vnd.github+json"},
            secret_headers={"Authorization": Secret("DRIFTD_TEST_TOKEN", TOKEN)},
        )
    )
    result = hook.deliver(DECISION, "d1", 1)
    assert result.detail == "HTTP 200"
    (req,) = receiver.requests
    assert req.path == "/dispatch"
    assert req.body == hook.body(DECISION)
    assert json.loads(req.body) == {
        "event_type": "driftd-retrain",
        "client_payload": {"model": "credit-risk", "decision": DECISION},
    }
    assert signed_ok(req)
    assert not verify(
        KEY.encode(),
        req.headers["X-Driftd-Timestamp"],
        json.dumps(DECISION, sort_keys=True, separators=(",", ":")).encode(),
        req.headers["X-Driftd-Signature"],
        now=float(req.headers["X-Driftd-Timestamp"]),
    )  # the signature is over what was sent, not over the decision JSON
    assert req.headers["Idempotency-Key"] == "d1"
    assert req.headers["Content-Type"] == "application/vnd.github+json"
    assert req.headers["Accept"] == "application/vnd.github+json"
    assert req.headers["Authorization"] == TOKEN


class _PutRecorder:
    """A local server that records PUT requests (the shared Receiver takes POSTs)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Received]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.requests.append(
                    (self.command, Received(self.path, dict(self.headers.items()), body))
                )
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def put_recorder() -> Iterator[_PutRecorder]:
    rec = _PutRecorder()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


def test_put_method(put_recorder: _PutRecorder) -> None:
    hook = Webhook(
        action_config(f"{put_recorder.url}/runs/r1", method="PUT", body_template='{"m": {{model}}}')
    )
    assert hook.deliver(DECISION, "d1", 1).detail == "HTTP 201"
    ((method, req),) = put_recorder.requests
    assert (method, req.path) == ("PUT", "/runs/r1")
    assert json.loads(req.body) == {"m": "credit-risk"} and signed_ok(req)


def _setup(
    tmp_path: Path, target: Deliverer, kind: str
) -> tuple[Store, Dispatcher, list[float], CollectorRegistry]:
    now = [1000.0]
    store = Store(make_engine(f"sqlite:///{tmp_path / 'd.db'}"), clock=lambda: now[0])
    store.create_schema()
    store.write_batch(
        decs=[
            DecisionRow(
                "d1", "r", "credit-risk", "v1", "warning", 0.0, DECISION, [(kind, target.name)]
            )
        ]
    )
    registry = CollectorRegistry()
    dispatcher = Dispatcher(
        store, {(kind, target.name): target}, Metrics(registry), clock=lambda: now[0], seed=1
    )
    return store, dispatcher, now, registry


def _settle(store: Store, dispatcher: Dispatcher, now: list[float]) -> dict[str, Any]:
    for _ in range(10):
        dispatcher.run_once()
        row = store.rows(deliveries)[0]
        if row["status"] != "pending":
            return row
        now[0] += 400  # past any backoff
    raise AssertionError("delivery did not settle")


def test_secret_headers_are_sent_and_never_logged(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.responses.append((503, {}, b"busy", 0.0))
    hook = Webhook(
        action_config(
            f"{receiver.url}/hook",
            secret_headers={"Authorization": Secret("DRIFTD_TEST_TOKEN", TOKEN)},
        )
    )
    store, dispatcher, now, _ = _setup(tmp_path, hook, "action")
    with caplog.at_level(logging.DEBUG):
        row = _settle(store, dispatcher, now)
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    assert [r.headers["Authorization"] for r in receiver.requests] == [TOKEN, TOKEN]
    assert "503" in caplog.text and TOKEN not in caplog.text
    stored = json.dumps([store.rows(deliveries), store.rows(delivery_attempts)], default=str)
    assert TOKEN not in stored


def test_secret_headers_masked_in_check_config(tmp_path: Path) -> None:
    actions = (
        '[[actions]]\ntype = "webhook"\nname = "retrain"\n'
        'url = "http://127.0.0.1:9/dispatch"\nsigning_key = "${DRIFTD_TEST_KEY}"\n'
        'method = "PUT"\n'
        'secret_headers = { Authorization = "${DRIFTD_TEST_TOKEN}" }\n'
        "body_template = '''{\"conf\": {\"model\": {{model}}, \"decision\": {{decision_json}}}}'''\n"
    )
    alert = (
        '[[alerts]]\ntype = "webhook"\nname = "hook"\nurl = "http://127.0.0.1:9/alert"\n'
        'signing_key = "${DRIFTD_TEST_KEY}"\n'
        'secret_headers = { "X-Api-Key" = "${DRIFTD_TEST_TOKEN}" }\n'
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        demo_config_text(
            tmp_path / "c.db", actions=actions, extra=alert, rule_alerts='["log", "hook"]'
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(cfg)],
        cwd=ROOT,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert TOKEN not in out.stdout and TOKEN not in out.stderr
    assert KEY not in out.stdout
    printed = json.loads(out.stdout)
    (action,) = printed["actions"]
    assert action["secret_headers"] == {"Authorization": "${DRIFTD_TEST_TOKEN} (set, masked)"}
    assert action["method"] == "PUT" and action["content_type"] == "application/json"
    hook = next(a for a in printed["alerts"] if a["name"] == "hook")
    assert hook["type"] == "webhook"
    assert hook["secret_headers"] == {"X-Api-Key": "${DRIFTD_TEST_TOKEN} (set, masked)"}
    # and the repr of the loaded tree masks them too
    loaded = load_config(cfg, {**os.environ, **ENV})
    assert TOKEN not in repr(loaded) and TOKEN not in str(loaded.actions)


# --- the webhook alert channel ------------------------------------------------------


def alert_config(url: str, **over: Any) -> WebhookAlertConfig:
    return WebhookAlertConfig(
        name="hook",
        url=url,
        signing_key=Secret("DRIFTD_TEST_KEY", KEY),
        backoff_seconds=1.0,
        timeout_seconds=2.0,
        **over,
    )


def test_alert_channel_500_then_200_delivers_text_and_decision(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.responses.append((500, {}, b"boom", 0.0))
    channel = make_channel(alert_config(f"{receiver.url}/alert"))
    assert isinstance(channel, WebhookChannel)
    store, dispatcher, now, reg = _setup(tmp_path, channel, "alert")
    row = _settle(store, dispatcher, now)
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    reqs = receiver.requests
    assert len(reqs) == 2
    assert reqs[0].body == reqs[1].body
    for r in reqs:
        assert r.path == "/alert"
        assert r.headers["Idempotency-Key"] == "d1"
        assert signed_ok(r)
        assert json.loads(r.body) == {"text": summary(DECISION), "decision": DECISION}
    assert [r.headers["X-Driftd-Attempt"] for r in reqs] == ["1", "2"]
    attempts = store.rows(delivery_attempts, order_by=delivery_attempts.c.attempt)
    assert [a["ok"] for a in attempts] == [False, True]
    assert "HTTP 500" in attempts[0]["detail"]
    assert reg.get_sample_value("driftd_alerts_total", {"channel": "hook", "status": "failed"}) == 1
    assert (
        reg.get_sample_value("driftd_alerts_total", {"channel": "hook", "status": "delivered"}) == 1
    )


def test_alert_channel_template_with_text(receiver: Receiver) -> None:
    channel = WebhookChannel(
        alert_config(
            f"{receiver.url}/chat",
            body_template='{"content": {{text}}, "id": "driftd-{{decision_id}}"}',
        )
    )
    channel.deliver(DECISION, "d1", 1)
    (req,) = receiver.requests
    assert json.loads(req.body) == {"content": summary(DECISION), "id": "driftd-d1"}
    assert signed_ok(req)


def test_resolved_decision_alert(receiver: Receiver) -> None:
    resolved = {**DECISION, "outcome": "resolved", "resolves": "d0", "signals": []}
    WebhookChannel(alert_config(receiver.url)).deliver(resolved, "d1", 1)
    body = json.loads(receiver.requests[0].body)
    assert body["text"].startswith("[RESOLVED] drift on credit-risk v1")
    assert body["decision"] == resolved


# --- the presets document ------------------------------------------------------------


def _preset_blocks() -> list[tuple[str, dict[str, Any]]]:
    text = (ROOT / "deploy" / "webhook-presets.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    return [(b.splitlines()[0], tomllib.loads(b)) for b in blocks]


def test_presets_load_and_render_to_json() -> None:
    blocks = _preset_blocks()
    assert len(blocks) >= 6
    env = dict.fromkeys(
        re.findall(r"\$\{([A-Z0-9_]+)\}", (ROOT / "deploy" / "webhook-presets.md").read_text()),
        "set-in-test",
    )
    seen_actions: list[str] = []
    for first_line, raw in blocks:
        cfg = parse_config(raw, env)
        for action in cfg.actions:
            assert isinstance(action, WebhookActionConfig), first_line
            seen_actions.append(action.name)
            hook = make_action(action)
            assert isinstance(hook, Webhook)
            json.loads(hook.body(SAMPLE_DECISION))
            for header in action.secret_headers:
                assert header not in action.headers
        for alert in cfg.alerts:
            channel = make_channel(alert)
            assert isinstance(channel, WebhookChannel)
            json.loads(channel.body(SAMPLE_DECISION))
    assert {"retrain-airflow", "retrain-github"} <= set(seen_actions)


# --- through the daemon ----------------------------------------------------------------


def test_daemon_sends_templated_action_and_webhook_alert(
    tmp_path: Path, receiver: Receiver
) -> None:
    actions = (
        '[[actions]]\ntype = "webhook"\nname = "retrain"\n'
        f'url = "{receiver.url}/api/v1/dags/retrain/dagRuns"\nsigning_key = "${{DRIFTD_TEST_KEY}}"\n'
        'secret_headers = { Authorization = "${DRIFTD_TEST_TOKEN}" }\n'
        "body_template = '''\n"
        '{"conf": {"model": {{model}}, "model_version": {{model_version}},\n'
        '          "decision_id": {{decision_id}}, "signals": {{signals_json}}}}\n'
        "'''\n"
    )
    alert = (
        '[[alerts]]\ntype = "webhook"\nname = "hook"\n'
        f'url = "{receiver.url}/alert"\nsigning_key = "${{DRIFTD_TEST_KEY}}"\n'
    )
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(
        demo_config_text(
            tmp_path / "c.db", actions=actions, extra=alert, rule_alerts='["log", "hook"]'
        )
    )
    daemon = Daemon(load_config(cfg_path, {**os.environ, **ENV}), registry=CollectorRegistry())
    daemon.run(serve_http=False)

    store = Store(make_engine(f"sqlite:///{tmp_path / 'c.db'}"))
    (fired,) = [d for d in store.rows(decisions) if d["outcome"] == "fired"]
    key = fired["idempotency_key"]
    by_path = {r.path: r for r in receiver.requests}
    run = by_path["/api/v1/dags/retrain/dagRuns"]
    assert signed_ok(run) and run.headers["Idempotency-Key"] == key
    assert run.headers["Authorization"] == TOKEN
    conf = json.loads(run.body)["conf"]
    assert conf["model"] == "credit-risk" and conf["decision_id"] == key
    assert conf["signals"] == fired["payload"]["signals"]
    sent_alert = by_path["/alert"]
    assert signed_ok(sent_alert) and sent_alert.headers["Idempotency-Key"] == key
    body = json.loads(sent_alert.body)
    assert body["decision"]["decision_id"] == key
    assert body["text"] == summary(fired["payload"])
    assert {(d["target"], d["status"]) for d in store.rows(deliveries)} == {
        ("retrain", "delivered"),
        ("hook", "delivered"),
        ("log", "delivered"),
    }
