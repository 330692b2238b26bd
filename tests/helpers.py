"""Shared test helpers: real local HTTP receivers, free ports, the demo config."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def run_concurrently(*jobs: Callable[[], Any]) -> list[Any]:
    """Run each job in its own thread, all released at once by a barrier;
    their results in order. Fails on the first error any of them raised."""
    barrier = threading.Barrier(len(jobs))
    out: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, job: Callable[[], Any]) -> None:
        try:
            barrier.wait(10)
            out[i] = job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, j)) for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return out


ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "data" / "demo"
DEMO_START = 1767225600.0
DRIFT_AT = 12000  # prediction index where the bundled replay drifts
DRIFT_TIME = DEMO_START + 2.0 * DRIFT_AT


def drop_database(admin: Engine, name: str, timeout_seconds: float = 30.0) -> None:
    """DROP DATABASE ... WITH (FORCE), retried: the test role may not terminate a
    backend it does not own (an autovacuum worker that picked the new database),
    and PostgreSQL refuses the whole DROP then. Such a worker finishes quickly."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except DBAPIError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests.

    ``responses`` is consumed one per request: (status, headers, body, delay
    seconds); when empty, requests get 200 "ok".
    """

    port: int
    requests: list[Received] = field(default_factory=list)
    responses: list[tuple[int, dict[str, str], bytes, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        with self.lock:
            return list(self.requests)


def start_receiver(port: int | None = None) -> tuple[Receiver, ThreadingHTTPServer]:
    rec = Receiver(port or 0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with rec.lock:
                rec.requests.append(Received(self.path, dict(self.headers.items()), body))
                status, headers, reply, delay = (
                    rec.responses.pop(0) if rec.responses else (200, {}, b"ok", 0.0)
                )
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
    server.daemon_threads = True
    rec.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return rec, server


def demo_config_text(
    db_path: Path,
    *,
    extra: str = "",
    predictions: Path | None = None,
    outcomes: Path | None = None,
    http_port: int | None = None,
    rule_actions: str = '["retrain"]',
    rule_alerts: str = '["log"]',
    actions: str | None = None,
) -> str:
    """The bundled config.toml, pointed at absolute paths and a temp database."""
    text = (ROOT / "config.toml").read_text()
    text = text.replace('url = "sqlite:///driftd.db"', f'url = "sqlite:///{db_path}"')
    text = text.replace(
        '"data/demo/predictions.jsonl"', json.dumps(str(predictions or DEMO / "predictions.jsonl"))
    )
    text = text.replace(
        '"data/demo/outcomes.jsonl"', json.dumps(str(outcomes or DEMO / "outcomes.jsonl"))
    )
    for name in ("reference_predictions.jsonl", "reference_outcomes.jsonl"):
        text = text.replace(f'"data/demo/{name}"', json.dumps(str(DEMO / name)))
    text = text.replace(
        'report_dir = "reports"', f"report_dir = {json.dumps(str(db_path.parent / 'reports'))}"
    )
    text = text.replace(
        '"scripts/demo_retrain.py"', json.dumps(str(ROOT / "scripts" / "demo_retrain.py"))
    )
    text = text.replace('bind = "127.0.0.1:9108"', f'bind = "127.0.0.1:{http_port or free_port()}"')
    text = text.replace(
        'actions = ["retrain"]\nalerts = ["log"]',
        f"actions = {rule_actions}\nalerts = {rule_alerts}",
    )
    if actions is not None:
        start = text.index("[[actions]]")
        end = text.index("# A retraining webhook instead")
        text = text[:start] + actions + "\n" + text[end:]
    return text + "\n" + extra
