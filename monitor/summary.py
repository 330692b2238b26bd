"""The end-of-run report printed by ``driftd run`` (and ``driftd status``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from monitor.store import Store, dead_letters, decisions, deliveries, signals


def render_summary(store: Store, totals: Mapping[str, int], join: Mapping[str, int]) -> str:
    lines = ["", "driftd summary", "=============="]
    events = {k.split(":", 1)[1]: v for k, v in totals.items() if k.startswith("events:")}
    invalid = {k.split(":", 1)[1]: v for k, v in totals.items() if k.startswith("invalid:")}
    lines.append(
        "events (model:stream): "
        + (", ".join(f"{k}={v}" for k, v in sorted(events.items())) or "none")
    )
    lines.append(
        "invalid (model:stream): "
        + (", ".join(f"{k}={v}" for k, v in sorted(invalid.items())) or "none")
    )
    if join:
        lines.append("join: " + ", ".join(f"{k}={v}" for k, v in sorted(join.items())))
    sig_rows = store.rows(signals, order_by=signals.c.id)
    lines.append(f"drift signals: {len(sig_rows)}")
    by_target = Counter(
        (r["model"], r["model_version"], r["target"], r["detector"]) for r in sig_rows
    )
    first: dict[tuple[str, ...], int] = {}
    for r in sig_rows:
        first.setdefault(
            (r["model"], r["model_version"], r["target"], r["detector"]), r["position"]
        )
    for key, n in sorted(by_target.items(), key=lambda kv: first[kv[0]]):
        lines.append(
            f"  {key[0]} {key[1]} {key[2]:<28} {key[3]:<14} x{n:<4} first at event {first[key]}"
        )
    dec_rows = store.rows(decisions, order_by=decisions.c.id)
    by_outcome = Counter(d["outcome"] for d in dec_rows)
    lines.append(
        f"decisions: {len(dec_rows)} ({', '.join(f'{k} {v}' for k, v in sorted(by_outcome.items())) or 'none'})"
    )
    sent: dict[str, list[dict[str, object]]] = {}
    for row in store.rows(deliveries, order_by=deliveries.c.id):
        sent.setdefault(row["decision_key"], []).append(row)
    for d in dec_rows:
        lines.append(
            f"  {d['idempotency_key']} {d['outcome']}: rule={d['rule']} model={d['model']} "
            f"{d['model_version']} ({d['severity']}) on {len(d['payload'].get('signals', []))} signal(s)"
        )
        for row in sent.get(d["idempotency_key"], []):
            lines.append(
                f"    {row['kind']} {row['target']}: {row['status']} after {row['attempts']} attempt(s)"
                + (f" - {row['last_error']}" if row["last_error"] else "")
            )
    dl = Counter(r["reason_code"] for r in store.rows(dead_letters))
    lines.append(
        "dead letters: " + (", ".join(f"{k}={v}" for k, v in sorted(dl.items())) or "none")
    )
    return "\n".join(lines)
