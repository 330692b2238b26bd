"""``driftd replay``: the whole decision engine over historical events, acting on nothing.

A backtest for tuning detectors and rules: the pipeline, rules, cooldowns and
the store's decision logic run as in production, against a throwaway SQLite
database; no action or alert is sent. The report says what would have fired,
when (event time) and why.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry

from monitor.config import DriftdConfig, FileSourceConfig, StorageConfig
from monitor.store import decisions, signals


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def backtest(config: DriftdConfig, predictions: str | None, outcomes: str | None) -> str:
    """Replay the files through ``config``'s models and rules; return the report."""
    from monitor.daemon import Daemon

    with tempfile.TemporaryDirectory(prefix="driftd-replay-") as tmp:
        dry = msgspec.structs.replace(
            config,
            storage=StorageConfig(url=f"sqlite:///{Path(tmp) / 'replay.db'}"),
            sources=[FileSourceConfig(name="replay", predictions=predictions, outcomes=outcomes)],
        )
        daemon = Daemon(dry, registry=CollectorRegistry())
        daemon.run(serve_http=False, dry_run=True)
        try:
            sig = daemon.store.rows(signals, order_by=signals.c.event_time)
            decs = daemon.store.rows(decisions, order_by=decisions.c.event_time)
        finally:
            daemon.engine.dispose()
    totals = daemon.pipeline.totals()
    counted = ", ".join(f"{k.partition(':')[2]}={v}" for k, v in sorted(totals.items()))
    lines = [f"replayed {counted}"]
    lines.append(f"{len(sig)} drift signal(s):")
    for s in sig:
        lines.append(
            f"  {_when(s['event_time'])}  {s['model']} {s['model_version']}  {s['target']:<24} "
            f"{s['detector']:<14} {s['statistic']}={_num(s['value'])} at event {s['position']}"
        )
    lines.append(f"{len(decs)} decision(s) (dry run: nothing was sent):")
    for d in decs:
        p = d["payload"]
        would = ", ".join(
            [*(f"action {a}" for a in p["actions"]), *(f"alert {a}" for a in p["alerts"])]
        )
        lines.append(
            f"  {_when(d['event_time'])}  rule {d['rule']} {d['outcome']} for {d['model']} "
            f"{d['model_version']} on {len(p['signals'])} signal(s)"
            + (f"; would run {would}" if d["outcome"] == "fired" and would else "")
        )
    return "\n".join(lines)
