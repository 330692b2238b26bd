"""The CLI's read and backtest commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import DEMO, demo_config_text


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_replay_is_a_dry_run_backtest(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    db = tmp_path / "live.db"
    cfg.write_text(demo_config_text(db))
    out = run(
        "replay",
        str(DEMO / "predictions.jsonl"),
        "--outcomes",
        str(DEMO / "outcomes.jsonl"),
        "--config",
        str(cfg),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "replayed outcomes=18003, predictions=20000" in out.stdout.replace("credit-risk:", "")
    assert "page_hinkley" in out.stdout and "drift:wasserstein" in out.stdout
    assert (
        "rule retrain-on-drift fired for credit-risk v1 on 3 signal(s); would run action retrain, alert log"
        in out.stdout
    )
    assert "06:43:10" in out.stdout  # when, in event time
    assert not db.exists(), "a dry run must not touch the configured store"
    assert "retraining credit-risk" not in out.stdout + out.stderr  # the action did not run


def test_decisions_and_signals_commands(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    batch_rule = (
        '[[rules]]\nname = "batch-drift"\nmodel = "credit-risk"\nalerts = ["log"]\n'
        '  [[rules.any]]\n  detectors = ["drift:*"]\n'
    )
    cfg.write_text(demo_config_text(tmp_path / "d.db", extra=batch_rule))
    assert run("run", "--config", str(cfg), cwd=tmp_path).returncode == 0
    out = run("decisions", "--config", str(cfg), "--model", "credit-risk", cwd=tmp_path)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    # Newest first: the end-of-replay check's, then the streaming detectors'.
    assert [(r["rule"], r["outcome"]) for r in rows] == [
        ("batch-drift", "fired"),
        ("retrain-on-drift", "fired"),
    ]
    assert {d["target"] for d in rows[1]["deliveries"]} == {"retrain", "log"}
    assert [d["target"] for d in rows[0]["deliveries"]] == ["log"]
    assert run("decisions", "--config", str(cfg), "--model", "nope", cwd=tmp_path).stdout == ""
    sig = run("signals", "--config", str(cfg), "--limit", "3", cwd=tmp_path)
    assert len(sig.stdout.splitlines()) == 3
