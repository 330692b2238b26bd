"""Page-Hinkley test (river's implementation)."""

from __future__ import annotations

from typing import ClassVar, Literal

from river import drift

from detectors.base import ERROR, NUMERIC, RiverBacked, check_open_unit, check_positive


class PageHinkley(RiverBacked):
    """Detects a shift of the mean, up, down or both (``mode``).

    ``threshold`` is in the units of the watched value: river's default (50)
    is loose for unit-scale data and far too tight for large-scale data, so
    set it per target.

    >>> import random
    >>> rng = random.Random(7)
    >>> detector = PageHinkley(threshold=30.0)
    >>> stream = [rng.gauss(0, 1) for _ in range(1000)] + [rng.gauss(1.5, 1) for _ in range(1000)]
    >>> [i for i, x in enumerate(stream) if detector.update(x)]
    [1014, 1559, 1854]
    """

    name: ClassVar[str] = "page_hinkley"

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: Literal["up", "down", "both"] = "both",
    ) -> None:
        if mode not in ("up", "down", "both"):
            raise ValueError(f"mode must be 'up', 'down' or 'both', got {mode!r}")
        if isinstance(delta, bool) or not isinstance(delta, int | float) or not delta >= 0:
            raise ValueError(f"delta must be a number >= 0, got {delta!r}")
        self._d = drift.PageHinkley(
            min_instances=check_positive("min_instances", min_instances, integer=True),
            delta=float(delta),
            threshold=float(check_positive("threshold", threshold)),
            alpha=check_open_unit("alpha", alpha),
            mode=mode,
        )

    @classmethod
    def accepts(cls, task: str) -> tuple[str, ...]:
        return (NUMERIC, ERROR) if task == "regression" else (NUMERIC,)

    def statistic(self) -> tuple[str, float]:
        return ("threshold", float(self._d.threshold))
