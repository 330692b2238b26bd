"""DDM: drift detection method (river's implementation)."""

from __future__ import annotations

from typing import ClassVar

from river.drift import binary

from detectors._binary import BinaryErrorDetector
from detectors.base import check_positive


class DDM(BinaryErrorDetector):
    """Detects a rise of a classifier's error rate.

    >>> import random
    >>> rng = random.Random(7)
    >>> detector = DDM()
    >>> errors = [rng.random() < 0.1 for _ in range(2000)] + [rng.random() < 0.4 for _ in range(1000)]
    >>> [i for i, x in enumerate(errors) if detector.update(x)]
    [2061, 2280]
    """

    name: ClassVar[str] = "ddm"

    def __init__(
        self, warm_start: int = 30, warning_threshold: float = 2.0, drift_threshold: float = 3.0
    ) -> None:
        check_positive("warning_threshold", warning_threshold)
        if check_positive("drift_threshold", drift_threshold) <= warning_threshold:
            raise ValueError(
                f"drift_threshold must be > warning_threshold, got {drift_threshold!r}"
            )
        self._d = binary.DDM(
            warm_start=check_positive("warm_start", warm_start, integer=True),
            warning_threshold=float(warning_threshold),
            drift_threshold=float(drift_threshold),
        )
