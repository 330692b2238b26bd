"""Contracts for decisions and actions.

A :class:`Rule` turns drift signals into decisions. It is a pure state
machine on event time: the same signals give the same decisions, with the
same idempotency keys, which is what lets a replay after a crash find the
decision already stored and send nothing twice.

An :class:`Action` carries a decision out (a retraining webhook, a command).
Actions are called by the outbox dispatcher, never on the event path:
``deliver`` may block up to its timeout and must be safe to repeat for one
idempotency key (at-least-once delivery; receivers drop duplicates by key).
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Signal:
    """One drift detection by one streaming detector."""

    key: str
    model: str
    model_version: str
    target: str  # "feature:income", "score", "error"
    detector: str
    statistic: str
    value: float
    position: int  # events of this model version seen when it fired
    event_time: float
    # Numbers that describe the detection (a batch signal also links its report).
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """A rule fired: what to do and why."""

    idempotency_key: str
    rule: str
    model: str
    model_version: str
    severity: str
    event_time: float
    signals: tuple[Signal, ...]
    actions: tuple[str, ...]
    alerts: tuple[str, ...]
    outcome: str = "fired"  # or "resolved" (hysteresis: the condition went quiet)
    resolves: str | None = None  # the fired decision a resolved one closes


def idempotency_key(*parts: str) -> str:
    """A stable key from the parts that identify one decision.

    >>> idempotency_key("retrain", "credit", "credit|v1|score|adwin|0|1200")
    '09bbdce1c1da21c847c60b3a394ecf3a'
    """
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class Rule(abc.ABC):
    """Maps signals to decisions."""

    name: str

    @abc.abstractmethod
    def observe(self, signal: Signal) -> Decision | None:
        """Take one signal; return a decision if the rule fires on it. Pure."""

    @property
    def suppressed(self) -> int:
        """Times the rule's condition held but a cooldown held it back."""
        return 0

    def observe_check(
        self, model: str, failed_signals: list[Signal], at: Signal
    ) -> Decision | None:
        """A batch check completed; rules with persistence conditions count it."""
        return None

    def tick(self, model: str, now: float) -> Decision | None:
        """Event time reached ``now`` for ``model``: a chance to resolve."""
        return None


class DeliveryError(Exception):
    """A delivery attempt failed. ``retryable`` False means do not try again."""

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What a successful delivery reports back (kept in the attempt log)."""

    detail: str
    data: Mapping[str, Any] = field(default_factory=dict)


class Deliverer(abc.ABC):
    """Something the outbox dispatcher delivers decisions to (action or alert)."""

    name: str
    max_attempts: int
    backoff_seconds: float
    backoff_max_seconds: float

    def _take_policy(self, config: Any) -> None:
        """Name and retry policy from a delivery config (the shared fields)."""
        self.name = config.name
        self.max_attempts = config.max_attempts
        self.backoff_seconds = config.backoff_seconds
        self.backoff_max_seconds = config.backoff_max_seconds

    @abc.abstractmethod
    def deliver(
        self, decision: Mapping[str, Any], idempotency_key: str, attempt: int
    ) -> DeliveryResult:
        """Send one decision. Blocks up to the target's timeout; raises
        :class:`DeliveryError` on failure. Safe to repeat for one key.
        """


class Action(Deliverer):
    """Carries out a decision: retraining, rollback."""
