"""Out-of-range values: the share of current values outside the reference range.

The range is the reference's [q0.001, q0.999] (``out_of_range_bounds =
"quantile"``, the default: a single extreme reference value does not widen
it) or [min, max] (``"minmax"``). The expected share outside is what the
reference itself has outside the range (exact when the profile keeps value
counts, else at most 0.2% by the definition of the quantiles, or 0 for
min/max); the check fails beyond that plus ``max(out_of_range_margin,
sigmas * binomial std)``.

>>> import numpy as np
>>> from detectors.batch import build_profile
>>> p = build_profile({"x": np.linspace(0.0, 1.0, 10_001)}, {"x": "numeric"})
>>> out_of_range("x", np.linspace(0.1, 0.9, 500), p.columns["x"]).failed
False
>>> r = out_of_range("x", np.linspace(0.5, 1.5, 500), p.columns["x"])
>>> r.failed, round(r.value, 2)
(True, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.batch.profile import NumericProfile
from detectors.quality.base import QualityResult, QualityThresholds, rate_result

CHECK = "out_of_range"
#: Profile quantile levels used as the range ("quantile" bounds).
LOW, HIGH = 0.001, 0.999


def reference_range(
    reference: NumericProfile, bounds: str = "quantile"
) -> tuple[float, float, float]:
    """(low, high, expected share of reference values outside [low, high])."""
    if bounds == "minmax":
        return reference.min, reference.max, 0.0
    probs = reference.probabilities
    if LOW not in probs or HIGH not in probs:  # a profile without the tail levels
        return reference.min, reference.max, 0.0
    lo = reference.quantiles[probs.index(LOW)]
    hi = reference.quantiles[probs.index(HIGH)]
    if reference.values is not None and reference.value_counts is not None:
        v = np.asarray(reference.values)
        c = np.asarray(reference.value_counts)
        return lo, hi, float(c[(v < lo) | (v > hi)].sum() / reference.n)
    return lo, hi, LOW + (1.0 - HIGH)


def out_of_range(
    column: str,
    values: Sequence[Any] | np.ndarray[Any, Any],
    reference: NumericProfile,
    thresholds: QualityThresholds | None = None,
) -> QualityResult:
    """Judge the share of non-missing ``values`` outside the reference range."""
    t = thresholds or QualityThresholds()
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]  # missing values are the missing-rate check's business
    lo, hi, expected = reference_range(reference, t.out_of_range_bounds)
    outside = int(np.count_nonzero((arr < lo) | (arr > hi)))
    return rate_result(
        CHECK,
        column,
        outside,
        int(arr.size),
        expected,
        t.out_of_range_margin,
        t,
        f"outside [{lo:.6g}, {hi:.6g}]",
    )
