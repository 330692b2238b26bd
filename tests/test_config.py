"""config.toml: every error path names the key and the reason."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from monitor.config import ConfigError, DriftdConfig, load_config, parse_config
from monitor.secrets import Secret
from tests.helpers import ROOT


def base() -> dict[str, Any]:
    return tomllib.loads((ROOT / "config.toml").read_text())


def error_of(raw: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, environ or {})
    return str(info.value)


def test_bundled_config_is_valid_and_frozen() -> None:
    cfg = load_config(ROOT / "config.toml", environ={})
    assert isinstance(cfg, DriftdConfig)
    assert cfg.models[0].name == "credit-risk"
    assert cfg.runtime.checkpoint_interval_seconds == 5.0
    with pytest.raises(AttributeError):
        cfg.runtime.batch_size = 1  # type: ignore[misc]


def test_unknown_top_level_key_has_hint() -> None:
    raw = base()
    raw["storag"] = {}
    assert error_of(raw).startswith("storag: unknown key (did you mean 'storage'?)")


def test_unknown_nested_key_has_path_and_hint() -> None:
    raw = base()
    raw["models"][0]["detectors"][0]["parms"] = {}
    msg = error_of(raw)
    assert msg.startswith("models[0].detectors[0].parms: unknown key (did you mean 'params'?)")
    assert "valid keys: on, params, type" in msg


def test_unknown_key_in_tagged_section_lists_that_types_keys() -> None:
    raw = base()
    raw["actions"][0]["timeout"] = 3
    msg = error_of(raw)
    assert msg.startswith("actions[0].timeout: unknown key (did you mean 'timeout_seconds'?)")
    assert "argv" in msg


def test_wrong_type_names_the_key() -> None:
    raw = base()
    raw["runtime"]["batch_size"] = "many"
    assert error_of(raw) == "runtime.batch_size: Expected `int`, got `str`"


def test_out_of_range_names_the_key() -> None:
    raw = base()
    raw["runtime"]["batch_size"] = 0
    assert error_of(raw) == "runtime.batch_size: Expected `int` >= 1"
    raw = base()
    raw["join"]["ttl_seconds"] = -1.0
    assert error_of(raw) == "join.ttl_seconds: Expected `float` > 0.0"


def test_unknown_source_type_lists_valid_types() -> None:
    raw = base()
    raw["sources"][0]["type"] = "kafkaa"
    msg = error_of(raw)
    assert msg.startswith("sources[0]")
    assert "valid types: file" in msg


def test_bad_bind() -> None:
    raw = base()
    raw["http"]["bind"] = "localhost"
    assert "http.bind must be HOST:PORT" in error_of(raw)


def test_unknown_detector_lists_valid_ones() -> None:
    raw = base()
    raw["models"][0]["detectors"][0]["type"] = "adwn"
    msg = error_of(raw)
    assert msg.startswith("models[0].detectors[0].type: unknown detector 'adwn'")
    assert "adwin, category_chi2, ddm" in msg


def test_unknown_detector_parameter_has_hint() -> None:
    raw = base()
    raw["models"][0]["detectors"][0]["params"] = {"detla": 0.1}
    assert error_of(raw) == (
        "models[0].detectors[0].params: unknown parameter 'detla' for adwin (did you mean 'delta'?); "
        "valid: clock, delta, grace_period, max_buckets, min_window_length"
    )


def test_bad_detector_parameter_value_is_named() -> None:
    raw = base()
    raw["models"][0]["detectors"][0]["params"] = {"delta": 2}
    assert error_of(raw) == "models[0].detectors[0].params: delta must be in (0, 1), got 2"


def test_unknown_target() -> None:
    raw = base()
    raw["models"][0]["detectors"][0]["on"] = ["feature:salary"]
    msg = error_of(raw)
    assert msg.startswith("models[0].detectors[0].on[0]: unknown target 'feature:salary'")
    assert "feature:income" in msg


def test_detector_that_cannot_take_the_target() -> None:
    raw = base()
    raw["models"][0]["detectors"].append({"type": "ddm", "on": ["feature:income"]})
    msg = error_of(raw)
    assert "does not take numeric input" in msg


def test_rule_references_are_checked() -> None:
    raw = base()
    raw["rules"][0]["actions"] = ["retrian"]
    assert error_of(raw) == "rules[0].actions[0]: unknown action 'retrian'; defined: retrain"
    raw = base()
    raw["rules"][0]["model"] = "fraud"
    assert error_of(raw) == "rules[0].model: unknown model 'fraud'"


def test_duplicate_names() -> None:
    raw = base()
    raw["alerts"].append({"type": "log", "name": "log"})
    assert error_of(raw) == "alerts[1].name: duplicate name 'log'"


def test_secret_literal_is_refused() -> None:
    raw = base()
    raw["alerts"].append(
        {"type": "slack", "name": "slack", "webhook_url": "https://hooks.slack.com/x"}
    )
    msg = error_of(raw)
    assert msg.startswith("alerts[1]")
    assert "secrets must come from the environment" in msg


def test_secret_env_missing_names_variable() -> None:
    raw = base()
    raw["alerts"].append({"type": "slack", "name": "slack", "webhook_url": "${DRIFTD_TEST_HOOK}"})
    assert "environment variable DRIFTD_TEST_HOOK is not set" in error_of(raw)


def test_secret_resolved_and_masked() -> None:
    raw = base()
    raw["alerts"].append({"type": "slack", "name": "slack", "webhook_url": "${DRIFTD_TEST_HOOK}"})
    cfg = parse_config(raw, {"DRIFTD_TEST_HOOK": "https://hooks.example/very-secret"})
    hook = cfg.alerts[1].webhook_url  # type: ignore[union-attr]
    assert isinstance(hook, Secret)
    assert hook.reveal() == "https://hooks.example/very-secret"
    assert "very-secret" not in repr(cfg)


def test_slack_needs_exactly_one_of_webhook_or_token() -> None:
    raw = base()
    raw["alerts"].append({"type": "slack", "name": "slack"})
    assert "set exactly one of webhook_url or token" in error_of(raw)


def test_not_toml(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[storage\nurl=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_check_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    text = (ROOT / "config.toml").read_text() + (
        '\n[[alerts]]\ntype = "slack"\nname = "slack"\nwebhook_url = "${DRIFTD_TEST_HOOK}"\n'
    )
    good.write_text(text)
    env = {"DRIFTD_TEST_HOOK": "https://hooks.example/very-secret", "PATH": "/usr/bin:/bin"}
    ok = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(good)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert '"${DRIFTD_TEST_HOOK} (set, masked)"' in ok.stdout
    assert "very-secret" not in ok.stdout + ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("batch_size = 2000", "batch_sise = 2000"))
    fail = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert fail.returncode == 2
    assert "runtime.batch_sise: unknown key (did you mean 'batch_size'?)" in fail.stderr


def test_batch_reference_needs_exactly_one_source() -> None:
    raw = base()
    raw["models"][0]["batch"]["reference"] = {"path": "a.jsonl", "capture_first": 10}
    assert "set exactly one of path, query (with url), capture_first" in error_of(raw)
    raw["models"][0]["batch"]["reference"] = {"capture_from": 5.0}
    assert "capture_from and capture_until go together" in error_of(raw)
    raw["models"][0]["batch"]["reference"] = {"query": "select 1"}
    assert "query and url go together" in error_of(raw)
    raw["models"][0]["batch"]["windw"] = "sliding"
    raw["models"][0]["batch"]["reference"] = {"capture_first": 10}
    assert error_of(raw).startswith("models[0].batch.windw: unknown key (did you mean 'window'?)")
    del raw["models"][0]["batch"]["windw"]
    raw["models"][0]["batch"]["tests"] = {"income": "kss"}
    assert error_of(raw).startswith("models[0].batch.tests.income: unknown test 'kss'; valid:")
    raw["models"][0]["batch"]["tests"] = {}
    raw["models"][0]["batch"]["segment_by"] = "income"
    assert error_of(raw) == "models[0].batch.segment_by: 'income' is not a categorical feature"


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"window_rows": 1000, "window_seconds": 60.0}, "set window_rows or window_seconds"),
        ({"window_rows": 100}, "window_rows (100) is below min_rows (500)"),
        (
            {"window": "sliding", "window_rows": 30000},
            "window_rows (30000) cannot exceed window_max_rows (20000)",
        ),
        (
            {"window_rows": 1000, "reference": {"capture_first": 2000}},
            "reference.capture_first (2000) cannot exceed window_rows (1000)",
        ),
        (
            {"window_seconds": 60.0, "reference": {"capture_from": 1.0, "capture_until": 2.0}},
            "a capture_from/capture_until reference needs a scheduled window",
        ),
        ({"window_seconds": 0.0}, "models[0].batch.window_seconds: "),
    ],
)
def test_window_lengths_are_checked(batch: dict[str, Any], message: str) -> None:
    raw = base()
    raw["models"][0]["batch"].update(batch)
    error = error_of(raw)
    assert message in error and error.startswith("models[0].batch"), error


def test_window_lengths_parse() -> None:
    raw = base()
    raw["models"][0]["batch"].update({"window": "sliding", "window_seconds": 3600.0})
    batch = parse_config(raw, {}).models[0].batch
    assert batch is not None and batch.window_seconds == 3600.0 and not batch.closed_by_events
    raw["models"][0]["batch"].update({"window": "tumbling", "window_seconds": None})
    del raw["models"][0]["batch"]["window_seconds"]
    raw["models"][0]["batch"]["window_rows"] = 5000
    batch = parse_config(raw, {}).models[0].batch
    assert batch is not None and batch.window_rows == 5000 and batch.closed_by_events
