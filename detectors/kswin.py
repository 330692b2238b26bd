"""KSWIN: Kolmogorov-Smirnov windowing (river's implementation)."""

from __future__ import annotations

from typing import ClassVar

from river import drift

from detectors.base import ERROR, NUMERIC, RiverBacked, check_open_unit, check_positive


class KSWIN(RiverBacked):
    """Compares the newest ``stat_size`` values with a sample of the window.

    river's KSWIN runs a KS test on every update once its window is full,
    which costs about half a millisecond. ``stride`` k feeds it every k-th
    value only (the others are skipped), dividing that cost by k at the price
    of a window that spans k times more events; keep it on a few targets
    (the score), not on every feature. ``seed`` makes its sampling, hence
    its detections, reproducible.

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
        stride: int = 1,
    ) -> None:
        self.stride = check_positive("stride", stride, integer=True)
        self._skip = 0
        self._skipped = False
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

    def update(self, x: float) -> bool:
        if self.stride > 1:
            self._skip += 1
            if self._skip < self.stride:
                self._skipped = True
                return False
            self._skip = 0
        self._skipped = False
        d = self._d
        d.update(x)
        return d.drift_detected

    @property
    def drift_detected(self) -> bool:
        return not self._skipped and bool(self._d.drift_detected)

    def statistic(self) -> tuple[str, float]:
        return ("p_value", float(self._d.p_value))
