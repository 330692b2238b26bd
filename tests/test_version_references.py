"""References per model version: captured for each version from its first
window, or a file of its own; a window of one version is judged against its
version's reference, a mixed one against the newest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from connectors.base import OUTCOMES, PREDICTIONS, Record
from monitor.config import ConfigError
from monitor.daemon import Daemon
from monitor.store import reference_profiles
from tests.test_versions import config, events


class Harness:
    """A daemon fed in-process, its batch check run on demand (as the schedule would)."""

    def __init__(self, tmp_path: Path, batch: dict[str, Any]) -> None:
        cfg = config(tmp_path, "http://127.0.0.1:9/", model={"batch": batch, "versions": {}})
        self.daemon = Daemon(cfg, registry=CollectorRegistry(), sources=[])
        self.daemon.store.create_schema()
        self.offset = 0

    def feed(self, version: str, n: int, start: int, shifted: bool = False) -> None:
        preds, outs = events(version, n, (1, 10), start, 0 if shifted else -1)
        recs = []
        for p, o in zip(preds, outs, strict=True):
            recs.append(Record(PREDICTIONS, json.dumps(p).encode(), "p", self.offset))
            recs.append(Record(OUTCOMES, json.dumps(o).encode(), "o", self.offset))
            self.offset += 1
        self.daemon._write(self.daemon.pipeline.process(recs, "mem"))

    def check(self) -> str:
        outcome = self.daemon.scheduled_check("m")
        return outcome.status

    def references(self) -> list[tuple[str, str]]:
        rows = self.daemon.store.rows(reference_profiles, reference_profiles.c.segment == "")
        return [(r["model_version"], r["source"]) for r in rows]


@pytest.mark.parametrize("per_version", [True, False])
def test_each_version_captures_its_own_reference(tmp_path: Path, per_version: bool) -> None:
    h = Harness(
        tmp_path,
        {"reference": {"capture_first": 200, "per_version": per_version}, "min_rows": 100},
    )
    if per_version:
        h.feed("v1", 100, 0)
        h.feed("v2", 100, 100)
        assert h.check() == "skipped"  # mixed and no reference yet: wait for one version
    h.feed("v1", 250, 200)
    assert h.check() == "captured"
    h.feed("v1", 150, 450)
    assert h.check() == "ok"
    # v2 sees other inputs (its features moved by 10): normal for v2 with its
    # own reference, drift against v1's.
    h.feed("v2", 250, 600, shifted=True)
    if per_version:
        assert h.check() == "captured"
        h.feed("v2", 150, 850, shifted=True)
        assert h.check() == "ok"
        h.feed("v1", 150, 1000)
        assert h.check() == "ok"  # v1 still judged against its own
        assert h.references() == [("v1", "captured"), ("v2", "captured")]
    else:
        assert h.check() == "failed"
        assert h.references() == [("", "captured")]
    h.daemon.close()


def _write_reference(path: Path, version: str, shifted: bool) -> None:
    preds, _ = events(version, 400, (1, 10), 0, 0 if shifted else -1)
    path.write_text("".join(json.dumps(p) + "\n" for p in preds))


def test_a_version_with_a_reference_file_of_its_own(tmp_path: Path) -> None:
    _write_reference(tmp_path / "ref.jsonl", "v1", shifted=False)
    _write_reference(tmp_path / "ref_v2.jsonl", "v2", shifted=True)
    h = Harness(
        tmp_path,
        {
            "reference": {"path": str(tmp_path / "ref.jsonl")},
            "version_references": {"v2": {"path": str(tmp_path / "ref_v2.jsonl")}},
            "min_rows": 100,
        },
    )
    h.feed("v1", 150, 0)
    assert h.check() == "ok"
    h.feed("v2", 150, 150, shifted=True)
    assert h.check() == "ok"  # against v2's own file
    h.feed("v3", 150, 300, shifted=True)
    assert h.check() == "failed"  # no reference of its own: the model's
    assert [(v, Path(src.split(":", 1)[-1]).name) for v, src in h.references()] == [
        ("", "ref.jsonl"),
        ("v2", "ref_v2.jsonl"),
    ]
    h.daemon.close()


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"reference": {"path": "r.jsonl", "per_version": True}}, "per_version goes with"),
        (
            {"reference": {"path": "r.jsonl"}, "version_references": {"v2": {"capture_first": 9}}},
            "version_references.v2: a version's own reference is a path or a query",
        ),
    ],
)
def test_per_version_settings_are_checked(
    tmp_path: Path, batch: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, "http://127.0.0.1:9/", model={"batch": batch})
