"""New model versions: comparing a candidate with the previous version, and rollback.

The pipeline keeps, per model version and shard, the count, sum and sum of
squares of the per-event errors of joined outcomes (see
``pipeline.VersionState``); the daemon merges them across its shards at
checkpoint time and asks :func:`compare` whether a candidate is worse than the
version it replaced. A rollback is a decision of rule ``"rollback"`` with a key
derived from model and version only, so it is stored, and its actions sent,
once per candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from monitor.store import DecisionRow
from triggers.base import idempotency_key

ROLLBACK_RULE = "rollback"

# (joined outcomes, error sum, error sum of squares)
Tally = tuple[int, float, float]


@dataclass(frozen=True, slots=True)
class Comparison:
    test: str  # "two_proportion_z" or "welch_t"
    candidate_error: float
    previous_error: float
    statistic: float
    p_value: float
    worse: bool  # worse by more than the margin, at the configured alpha


def compare(task: str, cand: Tally, prev: Tally, margin: float, alpha: float) -> Comparison:
    """One-sided test of H0: error(candidate) - error(previous) <= margin.

    Classification (0/1 errors): a two-proportion z-test on the error rates
    (unpooled variance, so that a non-zero margin is tested correctly).
    Regression: Welch's t-test on the absolute errors, from the sums."""
    from scipy import stats

    n1, s1, q1 = cand
    n0, s0, q0 = prev
    m1, m0 = s1 / n1, s0 / n0
    diff = m1 - m0 - margin
    if task == "classification":
        test = "two_proportion_z"
        se = math.sqrt(m1 * (1 - m1) / n1 + m0 * (1 - m0) / n0)
        stat = diff / se if se > 0 else math.copysign(math.inf, diff) if diff else 0.0
        p = float(stats.norm.sf(stat))
    else:
        test = "welch_t"
        v1 = max(q1 - n1 * m1 * m1, 0.0) / (n1 - 1) if n1 > 1 else 0.0
        v0 = max(q0 - n0 * m0 * m0, 0.0) / (n0 - 1) if n0 > 1 else 0.0
        a, b = v1 / n1, v0 / n0
        se = math.sqrt(a + b)
        if se > 0:
            stat = diff / se
            dof = (a + b) ** 2 / (
                (a * a / (n1 - 1) if n1 > 1 else 0.0) + (b * b / (n0 - 1) if n0 > 1 else 0.0)
            )
            p = float(stats.t.sf(stat, dof))
        else:
            stat = math.copysign(math.inf, diff) if diff else 0.0
            p = 0.0 if diff > 0 else 1.0
    return Comparison(test, m1, m0, stat, p, diff > 0 and p < alpha)


def rollback_key(model: str, version: str) -> str:
    return idempotency_key(ROLLBACK_RULE, model, version)


def rollback_row(
    model: str,
    version: str,
    previous: str | None,
    actions: list[str],
    event_time: float,
    reason: str,
    detail: dict[str, Any],
) -> DecisionRow:
    """The rollback decision of ``model``'s candidate ``version`` (critical,
    no cooldown), with its actions as outbox deliveries."""
    key = rollback_key(model, version)
    payload = {
        "decision_id": key,
        "idempotency_key": key,
        "outcome": "fired",
        "resolves": None,
        "rule": ROLLBACK_RULE,
        "model": model,
        "model_version": version,
        "severity": "critical",
        "event_time": event_time,
        "signals": [],
        "actions": list(actions),
        "alerts": [],
        "rollback": {"from_version": version, "to_version": previous, "reason": reason, **detail},
    }
    return DecisionRow(
        key,
        ROLLBACK_RULE,
        model,
        version,
        "critical",
        event_time,
        payload,
        [("action", a) for a in actions],
    )
