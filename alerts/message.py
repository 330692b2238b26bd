"""The readable text (and Slack Block Kit) of a decision."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _signal_line(s: Mapping[str, Any]) -> str:
    value = s.get("value")
    stat = f"{s['statistic']}={value:.4g}" if isinstance(value, int | float) else s["statistic"]
    return f"{s['target']} by {s['detector']} ({stat}) at event {s['position']}, {_when(s['event_time'])}"


def summary(decision: Mapping[str, Any]) -> str:
    """One paragraph a person can act on.

    >>> print(summary({"rule": "retrain", "severity": "warning", "model": "credit",
    ...     "model_version": "v1", "event_time": 0, "actions": ["retrain-webhook"],
    ...     "signals": [{"target": "score", "detector": "adwin", "statistic": "mean",
    ...                  "value": 0.61, "position": 120, "event_time": 0}]}))
    [WARNING] drift on credit v1 (rule retrain) at 1970-01-01 00:00:00 UTC
    - score by adwin (mean=0.61) at event 120, 1970-01-01 00:00:00 UTC
    action: retrain-webhook
    """
    if decision.get("outcome") == "resolved":
        return (
            f"[RESOLVED] drift on {decision['model']} {decision['model_version']} "
            f"(rule {decision['rule']}): no matching signal since; resolved at "
            f"{_when(decision['event_time'])}"
        )
    lines = [
        f"[{decision['severity'].upper()}] drift on {decision['model']} {decision['model_version']} "
        f"(rule {decision['rule']}) at {_when(decision['event_time'])}"
    ]
    lines += [f"- {_signal_line(s)}" for s in decision["signals"]]
    reports = sorted({s["report"] for s in decision["signals"] if s.get("report")})
    lines += [f"report: {r}" for r in reports]
    actions = decision.get("actions") or []
    lines.append(f"action: {', '.join(actions)}" if actions else "action: none (alert only)")
    return "\n".join(lines)


def blocks(decision: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Slack Block Kit blocks for a decision."""
    if decision.get("outcome") == "resolved":
        return [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f":white_check_mark: {summary(decision)}"},
            }
        ]
    header = f"Drift: {decision['model']} {decision['model_version']} ({decision['severity']})"
    fields = [
        {"type": "mrkdwn", "text": f"*Model*\n{decision['model']}"},
        {"type": "mrkdwn", "text": f"*Version*\n{decision['model_version']}"},
        {"type": "mrkdwn", "text": f"*Rule*\n{decision['rule']}"},
        {"type": "mrkdwn", "text": f"*When*\n{_when(decision['event_time'])}"},
    ]
    drifted = "\n".join(f"• {_signal_line(s)}" for s in decision["signals"])
    actions = ", ".join(decision.get("actions") or []) or "none (alert only)"
    reports = sorted({s["report"] for s in decision["signals"] if s.get("report")})
    context = f"*Action:* {actions}" + "".join(f"  ·  *Report:* {r}" for r in reports)
    return [
        {"type": "header", "text": {"type": "plain_text", "text": header[:150]}},
        {"type": "section", "fields": fields},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*What drifted*\n{drifted}"[:3000]},
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
    ]
