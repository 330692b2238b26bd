"""Duplicate predictions: the share of predictions whose id was seen before.

The reference has none, so a window fails when more than
``duplicate_margin`` of its predictions repeat an id (and it has at least
``min_rows`` predictions). Replays and producer retries show up here.

>>> duplicates(5, 1000).failed, duplicates(50, 1000).failed
(False, True)
"""

from __future__ import annotations

from detectors.quality.base import QualityResult, QualityThresholds, rate_result

CHECK = "duplicates"


def duplicates(
    n_duplicates: int, n: int, thresholds: QualityThresholds | None = None
) -> QualityResult:
    """Judge ``n_duplicates`` repeated prediction ids among ``n`` predictions."""
    t = thresholds or QualityThresholds()
    if not 0 <= n_duplicates <= n:
        raise ValueError(f"n_duplicates={n_duplicates} is not in [0, n={n}]")
    return rate_result(CHECK, None, n_duplicates, n, 0.0, t.duplicate_margin, t, "duplicate ids")
