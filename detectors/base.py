"""The streaming-detector contract.

A detector is a pure state machine: ``update(x)`` feeds one value and returns
whether drift was detected on that value; ``drift_detected`` reads the same
flag afterwards. No I/O, no clock: replaying the same values gives the same
detections, which is what makes checkpoint/restore and backtests exact.

State is saved and restored by pickling the detector (river's detectors are
plain Python objects); :data:`STATE_VERSION` is stored beside the bytes so a
future change of layout can refuse or migrate old state.

Memory is bounded by each detector's parameters (window sizes, bucket
counts), never by the length of the stream.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any, ClassVar

STATE_VERSION = 1

# Input kinds a detector can take. "error" is a per-event error: 0/1 for a
# classifier (wrong or right), |prediction - label| for a regressor.
NUMERIC = "numeric"
CATEGORICAL = "categorical"
ERROR = "error"

#: What :meth:`StreamDetector.hot_update` hands the per-event loop: a callable
#: equivalent to ``update`` and whether it stays valid until it returns True.
HotUpdate = tuple[Callable[[Any], bool], bool]


class StreamDetector(abc.ABC):
    """One detector watching one value stream."""

    #: Registry name, as written in ``config.toml``.
    name: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    def accepts(cls, task: str) -> tuple[str, ...]:
        """Input kinds this detector takes for a model of ``task``."""

    @abc.abstractmethod
    def update(self, x: Any) -> bool:
        """Feed one value; return True if drift is detected on it.

        Pure and cheap: this is on the per-event path.
        """

    @property
    @abc.abstractmethod
    def drift_detected(self) -> bool:
        """Whether the last ``update`` detected drift."""

    @abc.abstractmethod
    def statistic(self) -> tuple[str, float]:
        """The statistic that describes the detection: its name and value."""

    def details(self) -> dict[str, float]:
        """Extra numbers recorded with a signal (may be empty)."""
        return {}

    def hot_update(self) -> HotUpdate:
        """``update`` as cheap as this detector allows, for the per-event loop.

        Returns ``(fn, steady)``: ``fn(x)`` feeds one value and returns whether
        drift was detected on it, exactly as ``update(x)``. While the caller
        holds ``fn``, only ``fn`` may feed the detector. After ``fn`` returns
        True, call :meth:`hot_detected` before anything else reads or feeds the
        detector, then fetch a new ``fn``. ``steady`` False means ``fn`` is a
        slower path needed for one value (say, a reset after a detection):
        fetch again once it has been called. The default is ``update`` itself.
        """
        return self.update, True

    def hot_detected(self) -> None:  # noqa: B027 - optional hook
        """Record a detection that a ``hot_update`` callable returned (so that
        the detector's state is what ``update`` would have left). Idempotent."""


def check_open_unit(name: str, value: float) -> float:
    """``value`` must be a probability strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def check_positive(name: str, value: float, *, integer: bool = False, minimum: float = 0.0) -> Any:
    """``value`` must be a finite number above ``minimum`` (an int if ``integer``)."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if value <= minimum:
        raise ValueError(f"{name} must be > {minimum:g}, got {value!r}")
    return value


class RiverBacked(StreamDetector):
    """A detector that delegates to a river detector held in ``_d``."""

    _d: Any

    def update(self, x: Any) -> bool:
        d = self._d
        d.update(x)
        return d.drift_detected

    @property
    def drift_detected(self) -> bool:
        return bool(self._d.drift_detected)
