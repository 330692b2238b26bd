"""EDDM: early drift detection method (river's implementation)."""

from __future__ import annotations

from typing import ClassVar

from river.drift import binary

from detectors._binary import BinaryErrorDetector
from detectors.base import check_open_unit, check_positive


class EDDM(BinaryErrorDetector):
    """Detects a shrinking distance between a classifier's errors.

    EDDM reacts early, and also to noise: on this stream every index below
    2000 is a false alarm. Prefer DDM or HDDM_A unless early warning matters
    more than false alarms.

    >>> import random
    >>> rng = random.Random(7)
    >>> detector = EDDM()
    >>> errors = [rng.random() < 0.1 for _ in range(2000)] + [rng.random() < 0.4 for _ in range(1000)]
    >>> [i for i, x in enumerate(errors) if detector.update(x)]
    [377, 673, 988, 1237, 1614, 1877, 2041, 2123, 2213, 2271]
    """

    name: ClassVar[str] = "eddm"

    def __init__(self, warm_start: int = 30, alpha: float = 0.95, beta: float = 0.9) -> None:
        if check_open_unit("beta", beta) >= check_open_unit("alpha", alpha):
            raise ValueError(f"beta must be < alpha, got beta={beta!r}, alpha={alpha!r}")
        self._d = binary.EDDM(
            warm_start=check_positive("warm_start", warm_start, integer=True),
            alpha=float(alpha),
            beta=float(beta),
        )

    def statistic(self) -> tuple[str, float]:
        return ("errors", float(getattr(self._d, "_n_errors", float("nan"))))
