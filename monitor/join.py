"""Joining late outcomes to their predictions, in bounded memory."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

P = TypeVar("P")
Q = TypeVar("Q")


@dataclass
class JoinStats:
    matched: int = 0
    # Predictions whose outcome did not come within the TTL (or were pushed out).
    expired_predictions: int = 0
    # Outcomes whose prediction never came: orphans.
    orphan_outcomes: int = 0
    # Entries dropped early because the buffer hit max_size.
    overflow_evictions: int = 0
    # A second outcome for a prediction that already has one waiting.
    duplicate_outcomes: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class JoinBuffer(Generic[P, Q]):
    """Holds whichever side of a (prediction, outcome) pair arrived first.

    Keys are ``(model, prediction_id)``. Time is event time: an entry expires
    when the newest event time seen is more than ``ttl_seconds`` past it, so
    a replay and a live run join alike. At most ``max_size`` entries are held
    on both sides together; beyond it the oldest go first. Pure: no I/O, no
    clock.
    """

    ttl_seconds: float
    max_size: int
    stats: JoinStats = field(default_factory=JoinStats)
    _predictions: OrderedDict[Any, tuple[float, P]] = field(default_factory=OrderedDict)
    _outcomes: OrderedDict[Any, tuple[float, Q]] = field(default_factory=OrderedDict)
    _watermark: float = float("-inf")

    def __len__(self) -> int:
        return len(self._predictions) + len(self._outcomes)

    @property
    def waiting_predictions(self) -> int:
        return len(self._predictions)

    @property
    def waiting_outcomes(self) -> int:
        return len(self._outcomes)

    def add_prediction(self, key: Any, ts: float, prediction: P) -> Q | None:
        """Store a prediction; return its outcome if that was already waiting."""
        waiting = self._outcomes.pop(key, None)
        if waiting is not None:
            self.stats.matched += 1
            return waiting[1]
        self._predictions[key] = (ts, prediction)
        self._advance(ts)
        return None

    def add_outcome(self, key: Any, ts: float, outcome: Q) -> P | None:
        """Match an outcome to its prediction, or keep it until the prediction comes."""
        waiting = self._predictions.pop(key, None)
        if waiting is not None:
            self.stats.matched += 1
            return waiting[1]
        if key in self._outcomes:
            self.stats.duplicate_outcomes += 1
            return None
        self._outcomes[key] = (ts, outcome)
        self._advance(ts)
        return None

    def migrate_predictions(self, convert: Callable[[Any], P | None]) -> int:
        """Replace each waiting prediction ``convert`` maps to a new value (an
        older checkpoint's form); order and times stay. Returns how many."""
        changed = [
            (key, (ts, new))
            for key, (ts, prediction) in self._predictions.items()
            if (new := convert(prediction)) is not None
        ]
        self._predictions.update(changed)  # existing keys: their order stays
        return len(changed)

    def _advance(self, ts: float) -> None:
        if ts > self._watermark:
            self._watermark = ts
        horizon = self._watermark - self.ttl_seconds
        preds, outs, stats = self._predictions, self._outcomes, self.stats
        # Insertion order is close to event-time order; an entry that arrived
        # out of order waits behind the head until the head expires.
        while preds and next(iter(preds.values()))[0] < horizon:
            preds.popitem(last=False)
            stats.expired_predictions += 1
        while outs and next(iter(outs.values()))[0] < horizon:
            outs.popitem(last=False)
            stats.orphan_outcomes += 1
        while len(preds) + len(outs) > self.max_size:
            stats.overflow_evictions += 1
            oldest_pred = next(iter(preds.values()))[0] if preds else float("inf")
            oldest_out = next(iter(outs.values()))[0] if outs else float("inf")
            if oldest_pred <= oldest_out:
                preds.popitem(last=False)
                stats.expired_predictions += 1
            else:
                outs.popitem(last=False)
                stats.orphan_outcomes += 1
