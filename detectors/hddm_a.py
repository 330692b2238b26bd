"""HDDM_A: Hoeffding's bound on moving averages (river's HDDMA)."""

from __future__ import annotations

from typing import ClassVar

from river.drift import binary

from detectors._binary import BinaryErrorDetector
from detectors.base import check_open_unit


class HDDM_A(BinaryErrorDetector):
    """Detects a rise (or, two-sided, any change) of a classifier's error rate.

    >>> import random
    >>> rng = random.Random(7)
    >>> detector = HDDM_A()
    >>> errors = [rng.random() < 0.1 for _ in range(2000)] + [rng.random() < 0.4 for _ in range(1000)]
    >>> [i for i, x in enumerate(errors) if detector.update(x)]
    [2102]
    """

    name: ClassVar[str] = "hddm_a"

    def __init__(
        self,
        drift_confidence: float = 0.001,
        warning_confidence: float = 0.005,
        two_sided_test: bool = False,
    ) -> None:
        if not isinstance(two_sided_test, bool):
            raise ValueError(f"two_sided_test must be a boolean, got {two_sided_test!r}")
        self._d = binary.HDDMA(
            drift_confidence=check_open_unit("drift_confidence", drift_confidence),
            warning_confidence=check_open_unit("warning_confidence", warning_confidence),
            two_sided_test=two_sided_test,
        )
