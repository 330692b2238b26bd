"""Missing values: the current missing share of a feature against the reference's.

A feature fails when its missing share exceeds the reference missing rate by
more than ``max(missing_rate_margin, sigmas * binomial std)`` (see
:mod:`detectors.quality.base`). A drop in missing values is not a failure.

>>> from detectors.batch import build_profile
>>> p = build_profile({"x": [1.0, 2.0, None, 4.0] * 50}, {"x": "numeric"})
>>> missing_rate("x", 50, 200, p.columns["x"]).failed  # 25%, as in the reference
False
>>> missing_rate("x", 120, 200, p.columns["x"]).failed
True
"""

from __future__ import annotations

from detectors.batch.profile import ColumnProfile
from detectors.quality.base import QualityResult, QualityThresholds, rate_result

CHECK = "missing_rate"


def missing_rate(
    column: str,
    n_missing: int,
    n: int,
    reference: ColumnProfile,
    thresholds: QualityThresholds | None = None,
) -> QualityResult:
    """Judge ``n_missing`` of ``n`` current values against ``reference.missing_rate``."""
    t = thresholds or QualityThresholds()
    if not 0 <= n_missing <= n:
        raise ValueError(f"column {column!r}: n_missing={n_missing} is not in [0, n={n}]")
    return rate_result(
        CHECK, column, n_missing, n, reference.missing_rate, t.missing_rate_margin, t, "missing"
    )
