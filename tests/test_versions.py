"""New model versions: reported through the API, adopted as the reference, or
watched as candidates and rolled back (statistical test or a critical rule)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from connectors.base import OUTCOMES, PREDICTIONS, Record
from monitor.api import Api
from monitor.config import DriftdConfig, parse_config
from monitor.daemon import Daemon
from monitor.store import Store, decisions, make_engine, model_versions, reference_profiles
from monitor.versions import (
    compare,
    look_alpha,
    look_threshold,
    looks_due,
    sequential_look,
    spent_alpha,
)
from tests.helpers import Receiver, start_receiver

TOKEN = "t0ken-for-tests-only"
ENV = {"DRIFTD_TEST_API_TOKEN": TOKEN, "DRIFTD_TEST_KEY": "signing-key"}
AUTH = {"authorization": f"Bearer {TOKEN}"}
T0 = 1767225600.0


def config(tmp_path: Path, url: str, **over: Any) -> DriftdConfig:
    model: dict[str, Any] = {
        "name": "m",
        "task": "classification",
        "features": {"x": "numeric"},
        "versions": {"min_outcomes": 500, "rollback_margin": 0.02, "rollback_actions": ["rb"]},
    }
    model.update(over.pop("model", {}))
    raw: dict[str, Any] = {
        "storage": {"url": f"sqlite:///{tmp_path / 'd.db'}"},
        "http": {"bind": "127.0.0.1:0", "api_token": "${DRIFTD_TEST_API_TOKEN}"},
        "sources": [
            {
                "type": "file",
                "name": "f",
                "predictions": str(tmp_path / "p.jsonl"),
                "outcomes": str(tmp_path / "o.jsonl"),
            }
        ],
        "models": [model],
        "actions": [
            {
                "type": "webhook",
                "name": "rb",
                "url": url,
                "signing_key": "${DRIFTD_TEST_KEY}",
                "backoff_seconds": 0.1,
            }
        ],
        **over,
    }
    return parse_config(raw, environ=ENV)


Events = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def events(
    version: str, n: int, error_every: tuple[int, int], start: int, shift_at: int = -1
) -> Events:
    """``n`` predictions of ``version`` (x jumps by 10 from ``shift_at`` on),
    ``error_every[0]`` of each ``error_every[1]`` wrong."""
    preds: list[dict[str, Any]] = []
    outs: list[dict[str, Any]] = []
    for i in range(n):
        k = start + i
        x = (i % 7) * 0.1 + (10.0 if 0 <= shift_at <= i else 0.0)
        wrong = i % error_every[1] < error_every[0]
        ts = T0 + k
        pid = f"p{k}"
        preds.append(
            {
                "model": "m",
                "model_version": version,
                "prediction_id": pid,
                "timestamp": ts,
                "features": {"x": x},
                "prediction": "a",
            }
        )
        label = "b" if wrong else "a"
        outs.append({"model": "m", "prediction_id": pid, "timestamp": ts + 0.5, "label": label})
    return preds, outs


def write(tmp_path: Path, *parts: Events) -> None:
    for name, idx in (("p.jsonl", 0), ("o.jsonl", 1)):
        with open(tmp_path / name, "w") as f:
            for part in parts:
                for e in part[idx]:
                    f.write(json.dumps(e) + "\n")


def report(api: Api, version: str, headers: dict[str, str] = AUTH, model: str = "m") -> Any:
    body = json.dumps({"version": version, "note": "retrained"}).encode()
    status, _, out = api.handle("POST", f"/api/v1/models/{model}/versions", {}, headers, body)
    return status, json.loads(out)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec, server = start_receiver()
    yield rec
    server.shutdown()


def run(cfg: DriftdConfig) -> Store:
    daemon = Daemon(cfg, registry=CollectorRegistry())
    daemon.run(serve_http=False)
    return Store(make_engine(cfg.storage.url))


def api_for(cfg: DriftdConfig) -> Api:
    store = Store(make_engine(cfg.storage.url))
    store.create_schema()
    return Api(store, cfg)


def test_report_version_needs_token_404s_unknown_model_and_is_idempotent(
    tmp_path: Path, receiver: Receiver
) -> None:
    api = api_for(config(tmp_path, receiver.url))
    status, out = report(api, "v1", headers={})
    assert status == 401
    status, out = report(api, "v1", headers={"authorization": "Bearer wrong"})
    assert status == 401
    assert report(api, "v1", model="nope")[0] == 404
    status, out = report(api, "v1")
    assert status == 201 and out["status"] == "active" and out["previous_version"] is None
    status, out = report(api, "v2")
    assert (status, out["status"], out["previous_version"]) == (201, "candidate", "v1")
    assert not out["replayed"]
    status, again = report(api, "v2")
    assert status == 201 and again["replayed"] and again["reported_at"] == out["reported_at"]
    assert len(api._store.rows(model_versions)) == 2
    assert "/api/v1/models/{model}/versions" in api.openapi()["paths"]


@pytest.mark.parametrize("v2_errors, fires", [((3, 10), True), ((1, 10), False)])
def test_rollback_when_the_candidate_is_worse_once(
    tmp_path: Path, receiver: Receiver, v2_errors: tuple[int, int], fires: bool
) -> None:
    cfg = config(tmp_path, receiver.url)
    write(tmp_path, events("v1", 2000, (1, 10), 0), events("v2", 2000, v2_errors, 2000))
    api = api_for(cfg)
    report(api, "v1")
    report(api, "v2")
    store = run(cfg)
    rollbacks = store.rows(decisions, decisions.c.rule == "rollback")
    (row,) = store.rows(model_versions, model_versions.c.version == "v2")
    if not fires:
        # 2000 outcomes each: looks 0-2 (500, 1000, 2000) passed, so with the
        # default promote_after_looks = 3 the candidate is promoted.
        assert rollbacks == [] and row["status"] == "active" and row["looks"] == 3
        assert row["promoted_at"] is not None and "look 0-2: two_proportion_z" in row["note"]
        (v1,) = store.rows(model_versions, model_versions.c.version == "v1")
        assert v1["status"] == "retired"
        assert receiver.wait_for(1, timeout=0.5) == []
        return
    assert len(rollbacks) == 1 and rollbacks[0]["severity"] == "critical"
    assert row["status"] == "rolled_back" and row["rollback_key"] == rollbacks[0]["idempotency_key"]
    (sent,) = receiver.wait_for(1)
    body: Any = sent.json()
    assert body["rule"] == "rollback" and body["model_version"] == "v2"
    assert body["rollback"]["to_version"] == "v1" and body["rollback"]["p_value"] < 0.05
    # The look that rolled it back: the first (2000 outcomes reached looks 0-2 at
    # once; the earliest's alpha, 0.05 / 2, is the one tested).
    assert body["rollback"]["look"] == 0 and body["rollback"]["alpha_look"] == 0.025
    assert body["rollback"]["n"] == 2000 and body["rollback"]["test"] == "two_proportion_z"
    assert row["looks"] == 1 and "look 0: two_proportion_z" in row["note"]
    assert row["note"].endswith(": worse") and row["note"].startswith("retrained\n")
    assert sent.headers["Idempotency-Key"] == rollbacks[0]["idempotency_key"]
    # A restart (nothing new to read) decides and sends nothing more.
    store = run(cfg)
    assert len(store.rows(decisions, decisions.c.rule == "rollback")) == 1
    assert len(receiver.wait_for(2, timeout=1.0)) == 1


def test_critical_rule_on_a_candidate_rolls_it_back(tmp_path: Path, receiver: Receiver) -> None:
    cfg = config(
        tmp_path,
        receiver.url,
        model={"detectors": [{"type": "adwin", "on": ["feature:x"]}]},
        rules=[{"name": "crit", "model": "m", "severity": "critical", "detectors": ["adwin"]}],
    )
    write(tmp_path, events("v1", 1500, (1, 10), 0), events("v2", 1500, (1, 10), 1500, 700))
    api = api_for(cfg)
    report(api, "v1")
    report(api, "v2")
    store = run(cfg)
    fired = store.rows(decisions, decisions.c.outcome == "fired")
    assert {d["rule"] for d in fired} == {"crit", "rollback"}
    (rb,) = [d for d in fired if d["rule"] == "rollback"]
    assert "critical rule 'crit'" in rb["payload"]["rollback"]["reason"]
    assert store.rows(model_versions, model_versions.c.version == "v2")[0]["status"] == (
        "rolled_back"
    )
    assert len(receiver.wait_for(1)) == 1


def test_adopt_reference_from_the_new_versions_first_events(
    tmp_path: Path, receiver: Receiver
) -> None:
    batch = {"reference": {"capture_first": 200}, "min_rows": 100}
    versions = {"on_new_version": "adopt_reference", "adopt_first": 300}
    cfg = config(tmp_path, receiver.url, model={"batch": batch, "versions": versions})
    api = api_for(cfg)
    daemon = Daemon(cfg, registry=CollectorRegistry(), sources=[])
    offset = 0

    def feed(version: str, n: int, start: int) -> None:
        nonlocal offset
        preds, outs = events(version, n, (1, 10), start)
        recs = []
        for p, o in zip(preds, outs, strict=True):
            recs.append(Record(PREDICTIONS, json.dumps(p).encode(), "p", offset))
            recs.append(Record(OUTCOMES, json.dumps(o).encode(), "o", offset))
            offset += 1
        daemon._write(daemon.pipeline.process(recs, "mem"))

    def check() -> str:
        return daemon.scheduled_check("m").status

    report(api, "v1")
    feed("v1", 400, 0)
    assert check() == "captured"  # the configured capture: the first reference
    assert report(api, "v2")[1]["status"] == "active"  # adopt mode: active at once
    feed("v1", 100, 400)
    feed("v2", 150, 500)
    assert check() in ("ok", "failed")  # mixed versions: judged and closed as usual
    feed("v2", 200, 650)
    assert check() == "skipped"  # only v2, but fewer than adopt_first
    feed("v2", 200, 850)
    assert check() == "captured"
    refs = daemon.store.rows(reference_profiles, reference_profiles.c.segment == "")
    assert [r["source"] for r in refs] == ["captured", "adopted:v2"]
    assert refs[-1]["n_rows"] == 300
    # Stored for v2: v2's windows use it, v1's (after a rollback) keep theirs.
    assert refs[-1]["model_version"] == "v2"
    assert daemon.store.load_reference("m", "v2")["source"] == "adopted:v2"  # type: ignore[index]
    assert daemon.store.load_reference("m", "v1")["source"] == "captured"  # type: ignore[index]
    (v2,) = daemon.store.rows(model_versions, model_versions.c.version == "v2")
    assert v2["reference_adopted_at"] is not None
    feed("v2", 200, 1050)
    assert check() in ("ok", "failed", "skipped")  # no second adoption
    assert len(daemon.store.rows(reference_profiles, reference_profiles.c.segment == "")) == 2
    daemon.close()


def test_compare_regression_welch_and_classification_z() -> None:
    # |errors| of mean 1 vs mean 2, both with variance ~1, 1000 each.
    prev = (1000, 1000.0, 2000.0)
    cand = (1000, 2000.0, 5000.0)
    assert compare("regression", cand, prev, 0.1, 0.05).worse
    assert not compare("regression", prev, cand, 0.1, 0.05).worse
    same = compare("classification", (1000, 100.0, 100.0), (1000, 100.0, 100.0), 0.0, 0.05)
    assert not same.worse and same.p_value == pytest.approx(0.5)


def test_versions_config_is_validated(tmp_path: Path) -> None:
    from monitor.config import ConfigError

    with pytest.raises(ConfigError, match=r"needs \[models\.batch\]"):
        config(tmp_path, "http://x", model={"versions": {"on_new_version": "adopt_reference"}})
    with pytest.raises(ConfigError, match=r"rollback_actions\[0\]: unknown action 'nope'"):
        config(tmp_path, "http://x", model={"versions": {"rollback_actions": ["nope"]}})


# -- the group-sequential schedule ---------------------------------------------------------


def test_look_schedule_and_spent_alpha() -> None:
    assert [look_threshold(500, k) for k in range(4)] == [500, 1000, 2000, 4000]
    assert [look_alpha(0.05, k) for k in range(3)] == [0.025, 0.0125, 0.00625]
    for looks in range(1, 12):
        spent = spent_alpha(0.05, looks)
        assert spent == pytest.approx(0.05 * (1 - 2**-looks)) and spent < 0.05
    assert [looks_due(500, n) for n in (0, 499, 500, 999, 1000, 3999, 4000)] == [
        0,
        0,
        1,
        1,
        2,
        3,
        4,
    ]
    same = (1000, 100.0, 100.0)
    assert sequential_look("classification", same, same, 0.0, 0.05, 500, 2) is None
    look = sequential_look("classification", same, same, 0.0, 0.05, 500, 0)
    assert look is not None and (look.first, look.last, look.looks) == (0, 1, 2)
    assert look.alpha == 0.025 and look.spent == pytest.approx(0.0375)
    assert look.describe().startswith("look 0-1: two_proportion_z")


def _simulate(task: str, worse_by: float, seed: int, sims: int = 400, looks: int = 6) -> float:
    """The share of ``sims`` candidates rolled back over ``looks`` looks (the
    candidate's error is ``worse_by`` above the previous version's)."""
    rng = np.random.default_rng(seed)
    m = 100
    n_max = look_threshold(m, looks - 1)
    rolled_back = 0
    for _ in range(sims):
        if task == "classification":
            prev = (rng.random(n_max) < 0.2).astype(float)
            cand = (rng.random(n_max) < 0.2 + worse_by).astype(float)
        else:
            prev = np.abs(rng.normal(0.0, 1.0, n_max))
            cand = np.abs(rng.normal(0.0, 1.0, n_max)) + worse_by
        done = 0
        for k in range(looks):
            n = look_threshold(m, k)
            c = (n, float(cand[:n].sum()), float((cand[:n] ** 2).sum()))
            p = (n, float(prev[:n].sum()), float((prev[:n] ** 2).sum()))
            look = sequential_look(task, c, p, 0.0, 0.05, m, done)
            assert look is not None and look.first == k
            if look.comparison.worse:
                rolled_back += 1
                break
            done = look.looks
    return rolled_back / sims


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_equal_candidate_is_rolled_back_at_most_alpha_of_the_time(task: str) -> None:
    """400 seeded candidates equal to the previous version, 6 looks each (100 to
    3200 outcomes): rolled back at most alpha plus three binomial standard errors
    of the time (testing at alpha at every look would be ~0.18)."""
    alpha, sims = 0.05, 400
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / sims)
    assert _simulate(task, 0.0, seed=20260101, sims=sims) <= bound


@pytest.mark.parametrize("task, worse_by", [("classification", 0.1), ("regression", 0.3)])
def test_clearly_worse_candidate_is_rolled_back(task: str, worse_by: float) -> None:
    assert _simulate(task, worse_by, seed=7, sims=50) == 1.0
    clear = (1000, 300.0, 300.0), (1000, 100.0, 100.0)
    look = sequential_look("classification", *clear, 0.02, 0.05, 500, 1)
    assert look is not None and look.comparison.worse and look.looks == 2


# -- looks in the daemon: persisted, corrected, promoted ---------------------------------------


class Feeder:
    """Feeds events into a daemon's pipeline and stores what it derives."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.offset = 0

    def __call__(self, *parts: Events) -> None:
        recs = []
        for preds, outs in parts:
            for p, o in zip(preds, outs, strict=True):
                recs.append(Record(PREDICTIONS, json.dumps(p).encode(), "p", self.offset))
                recs.append(Record(OUTCOMES, json.dumps(o).encode(), "o", self.offset))
                self.offset += 1
        self.daemon._write(self.daemon.pipeline.process(recs, "mem"))


def test_looks_are_made_once_survive_a_restart_and_promote(
    tmp_path: Path, receiver: Receiver
) -> None:
    versions = {"min_outcomes": 100, "rollback_actions": ["rb"], "promote_after_looks": 3}
    cfg = config(tmp_path, receiver.url, model={"versions": versions})
    api = api_for(cfg)
    report(api, "v1")
    report(api, "v2")
    store = api._store

    def looks() -> tuple[int, str]:
        row = store.model_version("m", "v2")
        assert row is not None
        return row["looks"], row["status"]

    one = Daemon(cfg, registry=CollectorRegistry(), sources=[])
    feed = Feeder(one)
    feed(events("v1", 400, (1, 10), 0), events("v2", 99, (1, 10), 400))
    one._check_versions()
    assert looks() == (0, "candidate")  # 99 < min_outcomes
    feed(events("v2", 1, (1, 10), 499))
    one._check_versions()
    assert looks() == (1, "candidate")
    one._check_versions()  # no new data: no new look
    assert looks() == (1, "candidate")
    one.close()
    # A restart (here: the same events again, as from an older checkpoint)
    # does not repeat look 0.
    two = Daemon(cfg, registry=CollectorRegistry(), sources=[])
    feed = Feeder(two)
    feed(events("v1", 400, (1, 10), 0), events("v2", 100, (1, 10), 400))
    two._check_versions()
    assert looks() == (1, "candidate")
    feed(events("v2", 100, (1, 10), 500))
    two._check_versions()
    assert looks() == (2, "candidate")
    feed(events("v2", 200, (1, 10), 600))
    two._check_versions()
    assert looks() == (3, "active")  # passed promote_after_looks looks
    v1, v2 = store.model_version("m", "v1"), store.model_version("m", "v2")
    assert v1 is not None and v2 is not None and v1["status"] == "retired"
    assert v2["promoted_at"] is not None
    assert [line.split(":")[0] for line in v2["note"].splitlines()] == [
        "retrained",
        "look 0",
        "look 1",
        "look 2",
    ]
    samples = two.registry.get_sample_value("driftd_version_promotions_total", {"model": "m"})
    assert samples == 1.0
    feed(events("v2", 400, (5, 10), 800))  # now much worse, but promoted: not compared
    two._check_versions()
    assert store.rows(decisions, decisions.c.rule == "rollback") == []
    two.close()


def test_a_look_tests_at_its_spent_alpha_and_rolls_back_with_the_look(
    tmp_path: Path, receiver: Receiver
) -> None:
    versions = {"min_outcomes": 100, "rollback_actions": ["rb"], "rollback_margin": 0.0}
    cfg = config(tmp_path, receiver.url, model={"versions": versions})
    api = api_for(cfg)
    report(api, "v1")
    report(api, "v2")
    daemon = Daemon(cfg, registry=CollectorRegistry(), sources=[])
    feed = Feeder(daemon)
    # 19 errors in 100 against 10 in 100: p ~ 0.034, below alpha = 0.05 (testing
    # at alpha at every checkpoint would roll back here) but not below 0.025.
    feed(events("v1", 100, (1, 10), 0), events("v2", 100, (19, 100), 200))
    tallies = daemon.pipeline.error_tallies("m")
    p = compare("classification", tallies["v2"], tallies["v1"], 0.0, 0.05).p_value
    assert 0.025 < p < 0.05
    daemon._check_versions()
    row = daemon.store.model_version("m", "v2")
    assert row is not None and (row["looks"], row["status"]) == (1, "candidate")
    assert "look 0: two_proportion_z" in row["note"] and row["note"].endswith("not worse")
    # Twice the data, the same excess: look 1 (alpha 0.0125) rolls it back.
    feed(events("v1", 100, (1, 10), 100), events("v2", 100, (19, 100), 300))
    daemon._check_versions()
    (rb,) = daemon.store.rows(decisions, decisions.c.rule == "rollback")
    detail = rb["payload"]["rollback"]
    assert (detail["look"], detail["looks"], detail["n"]) == (1, 2, 200)
    assert detail["alpha_look"] == 0.0125 and detail["alpha_spent"] == pytest.approx(0.0375)
    assert detail["p_value"] < 0.0125 and detail["alpha"] == 0.05
    row = daemon.store.model_version("m", "v2")
    assert row is not None and (row["looks"], row["status"]) == (2, "rolled_back")
    daemon.close()
