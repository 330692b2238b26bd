"""New model versions: comparing a candidate with the previous version, and rollback.

The pipeline keeps, per model version and shard, the count, sum and sum of
squares of the per-event errors of joined outcomes (see
``pipeline.VersionState``); the daemon merges them across its shards at
checkpoint time and asks :func:`sequential_look` whether a candidate is worse
than the version it replaced.

Testing the growing tallies at every checkpoint would inflate the false
rollback rate, so the comparison is group-sequential: look k (k = 0, 1, ...)
happens once, when both versions first have ``min_outcomes * 2**k`` joined
outcomes, and tests at ``alpha / 2**(k+1)`` (Bonferroni alpha spending: all
looks together spend less than ``alpha``). The number of looks done is stored
per version, so a restart neither repeats nor skips one.

A rollback is a decision of rule ``"rollback"`` with a key derived from model
and version only, so it is stored, and its actions sent, once per candidate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from monitor.store import ROLLBACK_RULE as ROLLBACK_RULE
from monitor.store import DecisionRow
from triggers.base import idempotency_key

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


def look_threshold(min_outcomes: int, k: int) -> int:
    """Joined outcomes each version needs for look ``k``."""
    return min_outcomes * 2**k


def look_alpha(alpha: float, k: int) -> float:
    """The significance level of look ``k``."""
    return alpha / 2 ** (k + 1)


def spent_alpha(alpha: float, looks: int) -> float:
    """What ``looks`` looks spend together: alpha * (1 - 2**-looks) < alpha."""
    return sum(look_alpha(alpha, k) for k in range(looks))


def looks_due(min_outcomes: int, n: int) -> int:
    """How many looks ``n`` outcomes (the smaller version's) have reached."""
    k = 0
    while look_threshold(min_outcomes, k) <= n:
        k += 1
    return k


@dataclass(frozen=True, slots=True)
class Look:
    """One test of the schedule. When a checkpoint comes late and looks
    ``first`` to ``last`` are due at once, one test on the same data stands for
    all of them at the level of ``first``, the largest (tested one after the
    other, the later ones could not reject what ``first`` did not)."""

    first: int
    last: int
    n: int  # min(n_candidate, n_previous)
    alpha: float  # look_alpha(rollback_alpha, first)
    spent: float  # alpha spent by all looks up to ``last``
    comparison: Comparison

    @property
    def looks(self) -> int:
        """Looks done after this one (a rollback stops at ``first``)."""
        return (self.first if self.comparison.worse else self.last) + 1

    def detail(self) -> dict[str, Any]:
        return {
            **asdict(self.comparison),
            "look": self.first,
            "looks": self.looks,
            "n": self.n,
            "alpha_look": self.alpha,
            "alpha_spent": self.spent,
        }

    def describe(self) -> str:
        c = self.comparison
        last = self.looks - 1
        span = f"{self.first}" if last == self.first else f"{self.first}-{last}"
        verdict = "worse" if c.worse else "not worse"
        return (
            f"look {span}: {c.test} statistic={c.statistic:.4g} p={c.p_value:.4g} "
            f"alpha_k={self.alpha:.4g} n={self.n} error={c.candidate_error:.4g} "
            f"vs {c.previous_error:.4g}: {verdict}"
        )


def sequential_look(
    task: str,
    cand: Tally,
    prev: Tally,
    margin: float,
    alpha: float,
    min_outcomes: int,
    done: int,
) -> Look | None:
    """The next look of the schedule once it is due (``done`` looks were made
    before), or None while it is not."""
    n = min(cand[0], prev[0])
    due = looks_due(min_outcomes, n)
    if due <= done:
        return None
    a = look_alpha(alpha, done)
    cmp = compare(task, cand, prev, margin, a)
    last = done if cmp.worse else due - 1
    return Look(done, due - 1, n, a, spent_alpha(alpha, last + 1), cmp)


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
