"""End to end: a real Prometheus scrapes a real driftd replaying the demo.

driftd runs the repository's config.toml (SQLite in a temp file, the bundled
data by absolute path) with --keep-serving; Prometheus scrapes it every second
with deploy/prometheus/alerts.yml loaded. The test reads the counts back
through Prometheus's HTTP API, checks the alert rules evaluate cleanly (and
that DriftdDriftSignals fires on the demo's drift), then stops both with
SIGTERM. Only 127.0.0.1. Under CI=true a missing prometheus is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from monitor.config import load_config

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
IN_CI = os.environ.get("CI", "").lower() == "true"
JOB = "driftd"  # the job name alerts.yml selects
DEADLINE_SECONDS = 60.0

# The bundled demo (scripts/make_demo_data.py).
DEMO_PREDICTIONS = 20000
DEMO_OUTCOMES = 18003

T = TypeVar("T")

DASHBOARD = ROOT / "deploy" / "grafana" / "driftd.json"
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$job": JOB,
    "$instance": ".*",
    "$model": ".*",
}
# Dashboard metrics the demo replay does not produce (clean data, no Kafka).
MAY_BE_EMPTY = (
    "driftd_consumer_lag",
    "driftd_events_invalid_total",
    "driftd_dead_letters_total",
    "driftd_missing_values_total",
    "driftd_unexpected_features_total",
)

pytestmark = pytest.mark.service


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def driftd_argv() -> list[str]:
    script = Path(sys.executable).parent / "driftd"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("driftd")
    return [found] if found else [sys.executable, "-m", "monitor.cli"]


def dashboard_queries() -> list[str]:
    """The dashboard's PromQL, Grafana's variables filled in; a variable's
    label_values(SELECTOR, LABEL) becomes SELECTOR."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    out = []
    for expr in exprs:
        expr = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", expr)
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        out.append(expr)
    return out


def write_driftd_config(workdir: Path) -> Path:
    """config.toml with a temp SQLite store and the repo's files by absolute path."""
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    db = workdir / "driftd.db"
    text, n = re.subn(r'(?m)^url\s*=\s*"sqlite:///[^"]*"', f'url = "sqlite:///{db}"', text)
    assert n == 1, "config.toml has no [storage] sqlite url to replace"

    def absolute(m: re.Match[str]) -> str:
        value = m.group(1)
        if "/" in value and not value.startswith("/") and (ROOT / value).is_file():
            return json.dumps(str(ROOT / value))
        return m.group(0)

    text = re.sub(r'"([^"\n]+)"', absolute, text)
    path = workdir / "config.toml"
    path.write_text(text, encoding="utf-8")

    config = load_config(path)
    assert config.storage.url == f"sqlite:///{db}"
    for source in config.sources:
        for p in (getattr(source, "predictions", None), getattr(source, "outcomes", None)):
            assert p is None or (Path(p).is_absolute() and Path(p).is_file()), p
    for action in config.actions:
        for arg in getattr(action, "argv", [])[1:]:
            assert not arg.endswith(".py") or Path(arg).is_absolute(), arg
    return path


def write_prometheus_config(workdir: Path, driftd_port: int) -> Path:
    shutil.copy(ALERTS, workdir / "alerts.yml")
    path = workdir / "prometheus.yml"
    path.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "rule_files:\n"
        "  - alerts.yml\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        "    static_configs:\n"
        f'      - targets: ["127.0.0.1:{driftd_port}"]\n',
        encoding="utf-8",
    )
    return path


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM, a bounded wait, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except FileNotFoundError:
        return ""


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


class Stack:
    def __init__(self, workdir: Path, prometheus: str) -> None:
        self.workdir = workdir
        self.driftd_port = free_port()
        self.prom_port = free_port()
        self.driftd_log = workdir / "driftd.log"
        self.prom_log = workdir / "prometheus.log"
        config = write_driftd_config(workdir)
        prom_config = write_prometheus_config(workdir, self.driftd_port)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.driftd_log.open("wb") as log:
            self.driftd = subprocess.Popen(
                [
                    *driftd_argv(),
                    "run",
                    "--config",
                    str(config),
                    "--keep-serving",
                    "--http-bind",
                    f"127.0.0.1:{self.driftd_port}",
                ],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        with self.prom_log.open("wb") as log:
            self.prometheus = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={prom_config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.prom_port}",
                ],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started = time.monotonic()

    def logs(self) -> str:
        return (
            f"--- driftd (exit {self.driftd.poll()}) ---\n{tail(self.driftd_log)}\n"
            f"--- prometheus (exit {self.prometheus.poll()}) ---\n{tail(self.prom_log)}"
        )

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        body = get_json(url)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, what: str, probe: Callable[[], T | None]) -> T:
        """Poll ``probe`` until it returns a truthy value, within the test's deadline."""
        last: object = None
        while time.monotonic() - self.started < DEADLINE_SECONDS:
            for proc, name in ((self.driftd, "driftd"), (self.prometheus, "prometheus")):
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited early while waiting for {what}\n{self.logs()}")
            try:
                result = probe()
            except (OSError, ValueError) as exc:  # not up yet, or a half-written answer
                last = exc
            else:
                if result:
                    return result
                last = result
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what} (last: {last!r})\n{self.logs()}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        message = "prometheus not found on PATH (Debian: apt-get install prometheus)"
        if IN_CI:
            pytest.fail(message + "; CI=true, so this is a failure")
        pytest.skip(message)
    s = Stack(tmp_path, prometheus)
    try:
        yield s
    finally:
        stop(s.prometheus)
        stop(s.driftd)


def test_prometheus_scrapes_driftd(stack: Stack) -> None:
    preds = f'driftd_events_total{{job="{JOB}", model="credit-risk", stream="predictions"}}'
    outs = f'driftd_events_total{{job="{JOB}", model="credit-risk", stream="outcomes"}}'

    # Prometheus answers, and has the series at all.
    stack.wait_for("driftd_events_total in Prometheus", lambda: stack.query("driftd_events_total"))
    # The replay has ended (the counters are final) and Prometheus has scraped since.
    stack.wait_for(
        "the end of the replay",
        lambda: (
            stack.value(f'driftd_source_exhausted{{job="{JOB}", source="demo"}}') == 1
            and stack.value(preds) == DEMO_PREDICTIONS
            and stack.value(outs) == DEMO_OUTCOMES
        ),
    )

    assert stack.value(preds) == DEMO_PREDICTIONS
    assert stack.value(outs) == DEMO_OUTCOMES
    signals = stack.query(f'driftd_drift_signals_total{{job="{JOB}"}}')
    assert signals, "no drift signal series"
    assert all(float(s["value"][1]) >= 1 for s in signals)
    assert {s["metric"]["model"] for s in signals} == {"credit-risk"}
    assert stack.value(f'sum(driftd_decisions_total{{job="{JOB}", outcome="fired"}})') == 1
    assert stack.value(f'up{{job="{JOB}"}}') == 1
    assert stack.value(f'driftd_actions_total{{job="{JOB}", status="delivered"}}') == 1

    # alerts.yml loads in a real Prometheus and every rule evaluates cleanly ...
    def rules_evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in stack.api("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r["health"] != "unknown" for r in rules) else None

    rules = stack.wait_for("the alert rules to be evaluated", rules_evaluated)
    bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not bad, bad

    # ... and the demo's drift fires DriftdDriftSignals (new series born at 1).
    def drift_alerts() -> list[dict[str, Any]]:
        return [
            a
            for a in stack.api("alerts")["alerts"]
            if a["labels"]["alertname"] == "DriftdDriftSignals" and a["state"] == "firing"
        ]

    firing = stack.wait_for("DriftdDriftSignals to fire", drift_alerts)
    assert {(a["labels"]["target"], a["labels"]["detector"]) for a in firing} == {
        (s["metric"]["target"], s["metric"]["detector"]) for s in signals
    }
    # Every dashboard query runs against the live data; those on metrics the
    # demo produces return series (once rate() has two samples in its window;
    # driftd_join_total appears at a checkpoint).
    missing: list[str] = []

    def dashboard_has_data() -> bool:
        missing[:] = [
            expr
            for expr in dashboard_queries()
            if not stack.query(expr) and not any(name in expr for name in MAY_BE_EMPTY)
        ]
        return not missing

    try:
        stack.wait_for("the dashboard queries to return data", dashboard_has_data)
    except pytest.fail.Exception as exc:
        pytest.fail("dashboard queries without data:\n" + "\n".join(missing) + f"\n{exc}")
    assert time.monotonic() - stack.started < DEADLINE_SECONDS

    # SIGTERM: driftd checkpoints and exits 0 (what systemd and Docker rely on).
    assert stop(stack.driftd) == 0, stack.logs()
