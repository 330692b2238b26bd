"""Evidently HTML reports: written atomically under a safe name, pruned by
count and age without touching other files, Evidently imported lazily."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor.reports import REPORT_NAME, prune_reports, report_name, write_report
from tests.helpers import ROOT

NOW = 1_800_000_000.0


def test_write_report(tmp_path: Path) -> None:
    pytest.importorskip("evidently")
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {"x": rng.normal(size=400), "c": rng.choice(["a", "b"], 400), "k": rng.integers(0, 5, 400)}
    )
    cur = pd.DataFrame(
        {
            "x": rng.normal(1.0, 1.0, 300),
            "c": rng.choice(["a", "b"], 300),
            "k": rng.integers(0, 5, 300),
        }
    )
    out = tmp_path / "reports"  # created on demand
    path = write_report(
        ref, cur, out, "fraud/v2", 1767225600.0, column_types={"x": "numeric", "c": "categorical"}
    )
    assert path.parent == out and REPORT_NAME.match(path.name)
    assert path.name.endswith("-20260101T000000Z.html") and "/" not in path.name
    html = path.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:2000].lower()
    assert "Drift" in html and "drift" in html  # Evidently's drift widgets
    assert [p.name for p in out.iterdir()] == [path.name]  # no temporary file left
    # same model and stamp: replaced, not duplicated; dtypes inferred without column_types
    again = write_report(ref, cur, out, "fraud/v2", datetime(2026, 1, 1, tzinfo=UTC))
    assert again == path and len(list(out.iterdir())) == 1


def test_evidently_is_imported_lazily() -> None:
    code = "import sys, monitor.reports; print('evidently' in sys.modules)"
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert r.stdout.strip() == "False"


def test_report_names_are_safe_and_distinct() -> None:
    assert report_name("churn", NOW) == "driftd-report-churn-20270115T080000Z.html"
    a, b = report_name("a/b", NOW), report_name("a_b", NOW)
    assert a != b and "/" not in a
    long = report_name("x" * 300, NOW)
    assert REPORT_NAME.match(long) and len(long) < 120
    naive = datetime(2027, 1, 15, 8, 0, 0)
    assert report_name("churn", naive) == report_name("churn", NOW)
    assert REPORT_NAME.match(report_name("../../etc/passwd", NOW))
    assert REPORT_NAME.match(report_name("", NOW))


def _make(folder: Path, model: str, age: float, stamp: float) -> Path:
    path = folder / report_name(model, stamp)
    path.write_text("x")
    os.utime(path, (NOW - age, NOW - age))
    return path


def test_prune_by_count_and_age(tmp_path: Path) -> None:
    files = [_make(tmp_path, "m", age=100.0 * (10 - i), stamp=NOW + i) for i in range(10)]
    stranger = tmp_path / "notes.html"
    stranger.write_text("keep me")
    os.utime(stranger, (0, 0))
    hidden = tmp_path / ".driftd-report-abc.tmp"
    hidden.write_text("in flight")
    os.utime(hidden, (0, 0))

    assert prune_reports(tmp_path, None, None, NOW) == []
    deleted = prune_reports(tmp_path, 7, None, NOW)
    assert deleted == files[:3]  # the oldest three
    deleted = prune_reports(tmp_path, None, 450.0, NOW)  # ages 700..100: 700, 600, 500 are gone
    assert deleted == files[3:6]
    deleted = prune_reports(tmp_path, 2, 10_000.0, NOW)
    assert deleted == files[6:8]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f.name for f in files[8:]] + ["notes.html", ".driftd-report-abc.tmp"]
    )
    assert prune_reports(tmp_path, 0, None, NOW) == files[8:]
    assert prune_reports(tmp_path / "missing", 0, 0.0, NOW) == []


def test_prune_rejects_negative_limits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_count"):
        prune_reports(tmp_path, -1, None, NOW)
    with pytest.raises(ValueError, match="max_age_seconds"):
        prune_reports(tmp_path, None, -1.0, NOW)
