"""The rule "at least N matching signals within a window", with a cooldown."""

from __future__ import annotations

from collections import deque

from monitor.config import RuleConfig
from triggers.base import Decision, Rule, Signal, idempotency_key


class CountWithinWindow(Rule):
    """Fires when ``min_signals`` matching signals for one model fall within
    ``window_seconds`` of event time, then stays quiet for ``cooldown_seconds``.

    So one drift, which makes several detectors fire over several events,
    gives one decision rather than a storm. Memory per model is at most
    ``min_signals`` signals.
    """

    def __init__(self, config: RuleConfig) -> None:
        self.name = config.name
        self.config = config
        self._recent: dict[str, deque[Signal]] = {}
        self._last_fired: dict[str, float] = {}
        self._suppressed = 0

    @property
    def suppressed(self) -> int:
        return self._suppressed

    def matches(self, s: Signal) -> bool:
        c = self.config
        return (
            (c.model == "*" or c.model == s.model)
            and (not c.detectors or s.detector in c.detectors)
            and (not c.targets or s.target in c.targets)
        )

    def observe(self, signal: Signal) -> Decision | None:
        if not self.matches(signal):
            return None
        c = self.config
        recent = self._recent.setdefault(signal.model, deque(maxlen=c.min_signals))
        recent.append(signal)
        while recent and recent[0].event_time < signal.event_time - c.window_seconds:
            recent.popleft()
        if len(recent) < c.min_signals:
            return None
        last = self._last_fired.get(signal.model)
        if last is not None and signal.event_time - last < c.cooldown_seconds:
            self._suppressed += 1
            return None
        self._last_fired[signal.model] = signal.event_time
        fired = tuple(recent)
        recent.clear()
        return Decision(
            idempotency_key=idempotency_key(self.name, signal.model, signal.key),
            rule=self.name,
            model=signal.model,
            model_version=signal.model_version,
            severity=c.severity,
            event_time=signal.event_time,
            signals=fired,
            actions=tuple(c.actions),
            alerts=tuple(c.alerts),
        )
