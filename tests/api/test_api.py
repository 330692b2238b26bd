"""The JSON API through a real HttpServer on 127.0.0.1, on a temp SQLite store."""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitor.api import Api
from monitor.config import parse_config
from monitor.http import HttpServer
from monitor.store import DecisionRow, SignalRow, Store, decisions, deliveries, make_engine

TOKEN = "t0ken-for-tests-only"
ENV = {"DRIFTD_TEST_API_TOKEN": TOKEN}
RAW: dict[str, Any] = {
    "http": {"bind": "127.0.0.1:0", "api_token": "${DRIFTD_TEST_API_TOKEN}"},
    "models": [
        {"name": "credit", "task": "classification", "features": {"income": "numeric"}},
        {"name": "fraud", "task": "regression", "features": {"amount": "numeric"}},
    ],
    "rules": [
        {"name": "drift", "model": "credit", "actions": ["retrain"], "alerts": ["log"]},
        {"name": "any", "model": "*", "actions": ["notify", "retrain"]},
    ],
    "actions": [
        {"type": "command", "name": n, "argv": ["true"]} for n in ("retrain", "notify", "other")
    ],
    "alerts": [{"type": "log", "name": "log"}],
}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Client:
    def __init__(self, server: HttpServer, store: Store) -> None:
        self.base = f"http://127.0.0.1:{server.port}"
        self.port = server.port
        self.store = store

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        data = (
            None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        )
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, hdrs, raw = r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, raw = e.code, dict(e.headers.items()), e.read()
        is_json = hdrs.get("Content-Type", "").startswith("application/json")
        return status, hdrs, json.loads(raw) if is_json else raw

    def ok(self, method: str, path: str, body: Any = None, status: int = 200, **hdrs: str) -> Any:
        code, _, out = self.call(method, path, body, {**AUTH, **hdrs})
        assert code == status, out
        return out


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Client]]:
    servers: list[HttpServer] = []
    engine = make_engine(f"sqlite:///{tmp_path / 'driftd.db'}")
    store = Store(engine)
    store.create_schema()

    def make(token: bool = True) -> Client:
        raw = dict(RAW, http={"bind": "127.0.0.1:0"}) if not token else RAW
        config = parse_config(raw, environ=ENV)
        probe = lambda: (True, "ok")  # noqa: E731
        server = HttpServer(
            "127.0.0.1", 0, CollectorRegistry(), probe, probe, api=Api(store, config)
        )
        server.start()
        servers.append(server)
        return Client(server, store)

    yield make
    for s in servers:
        s.stop()
    engine.dispose()


@pytest.fixture
def client(start: Callable[..., Client]) -> Client:
    return start()


SILENCE = {"model": "credit", "duration_seconds": 600, "comment": "deploy", "created_by": "ana"}


def test_writes_need_the_right_bearer_token(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, hdrs, out = client.call("POST", "/api/v1/silences", SILENCE)
    assert status == 401 and hdrs["WWW-Authenticate"].startswith("Bearer")
    for wrong in ("Bearer nope", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
        status, hdrs, out = client.call(
            "DELETE", "/api/v1/silences/1", None, {"Authorization": wrong}
        )
        assert status == 401 and "WWW-Authenticate" in hdrs, out
        assert TOKEN not in json.dumps(out)
    assert client.ok("POST", "/api/v1/silences", SILENCE, 201)["id"] >= 1
    assert TOKEN not in caplog.text
    assert client.call("GET", "/api/v1/silences")[0] == 200  # reads are open


def test_writes_are_forbidden_until_a_token_is_configured(start: Callable[..., Client]) -> None:
    client = start(token=False)
    status, _, out = client.call("POST", "/api/v1/silences", SILENCE, AUTH)
    assert status == 403 and "http.api_token" in out["error"]
    assert client.call("GET", "/api/v1/status")[0] == 200


def test_silence_create_list_expire(client: Client) -> None:
    sid = client.ok("POST", "/api/v1/silences", SILENCE, 201)["id"]
    later = time.time() + 3600
    window = {"model": "*", "rule": "drift", "starts_at": later, "ends_at": later + 60}
    sid2 = client.ok(
        "POST", "/api/v1/silences", {**window, "comment": "mw", "created_by": "bo"}, 201
    )["id"]
    listed = {s["id"]: s for s in client.ok("GET", "/api/v1/silences")["silences"]}
    assert listed[sid]["state"] == "active" and listed[sid2]["state"] == "scheduled"
    assert listed[sid]["created_by"] == "ana" and listed[sid2]["rule"] == "drift"
    credit = client.ok("GET", "/api/v1/status")["models"][0]
    assert [s["id"] for s in credit["silences"]] == [sid]
    assert client.ok("DELETE", f"/api/v1/silences/{sid}") == {"id": sid, "expired": True}
    assert client.call("DELETE", f"/api/v1/silences/{sid}", None, AUTH)[0] == 404
    assert client.call("DELETE", "/api/v1/silences/abc", None, AUTH)[0] == 404
    listed = {s["id"]: s for s in client.ok("GET", "/api/v1/silences")["silences"]}
    assert listed[sid]["state"] == "expired" and listed[sid]["expired_at"] is not None


def test_decision_listed_acknowledged_and_in_status(client: Client) -> None:
    store, t = client.store, 1767225600.0
    sig = SignalRow("s1", "credit", "v3", "score", "adwin", "mean", 0.4, {}, 1200, t)
    dec = DecisionRow("k1", "drift", "credit", "v3", "warning", t, {"decision_id": "k1"},
                      [("action", "retrain"), ("alert", "log")], 3600.0)  # fmt: skip
    assert store.write_batch(sigs=[sig], decs=[dec]).decisions == ["k1"]
    (delivery,) = store.rows(deliveries, deliveries.c.target == "retrain")
    store.record_attempt(delivery["id"], 1, False, "exit 1", t, 0.1, "pending", t + 5)

    (listed,) = client.ok("GET", "/api/v1/decisions?model=credit&limit=5")["decisions"]
    assert listed["decision_id"] == "k1" and listed["outcome"] == "fired"
    assert {(d["kind"], d["target"]) for d in listed["deliveries"]} == {
        ("action", "retrain"),
        ("alert", "log"),
    }
    assert listed["acknowledgement"] is None
    assert client.ok("GET", "/api/v1/decisions?model=fraud")["decisions"] == []

    ack = client.ok("POST", "/api/v1/decisions/k1/ack", {"by": "ana", "comment": "looking"})
    assert ack["decision_id"] == "k1" and ack["by"] == "ana"
    (listed,) = client.ok("GET", "/api/v1/decisions")["decisions"]
    assert listed["acknowledgement"]["comment"] == "looking"
    assert client.call("POST", "/api/v1/decisions/nope/ack", {"by": "ana"}, AUTH)[0] == 404

    sent = client.ok("GET", "/api/v1/actions?status=pending&kind=action")["deliveries"]
    assert [(d["target"], d["decision_id"]) for d in sent] == [("retrain", "k1")]
    assert sent[0]["history"][0]["detail"] == "exit 1" and sent[0]["history"][0]["ok"] is False

    credit, fraud = client.ok("GET", "/api/v1/status")["models"]
    assert credit["signals"]["total"] == 1
    last = credit["signals"]["last"]
    assert (last["target"], last["detector"], last["position"], last["event_time"]) == (
        "score",
        "adwin",
        1200,
        t,
    )
    assert credit["decisions"]["fired"] == 1 and credit["decisions"]["last"]["decision_id"] == "k1"
    assert credit["deliveries"] == {"pending": 2, "dead": 0}
    assert fraud["signals"] == {"total": 0, "last": None} and fraud["decisions"]["fired"] == 0
    assert credit["last_check"] is None and credit["versions"] == []

    check = {"model": "credit", "window_start": t, "window_end": t + 60, "n_rows": 900,
             "n_labeled": 300, "drifted_share": 0.25, "failed": True,
             "summary": {"failed": ["drift:ks:income"]}, "report": None}  # fmt: skip
    store.save_check({**check, "segment": ""}, [])
    store.save_check({**check, "segment": "channel=web", "n_rows": 10}, [])
    store.report_version("credit", "v3", "candidate")
    store.report_version("credit", "v4", "candidate")
    store.report_version("credit", "v2", "candidate")
    store.update_version("credit", "v2", status="rolled_back")
    credit = client.ok("GET", "/api/v1/status")["models"][0]
    last_check = credit["last_check"]
    assert (last_check["n_rows"], last_check["failed"], last_check["drifted_share"]) == (
        900,
        True,
        0.25,
    )
    assert last_check["summary"] == {"failed": ["drift:ks:income"]}
    assert [(v["version"], v["status"], v["previous_version"]) for v in credit["versions"]] == [
        ("v3", "active", None),
        ("v4", "candidate", "v3"),
    ]


def test_manual_retrain_fires_once_per_idempotency_key(client: Client) -> None:
    sid = client.ok("POST", "/api/v1/silences", {**SILENCE, "model": "*"}, 201)["id"]
    body = {"model": "credit", "reason": "new labels"}
    first = client.ok("POST", "/api/v1/retrain", body, 202, **{"Idempotency-Key": "abc"})
    assert first["outcome"] == "fired" and first["replayed"] is False
    assert first["overrode_silences"] == [sid]  # a manual trigger is never silenced
    again = client.ok("POST", "/api/v1/retrain", body, 202, **{"Idempotency-Key": "abc"})
    assert again["decision_id"] == first["decision_id"] and again["replayed"] is True
    (row,) = client.store.rows(decisions)
    assert (row["rule"], row["outcome"], row["severity"]) == ("manual", "fired", "warning")
    assert row["payload"]["signals"] == [] and row["payload"]["reason"] == "new labels"
    sent = client.store.rows(deliveries, deliveries.c.decision_key == first["decision_id"])
    assert sorted((d["kind"], d["target"], d["status"]) for d in sent) == [
        ("action", "notify", "pending"), ("action", "retrain", "pending")]  # fmt: skip

    status, _, out = client.call("POST", "/api/v1/retrain", {**body, "reason": "other"},
                                 {**AUTH, "Idempotency-Key": "abc"})  # fmt: skip
    assert status == 409 and "Idempotency-Key" in out["error"]
    other = client.ok(
        "POST", "/api/v1/retrain", {"model": "fraud", "reason": "r", "actions": ["other"]}, 202
    )
    sent = client.store.rows(deliveries, deliveries.c.decision_key == other["decision_id"])
    assert [d["target"] for d in sent] == ["other"] and client.store.count(decisions) == 2
    status, _, out = client.call("POST", "/api/v1/retrain", {**body, "actions": ["nope"]}, AUTH)
    assert status == 400 and out["error"].startswith("actions[0]: unknown action")


def test_concurrent_retries_with_one_key_store_one_decision(client: Client) -> None:
    body = {"model": "fraud", "reason": "backfill"}
    with ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(
                lambda _: client.call(
                    "POST", "/api/v1/retrain", body, {**AUTH, "Idempotency-Key": "k"}
                ),
                range(8),
            )
        )
    assert {status for status, _, _ in replies} == {202}
    assert len({out["decision_id"] for _, _, out in replies}) == 1
    assert sorted(out["replayed"] for _, _, out in replies) == [False] + [True] * 7
    assert client.store.count(decisions) == 1 and client.store.count(deliveries) == 2


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/retrain", {"model": "credit"}, "reason"),
        ("/api/v1/retrain", {"model": "credit", "reason": "r", "bogus": 1}, "bogus"),
        ("/api/v1/retrain", {"model": 7, "reason": "r"}, "model"),
        ("/api/v1/retrain", {"model": "nope", "reason": "r"}, "model"),
        ("/api/v1/silences", {**SILENCE, "duration_seconds": -1}, "duration_seconds"),
        ("/api/v1/silences", {**SILENCE, "rule": "nope"}, "rule"),
        ("/api/v1/silences", b"{not json", "body"),
        ("/api/v1/silences", [1], "body"),
        ("/api/v1/decisions/k/ack", {"by": ""}, "by"),
    ],
)
def test_bad_bodies_name_the_field(client: Client, path: str, body: Any, field: str) -> None:
    status, _, out = client.call("POST", path, body, AUTH)
    assert status == 400 and out["error"].startswith(f"{field}: "), out


def test_bad_query_unknown_path_wrong_method_too_large(client: Client) -> None:
    for query, name in (
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("outcome=x", "outcome"),
        ("modle=a", "modle"),
    ):
        status, _, out = client.call("GET", f"/api/v1/decisions?{query}")
        assert status == 400 and out["error"].startswith(f"{name}: "), out
    assert client.call("GET", "/api/v1/nope")[0] == 404
    assert client.call("GET", "/api/v2/status")[0] == 404
    status, hdrs, _ = client.call("DELETE", "/api/v1/status", None, AUTH)
    assert status == 405 and hdrs["Allow"] == "GET"
    status, hdrs, _ = client.call("POST", "/api/v1/silences/3", {}, AUTH)
    assert status == 405 and hdrs["Allow"] == "DELETE"
    assert client.call("POST", "/metrics", b"")[0] == 405

    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=10)
    conn.putrequest("POST", "/api/v1/silences")  # announce 2 MiB, send none of it
    for k, v in {
        **AUTH,
        "Content-Length": str(2 << 20),
        "Content-Type": "application/json",
    }.items():
        conn.putheader(k, v)
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and "body" in json.loads(r.read())["error"]
    conn.close()


def test_handle_works_without_a_socket(tmp_path: Path) -> None:
    store = Store(make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    store.create_schema()
    api = Api(store, parse_config(RAW, environ=ENV), clock=lambda: 1000.0)
    status, ctype, body = api.handle("GET", "/api/v1/silences", {}, {}, b"")
    assert (status, ctype, json.loads(body)) == (200, "application/json", {"silences": []})
    status, _, body = api.handle(
        "POST", "/api/v1/silences", {}, {"authorization": f"bearer {TOKEN}"}, b"x" * ((1 << 20) + 1)
    )
    assert status == 413


def test_openapi_lists_every_path(client: Client) -> None:
    doc = client.ok("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/api/v1/status", "/api/v1/decisions", "/api/v1/decisions/{key}/ack", "/api/v1/actions",
        "/api/v1/silences", "/api/v1/silences/{id}", "/api/v1/retrain", "/openapi.json",
        "/api/v1/models/{model}/versions", "/metrics", "/healthz", "/readyz",
    }  # fmt: skip
    assert set(doc["paths"]["/api/v1/silences"]) == {"get", "post"}
    assert doc["paths"]["/api/v1/retrain"]["post"]["security"] == [{"bearer": []}]
    for name in ("SilenceIn", "AckIn", "RetrainIn", "Error"):
        assert name in doc["components"]["schemas"]


try:
    import schemathesis
    from hypothesis import HealthCheck, settings
    from schemathesis import checks
except ImportError:  # optional: pip install schemathesis

    def test_openapi_property_based() -> None:
        pytest.skip("schemathesis is not installed")

else:

    @pytest.fixture
    def api_schema(client: Client) -> Any:
        return schemathesis.openapi.from_url(client.base + "/openapi.json")

    schema = schemathesis.pytest.from_fixture("api_schema")

    @schema.parametrize()
    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    def test_openapi_property_based(case: Any) -> None:
        # Schema-valid bodies may still be refused (an unknown model name).
        case.call_and_validate(headers=AUTH, excluded_checks=[checks.positive_data_acceptance])
