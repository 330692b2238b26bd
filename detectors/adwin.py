"""ADWIN: adaptive windowing (river's implementation)."""

from __future__ import annotations

from typing import ClassVar

from river import drift

from detectors.base import ERROR, NUMERIC, RiverBacked, check_open_unit, check_positive


class ADWIN(RiverBacked):
    """Detects a change in the mean of a numeric stream.

    Parameters are river's; ``delta`` is the confidence (smaller: fewer false
    alarms, later detections).

    >>> import random
    >>> rng = random.Random(7)
    >>> detector = ADWIN()
    >>> stream = [rng.gauss(0, 1) for _ in range(1000)] + [rng.gauss(1.5, 1) for _ in range(1000)]
    >>> [i for i, x in enumerate(stream) if detector.update(x)]
    [1023]
    >>> ADWIN(delta=2)
    Traceback (most recent call last):
    ...
    ValueError: delta must be in (0, 1), got 2
    """

    name: ClassVar[str] = "adwin"

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        self._d = drift.ADWIN(
            delta=check_open_unit("delta", delta),
            clock=check_positive("clock", clock, integer=True),
            max_buckets=check_positive("max_buckets", max_buckets, integer=True),
            min_window_length=check_positive("min_window_length", min_window_length, integer=True),
            grace_period=check_positive("grace_period", grace_period, integer=True),
        )

    @classmethod
    def accepts(cls, task: str) -> tuple[str, ...]:
        return (NUMERIC, ERROR)

    def statistic(self) -> tuple[str, float]:
        return ("mean", float(self._d.estimation))

    def details(self) -> dict[str, float]:
        return {"width": float(self._d.width), "variance": float(self._d.variance)}
