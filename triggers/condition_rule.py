"""The rule engine: conditions over signals, combined, with cooldown and hysteresis."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from monitor.config import ConditionConfig, RuleConfig
from triggers.base import Decision, Rule, Signal, idempotency_key


def _matches(patterns: list[str], value: str) -> bool:
    return not patterns or any(
        value.startswith(p[:-1]) if p.endswith("*") else value == p for p in patterns
    )


@dataclass
class _Leaf:
    """One condition's state for one model (bounded: at most max(N, M) items)."""

    config: ConditionConfig
    recent: deque[Signal] = field(default_factory=deque)
    checks: deque[bool] = field(default_factory=deque)  # last M batch checks: failed?

    def matches(self, s: Signal) -> bool:
        c = self.config
        return _matches(c.detectors, s.detector) and _matches(c.targets, s.target)

    def observe(self, s: Signal) -> None:
        if self.config.of_last_checks is None:
            self.recent.append(s)
            if len(self.recent) > self.config.min_signals:
                self.recent.popleft()

    def observe_check(self, failed: bool) -> None:
        if self.config.of_last_checks is not None:
            self.checks.append(failed)
            if len(self.checks) > self.config.of_last_checks:
                self.checks.popleft()

    def holds(self, now: float) -> bool:
        c = self.config
        if c.of_last_checks is not None:
            return sum(self.checks) >= c.min_signals
        while self.recent and self.recent[0].event_time < now - c.window_seconds:
            self.recent.popleft()
        return len(self.recent) >= c.min_signals


@dataclass
class _ModelState:
    leaves: list[_Leaf]
    last_fired: float | None = None
    active: Decision | None = None  # fired and not yet resolved (hysteresis)
    last_match: float = float("-inf")


class ConditionRule(Rule):
    """Fires on ``any``/``all`` of its conditions for one model, once the
    model has seen ``min_events`` events; then, with ``resolve_after_seconds``,
    stays active until no matching signal came for that long, when it emits a
    ``resolved`` decision; without it, ``cooldown_seconds`` spaces decisions.
    Pure and deterministic on event time, so a replay re-derives the same
    decisions with the same keys. (The store adds the cross-process cooldown,
    silences and ``max_concurrent``.)
    """

    def __init__(self, config: RuleConfig) -> None:
        self.name = config.name
        self.config = config
        self._conditions = config.conditions()
        self._mode_all = bool(config.all)
        self._models: dict[str, _ModelState] = {}
        self._suppressed = 0

    @property
    def suppressed(self) -> int:
        return self._suppressed

    def _state(self, model: str) -> _ModelState:
        st = self._models.get(model)
        if st is None:
            st = self._models[model] = _ModelState([_Leaf(c) for c in self._conditions])
        return st

    def observe(self, signal: Signal) -> Decision | None:
        c = self.config
        if c.model not in ("*", signal.model) or signal.position < c.min_events:
            return None
        st = self._state(signal.model)
        hit = [leaf for leaf in st.leaves if leaf.matches(signal)]
        if not hit:
            return None
        st.last_match = signal.event_time
        for leaf in hit:
            leaf.observe(signal)
        return self._evaluate(st, signal)

    def observe_check(
        self, model: str, failed_signals: list[Signal], at: Signal
    ) -> Decision | None:
        """A batch check of ``model`` completed (``at`` describes it); its
        failures were ``failed_signals``. Feeds the persistence conditions."""
        if self.config.model not in ("*", model):
            return None
        st = self._state(model)
        for leaf in st.leaves:
            failed = any(leaf.matches(s) for s in failed_signals)
            leaf.observe_check(failed)
            if failed:
                st.last_match = at.event_time
        return self._evaluate(st, at)

    def _evaluate(self, st: _ModelState, signal: Signal) -> Decision | None:
        c = self.config
        held = [leaf.holds(signal.event_time) for leaf in st.leaves]
        if not (all(held) if self._mode_all else any(held)):
            return None
        if st.active is not None:
            return None  # hysteresis: already firing until resolved
        if (
            c.resolve_after_seconds is None
            and st.last_fired is not None
            and signal.event_time - st.last_fired < c.cooldown_seconds
        ):
            self._suppressed += 1
            return None
        st.last_fired = signal.event_time
        fired = tuple(s for leaf in st.leaves for s in leaf.recent) or (signal,)
        for leaf in st.leaves:
            leaf.recent.clear()
        decision = Decision(
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
        if c.resolve_after_seconds is not None:
            st.active = decision
        return decision

    def tick(self, model: str, now: float) -> Decision | None:
        """Event time advanced to ``now`` for ``model``: resolve an active
        decision whose condition has been quiet for ``resolve_after_seconds``."""
        st = self._models.get(model)
        after = self.config.resolve_after_seconds
        if st is None or st.active is None or after is None or now - st.last_match < after:
            return None
        fired, st.active = st.active, None
        return Decision(
            idempotency_key=idempotency_key(self.name, model, fired.idempotency_key, "resolved"),
            rule=self.name,
            model=model,
            model_version=fired.model_version,
            severity=fired.severity,
            event_time=now,
            signals=(),
            actions=(),
            alerts=fired.alerts,
            outcome="resolved",
            resolves=fired.idempotency_key,
        )
