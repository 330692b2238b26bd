"""Rules: N signals within a window, cooldown per model, and the store's
cross-shard cooldown that keeps one drift to one decision."""

from __future__ import annotations

from pathlib import Path

from monitor.config import ConditionConfig, RuleConfig
from monitor.store import DecisionRow, Store, decisions, deliveries, make_engine
from triggers.base import Signal
from triggers.condition_rule import ConditionRule


def sig(
    t: float, model: str = "m", target: str = "score", detector: str = "adwin", pos: int = 0
) -> Signal:
    return Signal(
        f"{model}|{target}|{detector}|{pos or int(t)}",
        model,
        "v1",
        target,
        detector,
        "mean",
        0.5,
        pos or int(t),
        t,
    )


def rule(**over: object) -> ConditionRule:
    base: dict[str, object] = {
        "name": "r",
        "min_signals": 3,
        "window_seconds": 100.0,
        "cooldown_seconds": 1000.0,
        "actions": ["a"],
    }
    base.update(over)
    return ConditionRule(RuleConfig(**base))  # type: ignore[arg-type]


def test_fires_on_n_signals_within_window_once_per_cooldown() -> None:
    r = rule()
    assert r.observe(sig(0)) is None
    assert r.observe(sig(150)) is None  # the first one fell out of the window
    assert r.observe(sig(160)) is None
    d = r.observe(sig(170))
    assert d is not None
    assert [s.event_time for s in d.signals] == [150, 160, 170]
    assert d.actions == ("a",)
    for t in (180, 190, 200, 210):  # a storm of signals: cooldown holds
        assert r.observe(sig(t)) is None
    assert r.suppressed >= 1
    for t in (1200, 1210):
        assert r.observe(sig(t)) is None
    again = r.observe(sig(1220))
    assert again is not None and again.idempotency_key != d.idempotency_key


def test_filters_and_per_model_state() -> None:
    r = rule(min_signals=2, model="m", detectors=["adwin"], targets=["score"])
    assert r.observe(sig(0, detector="kswin")) is None
    assert r.observe(sig(1, target="error")) is None
    assert r.observe(sig(2, model="other")) is None
    assert r.observe(sig(3)) is None
    assert r.observe(sig(4)) is not None


def test_same_signals_same_key() -> None:
    a, b = rule(), rule()
    keys = []
    for r in (a, b):
        out = [r.observe(sig(t)) for t in (1, 2, 3)]
        keys.append(out[-1].idempotency_key)  # type: ignore[union-attr]
    assert keys[0] == keys[1]


def _row(key: str, t: float) -> DecisionRow:
    return DecisionRow(key, "r", "m", "v1", "warning", t, {"k": key}, [("action", "a")], 1000.0)


def test_store_cooldown_across_shards_and_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    one, two = Store(make_engine(url)), Store(make_engine(url))  # two processes' stores
    one.create_schema()
    first = one.write_batch(decs=[_row("k1", 5000.0)])
    assert first.decisions == ["k1"]
    # Another shard, another process: the same drift seen 10 s later.
    second = two.write_batch(decs=[_row("k2", 5010.0)])
    assert second.decisions == [] and second.suppressed == ["k2"]
    # Earlier in event time but within the cooldown: also held.
    assert two.write_batch(decs=[_row("k0", 4500.0)]).suppressed == ["k0"]
    # Replays of stored decisions do nothing at all.
    again = one.write_batch(decs=[_row("k1", 5000.0), _row("k2", 5010.0)])
    assert again.decisions == [] and again.suppressed == []
    # After the cooldown a new decision fires.
    assert two.write_batch(decs=[_row("k3", 6001.0)]).decisions == ["k3"]
    rows = {r["idempotency_key"]: r["outcome"] for r in one.rows(decisions)}
    assert rows == {"k1": "fired", "k2": "suppressed", "k0": "suppressed", "k3": "fired"}
    assert sorted(r["decision_key"] for r in one.rows(deliveries)) == ["k1", "k3"]


def test_silence_holds_decisions_until_expired(tmp_path: Path) -> None:
    now = [100.0]
    store = Store(make_engine(f"sqlite:///{tmp_path / 'd.db'}"), clock=lambda: now[0])
    store.create_schema()
    sid = store.add_silence("m", None, 50.0, 200.0, "deploying v2", "alice")
    assert store.write_batch(decs=[_row("k1", 5000.0)]).silenced == ["k1"]
    store.add_silence("other", "r", 0.0, 1e9, "not this model", "bob")
    now[0] = 150.0
    assert store.expire_silence(sid) is True
    assert store.expire_silence(sid) is False
    assert store.write_batch(decs=[_row("k2", 5000.0)]).decisions == ["k2"]
    assert sorted(r["decision_key"] for r in store.rows(deliveries)) == ["k2"]
    assert store.acknowledge("k2", "alice", "retraining") is True
    assert store.acknowledge("nope", "alice", "") is False


def test_all_of_conditions_and_prefix_patterns() -> None:
    r = ConditionRule(
        RuleConfig(
            name="r",
            cooldown_seconds=0.0,
            all=[
                ConditionConfig(
                    detectors=["adwin"], targets=["feature:*"], min_signals=2, window_seconds=100.0
                ),
                ConditionConfig(detectors=["drift:*"], window_seconds=100.0),
            ],
        )
    )
    assert r.observe(sig(1, target="feature:a")) is None
    assert r.observe(sig(2, target="feature:b")) is None  # first condition holds alone
    assert r.observe(sig(3, target="score")) is None  # "feature:*" does not match score
    d = r.observe(sig(4, target="feature:a", detector="drift:wasserstein"))
    assert d is not None and {s.detector for s in d.signals} == {"adwin", "drift:wasserstein"}


def test_any_of_conditions() -> None:
    r = ConditionRule(
        RuleConfig(
            name="r",
            any=[
                ConditionConfig(detectors=["ddm"], min_signals=1),
                ConditionConfig(detectors=["adwin"], min_signals=3),
            ],
        )
    )
    assert r.observe(sig(1)) is None and r.observe(sig(2)) is None
    assert r.observe(sig(3, detector="ddm")) is not None


def test_minimum_sample_size() -> None:
    r = rule(min_signals=1, min_events=1000)
    assert r.observe(sig(5, pos=999)) is None
    assert r.observe(sig(6, pos=1000)) is not None


def test_hysteresis_resolves_once_quiet() -> None:
    r = rule(min_signals=2, resolve_after_seconds=500.0)
    r.observe(sig(10))
    fired = r.observe(sig(20))
    assert fired is not None and fired.outcome == "fired"
    for t in (30, 300, 700):  # still drifting: active, no new decision
        assert r.observe(sig(t)) is None
    assert r.tick("m", 1000.0) is None  # last match at 700: quiet for only 300 s
    resolved = r.tick("m", 1300.0)
    assert resolved is not None and resolved.outcome == "resolved"
    assert resolved.resolves == fired.idempotency_key and resolved.actions == ()
    assert r.tick("m", 2000.0) is None
    r.observe(sig(2100))
    assert r.observe(sig(2110)) is not None  # can fire again after resolving


def test_persistence_n_of_last_m_checks() -> None:
    r = ConditionRule(
        RuleConfig(
            name="r",
            any=[
                ConditionConfig(detectors=["drift:*"], min_signals=2, of_last_checks=3),
            ],
        )
    )
    marker = sig(0, detector="check")
    fail = [sig(1, detector="drift:ks", target="feature:x")]
    assert r.observe_check("m", fail, marker) is None  # 1 of last 1
    assert r.observe_check("m", [], marker) is None  # 1 of last 2
    assert r.observe_check("m", [], marker) is None  # 1 of last 3
    assert r.observe_check("m", fail, marker) is None  # [ok, ok, fail]: 1 of 3
    d = r.observe_check("m", fail, marker)  # [ok, fail, fail]: 2 of 3
    assert d is not None


def test_store_max_concurrent_and_resolution(tmp_path: Path) -> None:
    store = Store(make_engine(f"sqlite:///{tmp_path / 'd.db'}"))
    store.create_schema()

    def row(key: str, t: float, outcome: str = "fired", resolves: str | None = None) -> DecisionRow:
        return DecisionRow(
            key,
            "r",
            "m",
            "v1",
            "warning",
            t,
            {"k": key},
            [("alert", "slack")] if outcome == "resolved" else [("action", "a")],
            0.0,
            outcome,
            resolves,
            1,
        )

    assert store.write_batch(decs=[row("k1", 10.0)]).decisions == ["k1"]
    held = store.write_batch(decs=[row("k2", 20.0)])  # one retrain in flight
    assert held.suppressed == ["k2"] and held.suppressed_by == {"k2": "max_concurrent"}
    (k2,) = store.rows(decisions, decisions.c.idempotency_key == "k2")
    assert k2["payload"]["suppressed_by"] == "max_concurrent"
    assert store.write_batch(decs=[row("k1r", 30.0, "resolved", "k1")]).resolved == ["k1r"]
    assert store.write_batch(decs=[row("k3", 40.0)]).decisions == ["k3"]
    assert [(d["decision_key"], d["kind"]) for d in store.rows(deliveries)] == [
        ("k1", "action"),
        ("k1r", "alert"),
        ("k3", "action"),
    ]


def test_daemon_applies_the_models_action_cooldown_and_retrain_limit(tmp_path: Path) -> None:
    """ModelConfig's action_cooldown_seconds / max_concurrent_retrains reach the
    store through Daemon._write, across rules; alert-only rules are not held."""
    from prometheus_client import CollectorRegistry

    from monitor.config import parse_config
    from monitor.daemon import Daemon
    from monitor.pipeline import BatchOutput
    from monitor.store import model_versions
    from triggers.base import Decision

    model = {"name": "m", "task": "classification", "features": {"x": "numeric"}}
    cfg = parse_config(
        {
            "storage": {"url": f"sqlite:///{tmp_path / 'd.db'}"},
            "models": [
                {**model, "action_cooldown_seconds": 600.0, "max_concurrent_retrains": 1},
                {**model, "name": "other"},
            ],
            "actions": [{"type": "command", "name": "retrain", "argv": ["true"]}],
            "alerts": [{"type": "log", "name": "log"}],
            "rules": [
                {"name": "drift", "cooldown_seconds": 0.0, "actions": ["retrain"]},
                {"name": "perf", "cooldown_seconds": 0.0, "actions": ["retrain"]},
                {"name": "notify", "cooldown_seconds": 0.0, "alerts": ["log"]},
            ],
        }
    )
    daemon = Daemon(cfg, registry=CollectorRegistry(), sources=[])
    daemon.store.create_schema()

    def decide(key: str, rule: str, t: float, model: str = "m") -> str:
        acts = ("retrain",) if rule != "notify" else ()
        alerts = ("log",) if rule == "notify" else ()
        d = Decision(key, rule, model, "v1", "warning", t, (), acts, alerts)
        daemon._write(BatchOutput(decisions=[d]))
        (r,) = daemon.store.rows(decisions, decisions.c.idempotency_key == key)
        return f"{r['outcome']}:{r['payload'].get('suppressed_by', '')}"

    assert decide("a", "drift", 1_000.0) == "fired:"
    assert decide("b", "perf", 1_300.0) == "suppressed:max_concurrent_retrains"
    assert decide("c", "notify", 1_300.0) == "fired:"
    assert decide("d", "drift", 1_000.0, model="other") == "fired:"  # no limits there
    assert decide("e", "drift", 1_010.0, model="other") == "fired:"
    # The retrain asked for by "a" completes: the limit frees, the cooldown holds.
    daemon.store.report_version("m", "v1", "active")
    daemon.store.report_version("m", "v2", "candidate", decision_key="a")
    assert decide("f", "perf", 1_300.0) == "suppressed:model_cooldown"
    assert decide("g", "perf", 1_600.0) == "fired:"
    assert len(daemon.store.rows(model_versions)) == 2
    sample = daemon.registry.get_sample_value(
        "driftd_decisions_total", {"rule": "perf", "model": "m", "outcome": "suppressed"}
    )
    assert sample == 2.0
    daemon.close()
