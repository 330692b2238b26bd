"""KSWIN: Kolmogorov-Smirnov windowing (river's implementation)."""

from __future__ import annotations

from typing import ClassVar

from river import drift

from detectors.base import ERROR, NUMERIC, RiverBacked, check_open_unit, check_positive


class KSWIN(RiverBacked):
    """Compares the newest ``stat_size`` values with a sample of the window.

    It runs a KS test on every update once the window is full, which costs
    tens of microseconds: prefer it on a few targets (the score), not on
    every feature. ``seed`` makes its sampling, hence its detections,
    reproducible.

    >>> import random
    >>> rng = random.Random(7)
    >>> detector = KSWIN(alpha=1e-5, seed=1)
    >>> stream = [rng.gauss(0, 1) for _ in range(1000)] + [rng.gauss(1.5, 1) for _ in range(1000)]
    >>> [i for i, x in enumerate(stream) if detector.update(x)]
    [1026]
    >>> KSWIN(window_size=10, stat_size=30)
    Traceback (most recent call last):
    ...
    ValueError: stat_size must be < window_size / 2, got stat_size=30, window_size=10
    """

    name: ClassVar[str] = "kswin"

    def __init__(
        self,
        alpha: float = 0.005,
        window_size: int = 100,
        stat_size: int = 30,
        seed: int | None = None,
    ) -> None:
        check_positive("window_size", window_size, integer=True)
        check_positive("stat_size", stat_size, integer=True)
        if stat_size >= window_size / 2:
            raise ValueError(
                f"stat_size must be < window_size / 2, got stat_size={stat_size}, "
                f"window_size={window_size}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self._d = drift.KSWIN(
            alpha=check_open_unit("alpha", alpha),
            window_size=window_size,
            stat_size=stat_size,
            seed=seed,
        )

    @classmethod
    def accepts(cls, task: str) -> tuple[str, ...]:
        return (NUMERIC, ERROR) if task == "regression" else (NUMERIC,)

    def statistic(self) -> tuple[str, float]:
        return ("p_value", float(self._d.p_value))
