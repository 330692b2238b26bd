"""HDDM_W: Hoeffding's bound on weighted moving averages (river's HDDMW)."""

from __future__ import annotations

from typing import ClassVar

from river.drift import binary

from detectors._binary import BinaryErrorDetector
from detectors.base import check_open_unit


class HDDM_W(BinaryErrorDetector):
    """Detects a rise of a classifier's error rate, weighting recent errors more.

    >>> import random
    >>> rng = random.Random(7)
    >>> detector = HDDM_W()
    >>> errors = [rng.random() < 0.1 for _ in range(2000)] + [rng.random() < 0.4 for _ in range(1000)]
    >>> [i for i, x in enumerate(errors) if detector.update(x)]
    [2027, 2271]
    """

    name: ClassVar[str] = "hddm_w"

    def __init__(
        self,
        drift_confidence: float = 0.001,
        warning_confidence: float = 0.005,
        lambda_val: float = 0.05,
        two_sided_test: bool = False,
    ) -> None:
        if not isinstance(two_sided_test, bool):
            raise ValueError(f"two_sided_test must be a boolean, got {two_sided_test!r}")
        self._d = binary.HDDMW(
            drift_confidence=check_open_unit("drift_confidence", drift_confidence),
            warning_confidence=check_open_unit("warning_confidence", warning_confidence),
            lambda_val=check_open_unit("lambda_val", lambda_val),
            two_sided_test=two_sided_test,
        )

    def statistic(self) -> tuple[str, float]:
        total = getattr(self._d, "_total", None)
        value = (
            getattr(total, "EWMA_estimator", float("nan")) if total is not None else float("nan")
        )
        return ("error_rate", float(value))
