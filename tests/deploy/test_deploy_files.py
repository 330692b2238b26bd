"""The deployment files under deploy/ plus Dockerfile and .dockerignore.

* Prometheus: ``promtool check rules``, ``promtool check config`` and
  ``promtool test rules`` (alerts_test.yml) pass; the dashboard's queries parse.
* systemd: ``systemd-analyze verify`` passes (on a copy whose ExecStart is the
  driftd installed here) and the offline security exposure stays low.
* Compose, Grafana, Dockerfile: structure and cross-references (mounted files
  exist, the scrape target is the compose service, the compose driftd config is
  a valid driftd config).
* Every metric name used by alerts.yml and the dashboard is one that
  monitor/metrics.py exports, so neither can drift from the code.

Under CI=true a missing promtool is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
COMPOSE = DEPLOY / "compose.yaml"
DASHBOARD = DEPLOY / "grafana" / "driftd.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
UNIT = DEPLOY / "systemd" / "driftd.service"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
METRICS_PY = ROOT / "monitor" / "metrics.py"

IN_CI = os.environ.get("CI", "").lower() == "true"
UNIT_EXEC_START = "/usr/local/bin/driftd run --config /etc/driftd/config.toml"
REQUIRED_ALERTS = {
    "DriftdDown",
    "DriftdDriftSignals",
    "DriftdActionsDead",
    "DriftdAlertsFailing",
    "DriftdOutboxBacklog",
    "DriftdInvalidEventsHigh",
    "DriftdCheckpointStale",
    "DriftdConsumerLagHigh",
}
# Metrics the deploy files may use before monitor/metrics.py has them (the
# Kafka lag gauge predates the Kafka source in some trees).
FUTURE_METRICS = {"driftd_consumer_lag"}
METRIC_NAME = re.compile(r"\bdriftd_[a-z_]+")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found on PATH (Debian: apt-get install prometheus)"
        if IN_CI:
            pytest.fail(message + "; CI=true, so this is a failure")
        pytest.skip(message)
    return path


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def alert_rules() -> list[dict[str, Any]]:
    rules = [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]
    assert rules
    return rules


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def dashboard_queries() -> list[str]:
    d = dashboard()
    exprs = [t["expr"] for p in iter_panels(d["panels"]) for t in p.get("targets", [])]
    for var in d["templating"]["list"]:
        if var.get("type") == "query":
            q = var["query"]
            exprs.append(q["query"] if isinstance(q, dict) else q)
    return exprs


# -- Prometheus (promtool) ------------------------------------------------------


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    res = run([promtool, "check", "rules", str(ALERTS)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_check_config() -> None:
    promtool = require_tool("promtool")
    res = run([promtool, "check", "config", str(PROM_CONFIG)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 rule files found" in res.stdout, res.stdout  # alerts.yml is loaded


def test_promtool_test_rules() -> None:
    promtool = require_tool("promtool")
    res = run([promtool, "test", "rules", ALERTS_TEST.name], cwd=PROM_DIR)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_alert_rules_are_labelled_and_annotated() -> None:
    rules = alert_rules()
    names = {r["alert"] for r in rules}
    assert REQUIRED_ALERTS <= names, REQUIRED_ALERTS - names
    for r in rules:
        assert r["labels"]["severity"] in {"info", "warning", "critical"}, r["alert"]
        assert r["annotations"].get("summary"), r["alert"]
        assert r["annotations"].get("description"), r["alert"]


def test_alert_unit_tests_cover_firing_and_quiet_cases() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for t in load_yaml(ALERTS_TEST)["tests"]:
        for case in t.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    both = firing & quiet
    assert len(both) >= 3, f"alerts tested both firing and not firing: {sorted(both)}"
    assert both <= {r["alert"] for r in alert_rules()}


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (as a recording rule), Grafana's
    variables replaced by plausible values."""
    promtool = require_tool("promtool")
    substitutions = {
        "$__rate_interval": "1m",
        "$__interval": "1m",
        "$__range": "1h",
        "$job": "driftd",
        "$instance": ".*",
        "$model": ".*",
    }
    rules = []
    for i, expr in enumerate(dashboard_queries()):
        if expr.startswith("label_values("):
            # Grafana's own function: check the selector inside it.
            expr = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", expr)
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unsubstituted variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = run([promtool, "check", "rules", str(path)])
    assert res.returncode == 0, res.stdout + res.stderr


# -- metric names ------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Sample names monitor/metrics.py exports, with the suffixes each type adds."""
    text = METRICS_PY.read_text(encoding="utf-8")
    declared = re.findall(
        r"\b(Counter|Gauge|Histogram|Summary|Info)\(\s*\"(driftd_[a-z_]+)\"", text
    )
    assert len(declared) >= 15, f"parsed too few metrics from {METRICS_PY}: {declared}"
    suffixes = {
        "Counter": ("", "_created"),
        "Gauge": ("",),
        "Histogram": ("", "_bucket", "_count", "_sum", "_created"),
        "Summary": ("", "_count", "_sum", "_created"),
        "Info": ("_info",),
    }
    names: set[str] = set()
    for kind, name in declared:
        base = name.removesuffix("_total") if kind == "Counter" else name
        names.update(base + s for s in suffixes[kind])
        names.add(name)
    return names


def test_metric_name_parser_sees_the_known_metrics() -> None:
    names = exported_metric_names()
    for n in (
        "driftd_events_total",
        "driftd_drift_signals_total",
        "driftd_batch_processing_seconds_bucket",
        "driftd_last_checkpoint_timestamp_seconds",
        "driftd_build_info",
    ):
        assert n in names


def test_alert_rules_use_only_exported_metrics() -> None:
    known = exported_metric_names() | FUTURE_METRICS
    used = {n for r in alert_rules() for n in METRIC_NAME.findall(str(r["expr"]))}
    assert len(used) >= 8, used
    assert used <= known, f"not in monitor/metrics.py: {sorted(used - known)}"


def test_dashboard_uses_only_exported_metrics() -> None:
    known = exported_metric_names() | FUTURE_METRICS
    used = {n for q in dashboard_queries() for n in METRIC_NAME.findall(q)}
    assert len(used) >= 12, used
    assert used <= known, f"not in monitor/metrics.py: {sorted(used - known)}"


# -- Grafana ---------------------------------------------------------------------------


def test_dashboard_structure() -> None:
    d = dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    ds_vars = [v for v in d["templating"]["list"] if v["type"] == "datasource"]
    assert [(v["name"], v["query"]) for v in ds_vars] == [("DS_PROMETHEUS", "prometheus")]

    panels = list(iter_panels(d["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    boxes: list[tuple[int, int, int, int, str]] = []
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        boxes.append((g["x"], g["y"], g["w"], g["h"], p["title"]))
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            assert t["expr"].strip(), p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap = (
                a[0] < b[0] + b[2]
                and b[0] < a[0] + a[2]
                and a[1] < b[1] + b[3]
                and b[1] < a[1] + a[3]
            )
            assert not overlap, f"panels overlap: {a[4]!r} and {b[4]!r}"


def test_dashboard_has_the_required_panels() -> None:
    queries = "\n".join(dashboard_queries())
    for needle in (
        "rate(driftd_events_total",
        "driftd_events_invalid_total",
        "driftd_dead_letters_total",
        "driftd_drift_signals_total",
        "driftd_decisions_total",
        "driftd_actions_total",
        "driftd_alerts_total",
        "driftd_outbox_pending",
        "driftd_join_buffer_size",
        "histogram_quantile(0.5, sum by (le, instance) (rate(driftd_batch_processing_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, instance) (rate(driftd_batch_processing_seconds_bucket",
        "time() - driftd_last_checkpoint_timestamp_seconds",
        "driftd_consumer_lag",
    ):
        assert needle in queries, needle
    by = re.search(r"sum by \(([^)]*)\) \(driftd_drift_signals_total", queries)
    assert by is not None and {"target", "detector"} <= {s.strip() for s in by.group(1).split(",")}


def test_grafana_provisioning_matches_compose() -> None:
    services = compose()["services"]
    ds = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")
    assert ds["apiVersion"] == 1
    (prom,) = [d for d in ds["datasources"] if d["type"] == "prometheus"]
    assert prom["url"] == "http://prometheus:9090" and "prometheus" in services
    assert prom.get("isDefault") is True  # the dashboard's $DS_PROMETHEUS picks it

    providers = load_yaml(PROVISIONING / "dashboards" / "driftd.yml")["providers"]
    (provider,) = providers
    mounts = dict(_bind_mounts(services["grafana"]))
    assert mounts.get(DEPLOY / "grafana" / "provisioning") == "/etc/grafana/provisioning"
    target = mounts.get(DASHBOARD)
    assert target is not None and str(Path(target).parent) == provider["options"]["path"]


# -- compose ---------------------------------------------------------------------------


def _bind_mounts(service: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    for v in service.get("volumes", []):
        source, target = (v["source"], v["target"]) if isinstance(v, dict) else v.split(":")[:2]
        if source.startswith((".", "/")):
            yield (DEPLOY / source).resolve(), target


def test_compose_services() -> None:
    c = compose()
    services = c["services"]
    assert {"kafka", "postgres", "prometheus", "grafana", "driftd"} <= set(services)
    kafka = services["kafka"]
    assert kafka["image"].startswith(("apache/kafka:", "redpandadata/redpanda:"))
    if kafka["image"].startswith("apache/kafka:"):
        env = kafka["environment"]
        assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert services["postgres"]["image"].split(":")[1].startswith("16")
    assert "DRIFTD_DB_PASSWORD" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]

    driftd = services["driftd"]
    context = (DEPLOY / driftd["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / driftd["build"].get("dockerfile", "Dockerfile")).is_file()
    assert "DRIFTD_DB_PASSWORD" in driftd["environment"]
    assert set(driftd["depends_on"]) >= {"postgres", "kafka"}

    # Every bind-mounted file exists; every named volume is declared.
    declared = set(c.get("volumes") or {})
    for name, service in services.items():
        for source, _ in _bind_mounts(service):
            assert source.exists(), f"{name}: {source} does not exist"
        for v in service.get("volumes", []):
            source = v["source"] if isinstance(v, dict) else v.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"

    prom_mounts = dict(_bind_mounts(services["prometheus"]))
    assert prom_mounts[PROM_CONFIG] == "/etc/prometheus/prometheus.yml"
    assert prom_mounts[ALERTS] == "/etc/prometheus/alerts.yml"  # beside it: rule_files is relative


def compose_driftd_config_text() -> str:
    c = compose()
    (cfg,) = [
        x for x in c["services"]["driftd"]["configs"] if x["target"] == "/etc/driftd/config.toml"
    ]
    content = c["configs"][cfg["source"]]["content"]
    assert isinstance(content, str)
    # Compose interpolates "${...}" in the file; "$$" is its escape for "$".
    assert re.search(r"(?<!\$)\$\{", content) is None, (
        "unescaped ${...}: Compose would substitute it"
    )
    return content.replace("$$", "$")


def test_compose_driftd_config_is_valid() -> None:
    text = compose_driftd_config_text()
    config = parse_config(tomllib.loads(text), environ={"DRIFTD_DB_PASSWORD": "test"})
    assert config.storage.url.startswith("postgresql")
    assert "@postgres:" in config.storage.url
    assert (
        config.storage.password is not None and config.storage.password.env == "DRIFTD_DB_PASSWORD"
    )
    # Paths under /opt/driftd are the repository's files copied by the Dockerfile.
    paths = re.findall(r'"/opt/driftd/([^"]+)"', text)
    assert paths
    for rel in paths:
        assert (ROOT / rel).is_file(), rel


def test_prometheus_scrapes_the_compose_driftd() -> None:
    services = compose()["services"]
    config = load_yaml(PROM_CONFIG)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "driftd"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["driftd:9108"]
    assert "driftd" in services
    command = services["driftd"]["command"]
    assert command[command.index("--http-bind") + 1] == "0.0.0.0:9108"
    assert "127.0.0.1:9108:9108" in services["driftd"]["ports"]
    # The alert rules select this job.
    assert all('job="driftd"' in str(r["expr"]) for r in alert_rules() if "up{" in str(r["expr"]))


# -- Dockerfile ------------------------------------------------------------------------


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all(f == "python:3.11-slim" for f in froms), froms
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^EXPOSE\s+9108\b", text, re.M)
    assert re.search(r"pip install \"?\.", text)
    (healthcheck,) = re.findall(r"^HEALTHCHECK\b.*?CMD\s+(.*)$", text, re.M | re.S)
    assert "urllib.request" in healthcheck and "/healthz" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck
    cmd = json.loads(re.findall(r"^CMD\s+(\[.*\])\s*$", text, re.M)[-1])
    assert cmd[:2] == ["driftd", "run"]
    assert cmd[cmd.index("--http-bind") + 1] == "0.0.0.0:9108"


def test_dockerfile_demo_config_rewrite() -> None:
    """The image's demo config: the Dockerfile's sed rewrite of config.toml
    leaves no relative repository path, and what it points at under
    /opt/driftd is what the Dockerfile copies there."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    exprs = re.findall(r"-e '(s#[^']*)'", text)
    assert exprs, "no sed -e 's#...#...#' rewrite in the Dockerfile"
    res = run(["sed", *[a for e in exprs for a in ("-e", e)], str(ROOT / "config.toml")])
    assert res.returncode == 0, res.stderr
    rewritten = res.stdout
    assert not re.findall(r'"(?:data|scripts)/[^"]*"', rewritten)
    copied = {"data": "cp -r data /out/opt/driftd/data", "scripts": "cp scripts/demo_retrain.py"}
    paths = re.findall(r'"/opt/driftd/([^"]+)"', rewritten)
    assert paths
    for rel in paths:
        assert (ROOT / rel).is_file(), rel
        assert copied.get(rel.split("/")[0], "\0") in text, f"the Dockerfile does not copy {rel}"
    parse_config(tomllib.loads(rewritten.replace("/opt/driftd/", f"{ROOT}/")), environ={})


def test_dockerfile_healthcheck_is_valid_python() -> None:
    """The HEALTHCHECK's python -c is valid Python (it cannot be run in a container here)."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    match = re.search(r"^\s*CMD\s+(\[\"python\".*\])\s*$", text, re.M)
    assert match is not None, 'no HEALTHCHECK CMD ["python", ...] line'
    cmd = json.loads(match.group(1))
    assert cmd[:2] == ["python", "-c"]
    compile(cmd[2], "<healthcheck>", "exec")


def test_dockerignore() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert ".git" in patterns
    assert patterns & {"*.db", "**/*.db"}
    assert not patterns & {"data", "monitor", "config.toml", "scripts", "pyproject.toml"}


# -- systemd -------------------------------------------------------------------------


def unit_settings() -> list[tuple[str, str]]:
    settings = []
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


def test_unit_settings() -> None:
    settings = unit_settings()
    values = dict(settings)
    expected = {
        "User": "driftd",
        "ExecStart": UNIT_EXEC_START,
        "WorkingDirectory": "/var/lib/driftd",
        "EnvironmentFile": "-/etc/driftd/driftd.env",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ReadWritePaths": "/var/lib/driftd",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "TimeoutStopSec": "30",
    }
    for key, value in expected.items():
        assert values.get(key) == value, f"{key}={values.get(key)!r}, want {value!r}"
    assert ("SystemCallFilter", "@system-service") in settings


def _driftd_exec() -> str:
    """The driftd installed for this interpreter, for ExecStart= in a verifiable copy."""
    script = Path(sys.executable).parent / "driftd"
    if script.is_file() and os.access(script, os.X_OK):
        return str(script)
    found = shutil.which("driftd")
    return found if found else f"{sys.executable} -m monitor.cli"


@pytest.fixture
def systemd_analyze(tmp_path: Path) -> str:
    """systemd-analyze, if it can verify units in this environment at all."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    probe = tmp_path / "probe" / "driftd-probe.service"
    probe.parent.mkdir()
    probe.write_text(f"[Service]\nExecStart={sys.executable} -c pass\n")
    res = run([tool, "verify", str(probe)])
    if res.returncode != 0 or res.stdout.strip() or res.stderr.strip():
        pytest.skip(f"systemd-analyze verify cannot run here: {(res.stderr or res.stdout).strip()}")
    return tool


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={UNIT_EXEC_START}\n" in text
    copy = tmp_path / "unit" / "driftd.service"
    copy.parent.mkdir()
    copy.write_text(
        text.replace("ExecStart=/usr/local/bin/driftd ", f"ExecStart={_driftd_exec()} "),
        encoding="utf-8",
    )
    return copy


def test_systemd_analyze_verify(systemd_analyze: str, unit_copy: Path) -> None:
    res = run([systemd_analyze, "verify", str(unit_copy)])
    # verify exits 0 even on unknown keys or bad values: it only prints them.
    output = (res.stdout + res.stderr).strip()
    assert res.returncode == 0, output
    ours = [line for line in output.splitlines() if "driftd.service" in line]
    assert not ours, "\n".join(ours)


def test_systemd_security_exposure(systemd_analyze: str, unit_copy: Path) -> None:
    res = run([systemd_analyze, "security", "--offline=yes", "--threshold=20", str(unit_copy)])
    if "--offline" in res.stderr and "unrecognized" in res.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    # Exposure 0-10 is printed; --threshold compares it x10: fail above 2.0.
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr
    assert "Overall exposure level for driftd.service" in res.stdout
