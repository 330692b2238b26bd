"""Batch checks inside the daemon and from the CLI, on the bundled replay."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.store import batch_checks, batch_results, decisions, reference_profiles, signals
from tests.helpers import DRIFT_TIME, demo_config_text

SHIFTED = {"utilization", "debt_ratio", "score"}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_end_of_replay_check_stores_results_gauges_report_and_signals(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(demo_config_text(tmp_path / "d.db"))
    registry = CollectorRegistry()
    daemon = Daemon(load_config(cfg), registry=registry)
    daemon.run(serve_http=False)
    store = daemon.store
    refs = store.rows(reference_profiles)
    assert {r["segment"] for r in refs} == {"", "channel=web", "channel=branch", "channel=phone"}
    assert refs[0]["n_rows"] == 5000 and refs[0]["multivariate"] is not None
    assert refs[0]["performance"]["metrics"]["accuracy"] > 0.7
    (whole,) = store.rows(batch_checks, batch_checks.c.segment == "")
    assert whole["n_rows"] == 20000 and whole["failed"]
    rows = store.rows(batch_results, batch_results.c.check_id == whole["id"])
    drifted = {r["column"] for r in rows if r["kind"] == "drift" and r["failed"] and r["column"]}
    assert drifted == SHIFTED  # exactly the shifted columns, no false positive
    kinds = {(r["kind"], r["name"]) for r in rows}
    assert ("quality", "missing_rate") in kinds and ("drift", "pca_reconstruction") in kinds
    perf = {r["name"]: r for r in rows if r["kind"] == "performance"}
    assert perf["accuracy"]["failed"]  # realized accuracy fell below the baseline's interval
    assert perf["estimated_accuracy"]["detail"]["realized"] == perf["accuracy"]["statistic"]
    report = Path(whole["report"])
    assert report.exists() and report.suffix == ".html" and report.stat().st_size > 10_000
    # gauges
    score = registry.get_sample_value(
        "driftd_batch_drift_score",
        {"model": "credit-risk", "feature": "utilization", "test": "wasserstein", "segment": ""},
    )
    assert score is not None and score > 0.1
    assert (
        registry.get_sample_value(
            "driftd_batch_checks_total", {"model": "credit-risk", "status": "failed"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "driftd_performance",
            {
                "model": "credit-risk",
                "metric": "accuracy",
                "kind": "realized",
                "bound": "value",
                "segment": "",
            },
        )
        == perf["accuracy"]["statistic"]
    )
    # performance per segment, against the segment's own baseline
    (web,) = store.rows(batch_checks, batch_checks.c.segment == "channel=web")
    web_perf = {
        r["name"]: r
        for r in store.rows(batch_results, batch_results.c.check_id == web["id"])
        if r["kind"] == "performance"
    }
    assert web_perf["accuracy"]["detail"]["n"] > 1000
    assert web_perf["accuracy"]["threshold"] is not None  # the web segment's baseline
    assert web_perf["accuracy"]["threshold"] != perf["accuracy"]["threshold"]
    # signals feed the rules; the cooldown holds the second decision back
    batch_sigs = [
        s for s in store.rows(signals) if s["detector"].startswith(("drift:", "performance:"))
    ]
    assert {s["target"] for s in batch_sigs if "@" not in s["target"]} >= {
        "feature:utilization",
        "score",
    }
    assert all(
        s["details"].get("report") == str(report) for s in batch_sigs if "@" not in s["target"]
    )
    # The shard's rule, which fired on the streaming signals, took the check's
    # signals too and holds its cooldown: no second decision.
    assert [d["outcome"] for d in store.rows(decisions)] == ["fired"]


def test_scheduled_checks_run_while_streaming_and_cli_check(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    text = demo_config_text(tmp_path / "d.db")
    text = text.replace("interval_seconds = 60.0", "interval_seconds = 1.0").replace(
        "speed = 0 ", "speed = 4000 "
    )
    cfg.write_text(text)
    daemon = Daemon(load_config(cfg), registry=CollectorRegistry())
    t0 = time.monotonic()
    daemon.run(serve_http=False)
    assert time.monotonic() - t0 > 5  # paced: ~10 s of replay
    checks = daemon.store.rows(batch_checks, batch_checks.c.segment == "")
    # APScheduler ran several checks during the replay (tumbling windows), then the final one.
    assert len(checks) >= 3
    # Every prediction judged exactly once, but for a last window too small
    # to judge (it stays open in the checkpoint).
    from monitor.batch import stored_window

    left = stored_window(daemon.store, "credit-risk")
    assert sum(c["n_rows"] for c in checks) + (left.n if left else 0) == 20000
    early = [c for c in checks if c["window_end"] < DRIFT_TIME]
    assert early, "no scheduled check before the drift"
    for c in early:  # windows before the drift: no column judged drifted
        assert not [k for k in c["summary"]["failed"] if k.startswith("drift:")], c["summary"]
    late = [c for c in checks if c["window_start"] > DRIFT_TIME + 600]
    assert late and all(any(k.startswith("drift:") for k in c["summary"]["failed"]) for c in late)
    out = run_cli("check", "--model", "credit-risk", "--config", str(cfg), cwd=tmp_path)
    # What is left after the final check is judged, or too small to be.
    assert out.returncode in (0, 1) and out.stdout.startswith("credit-risk:")
    base = run_cli("baseline", "--model", "credit-risk", "--config", str(cfg), cwd=tmp_path)
    assert base.returncode == 0, base.stderr
    assert "5000 rows, 4470 labeled" in base.stdout


def test_cli_check_on_stored_windows(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    text = demo_config_text(tmp_path / "d.db")
    cfg.write_text(text)
    # Stop the replay half-way past the drift: the open window stays in the checkpoint.
    daemon = Daemon(load_config(cfg), registry=CollectorRegistry())
    source = daemon.sources[0].source
    original = source.poll
    polls = 0

    def stop_later(n: int, t: float):  # type: ignore[no-untyped-def]
        nonlocal polls
        polls += 1
        if polls == 14:
            daemon.request_stop()
        return original(n, t)

    source.poll = stop_later  # type: ignore[method-assign]
    daemon.run(serve_http=False)
    out = run_cli("check", "--model", "credit-risk", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr  # failed checks exit 1
    lines = out.stdout.splitlines()
    assert lines[0].startswith("credit-risk: failed")
    fails = {
        ln.split()[3]
        for ln in lines[2:]
        if ln.startswith("(all)") and ln.endswith("FAIL") and " drift " in ln
    }
    assert {"utilization", "debt_ratio", "score"} <= fails


@pytest.mark.parametrize(
    "reference",
    ["capture_first = 4000", "capture_from = 1767225600.0\n  capture_until = 1767237600.0"],
    ids=["first-n", "time-range"],
)
def test_reference_captured_from_the_stream(tmp_path: Path, reference: str) -> None:
    cfg = tmp_path / "c.toml"
    text = demo_config_text(tmp_path / "d.db")
    text = text.replace("interval_seconds = 60.0", "interval_seconds = 1.0").replace(
        "speed = 0 ", "speed = 4000 "
    )
    start = text.index("  [models.batch.reference]")
    end = text.index("[[rules]]")
    text = text[:start] + f"  [models.batch.reference]\n  {reference}\n\n" + text[end:]
    cfg.write_text(text)
    daemon = Daemon(load_config(cfg), registry=CollectorRegistry())
    daemon.run(serve_http=False)
    (ref,) = daemon.store.rows(reference_profiles, reference_profiles.c.segment == "")
    assert ref["source"] == "captured"
    if "capture_first" in reference:
        assert 4000 <= ref["n_rows"] < 12000  # the first window holding 4000 predictions
    else:
        assert ref["n_rows"] == 6000  # event times in [start, start + 6000 predictions * 2 s)
    checks = daemon.store.rows(batch_checks, batch_checks.c.segment == "")
    judged = sum(c["n_rows"] for c in checks)
    assert judged + ref["n_rows"] <= 20000 + 1 and judged > 0
    late = [c for c in checks if c["window_start"] > DRIFT_TIME + 600]
    assert late and all(any(k.startswith("drift:") for k in c["summary"]["failed"]) for c in late)


PERSISTENT_DRIFT_RULE = """
[[rules]]
name = "drift-two-checks-running"
model = "credit-risk"
cooldown_seconds = 0.0
alerts = ["log"]
  [[rules.all]]
  detectors = ["drift:*"]
  targets = ["feature:utilization"]
  min_signals = 2
  of_last_checks = 2
"""


def _windowed_run(tmp_path: Path, window: str, extra: str = "") -> Daemon:
    cfg = tmp_path / "c.toml"
    text = demo_config_text(tmp_path / "d.db", extra=extra)
    text = text.replace('window = "tumbling"\n', window + "\n")
    cfg.write_text(text)
    daemon = Daemon(load_config(cfg), registry=CollectorRegistry())
    daemon.run(serve_http=False)
    return daemon


def _drifted(check: dict[str, object]) -> set[str]:
    failed = check["summary"]["failed"]  # type: ignore[index]
    return {k.split(":")[2] for k in failed if k.startswith("drift:") and k.split(":")[2] != "None"}


def test_count_windows_judge_every_n_predictions_as_they_fill(tmp_path: Path) -> None:
    daemon = _windowed_run(
        tmp_path, 'window = "tumbling"\n  window_rows = 4000', PERSISTENT_DRIFT_RULE
    )
    store = daemon.store
    checks = store.rows(batch_checks, batch_checks.c.segment == "", order_by=batch_checks.c.id)
    # 20000 predictions: five windows of exactly 4000, judged in stream order.
    assert [c["n_rows"] for c in checks] == [4000] * 5
    assert [c["window_start"] for c in checks] == sorted(c["window_start"] for c in checks)
    assert all(b["window_start"] > a["window_end"] for a, b in itertools.pairwise(checks))
    # The drift starts at prediction 12000: windows 0-2 are clean; 3 and 4 hold
    # only drifted predictions, so the region mix change (which 8000 of 20000
    # in one window dilutes below the threshold) is flagged too.
    assert [_drifted(c) for c in checks[:3]] == [set(), set(), set()]
    assert _drifted(checks[3]) == SHIFTED | {"region"} == _drifted(checks[4])
    # The shard's rules saw the checks: two failing checks in a row fire once,
    # at the second drifted window.
    (dec,) = store.rows(decisions, decisions.c.rule == "drift-two-checks-running")
    assert dec["outcome"] == "fired" and dec["event_time"] == checks[4]["window_end"]
    # Judged and dropped: nothing waits in the checkpoint.
    (state,) = daemon.pipeline.shards.values()
    assert state.windows is not None and state.windows.closed == []


def test_event_time_windows_are_aligned_buckets(tmp_path: Path) -> None:
    daemon = _windowed_run(tmp_path, 'window = "tumbling"\n  window_seconds = 3600.0')
    checks = daemon.store.rows(
        batch_checks, batch_checks.c.segment == "", order_by=batch_checks.c.id
    )
    # Predictions come every 2 s from an hour boundary: 1800 per hour, 11 full
    # hours, then 200 (below min_rows 500: not judged).
    assert [c["n_rows"] for c in checks] == [1800] * 11
    for c in checks:
        start = int(c["window_start"]) // 3600 * 3600
        assert c["window_start"] == start and c["window_end"] < start + 3600


def test_sliding_time_window_judges_the_last_hour(tmp_path: Path) -> None:
    daemon = _windowed_run(tmp_path, 'window = "sliding"\n  window_seconds = 3600.0')
    (check,) = daemon.store.rows(batch_checks, batch_checks.c.segment == "")
    assert check["n_rows"] == 1800  # the end-of-replay check: the newest hour only
    assert check["window_end"] - check["window_start"] < 3600
    assert _drifted(check) == SHIFTED | {"region"}  # all drifted rows: region too


class _Crash(Exception):
    pass


def test_a_crash_after_a_window_is_judged_judges_it_again_without_a_second_check(
    tmp_path: Path,
) -> None:
    window = 'window = "tumbling"\n  window_rows = 4000'
    (tmp_path / "ref").mkdir()
    (tmp_path / "crash").mkdir()
    ref = _windowed_run(tmp_path / "ref", window, PERSISTENT_DRIFT_RULE)
    cfg = tmp_path / "crash" / "c.toml"
    cfg.write_text(
        demo_config_text(tmp_path / "crash" / "d.db", extra=PERSISTENT_DRIFT_RULE).replace(
            'window = "tumbling"\n', window + "\n"
        )
    )
    first = Daemon(load_config(cfg), registry=CollectorRegistry())
    judge = first.batch.run_closed
    judged = 0

    def crash_after_the_fourth_check(w):  # type: ignore[no-untyped-def]
        nonlocal judged
        out = judge(w)
        judged += 1
        if judged == 4:  # its check is stored; its signals and the checkpoint are not
            raise _Crash
        return out

    first.batch.run_closed = crash_after_the_fourth_check  # type: ignore[method-assign]
    with pytest.raises(_Crash):
        first.run(serve_http=False)
    assert len(first.store.rows(batch_checks, batch_checks.c.segment == "")) == 4
    again = Daemon(load_config(cfg), registry=CollectorRegistry())
    again.run(serve_http=False)

    def view(d: Daemon) -> tuple[object, ...]:
        return (
            [
                (c["id"], c["segment"], c["window_start"], c["n_rows"], c["failed"])
                for c in d.store.rows(batch_checks, order_by=batch_checks.c.id)
            ],
            sorted(s["signal_key"] for s in d.store.rows(signals)),
            sorted((x["idempotency_key"], x["outcome"]) for x in d.store.rows(decisions)),
        )

    assert view(again) == view(ref)


def test_a_window_closed_before_a_restart_is_judged_without_new_input(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        demo_config_text(tmp_path / "d.db").replace(
            'window = "tumbling"\n', 'window = "tumbling"\n  window_rows = 4000\n'
        )
    )
    first = Daemon(load_config(cfg), registry=CollectorRegistry())
    first._judge_closed = lambda *a, **k: None  # type: ignore[method-assign]
    original = first.sources[0].source.poll
    polls = 0

    def stop_after_a_while(n: int, t: float):  # type: ignore[no-untyped-def]
        nonlocal polls
        polls += 1
        if polls == 12:  # past the first 4000 predictions
            first.request_stop()
        return original(n, t)

    first.sources[0].source.poll = stop_after_a_while  # type: ignore[method-assign]
    first.run(serve_http=False)
    (state,) = first.pipeline.shards.values()
    assert state.windows is not None and len(state.windows.closed) >= 1
    waiting = len(state.windows.closed)
    assert first.store.rows(batch_checks) == []
    # Restarted on a source with nothing new to read (a quiet partition).
    again = Daemon(load_config(cfg), registry=CollectorRegistry())
    source = again.sources[0].source
    quiet = 0

    def nothing(n: int, t: float):  # type: ignore[no-untyped-def]
        nonlocal quiet
        quiet += 1
        if quiet == 3:
            again.request_stop()
        return []

    source.poll = nothing  # type: ignore[method-assign]
    again.run(serve_http=False)
    checks = again.store.rows(batch_checks, batch_checks.c.segment == "")
    assert [c["n_rows"] for c in checks] == [4000] * waiting
