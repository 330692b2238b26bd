"""Constant columns: a feature that holds one value throughout the window
although the reference varies (a stuck sensor, a default filled in upstream).

``value`` is the chance that a window of this many values drawn from the
reference is constant, ``sum_c p_c ** m`` over the reference's values or
categories ``c`` with shares ``p_c`` (1.0 when the window is not constant,
which the reference always allows). The check fails when the window is
constant and that chance is below ``constant_alpha``: a column that is 99%
zeros may well be all zeros in 30 rows, a continuous one may not be
constant in even 2. A column constant in the reference never fails.

For a numeric profile without value counts (more than 1000 distinct values)
the shares of repeated values are read off runs of equal quantiles.

>>> from detectors.batch import build_profile
>>> p = build_profile({"c": ["a"] * 90 + ["b"] * 10}, {"c": "categorical"})
>>> constant_column("c", ["a"] * 20, p.columns["c"]).failed  # 0.9 ** 20 = 0.12
False
>>> constant_column("c", ["a"] * 100, p.columns["c"]).failed
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.batch.profile import ColumnProfile, NumericProfile
from detectors.quality.base import QualityResult, QualityThresholds, category_of, is_missing

CHECK = "constant_column"


def reference_shares(reference: ColumnProfile) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Shares of the reference's repeated values (or categories), as far as known."""
    if not isinstance(reference, NumericProfile):
        counts = np.asarray(reference.counts, dtype=np.float64)
        return counts / counts.sum()
    if reference.value_counts is not None:
        counts = np.asarray(reference.value_counts, dtype=np.float64)
        return counts / counts.sum()
    # A value holding share s of the reference spans probability levels
    # about s wide with one quantile; equal consecutive quantiles mark it.
    q = np.asarray(reference.quantiles)
    p = np.asarray(reference.probabilities)
    shares = []
    start = 0
    for i in range(1, q.size + 1):
        if i == q.size or q[i] != q[start]:
            if i - 1 > start:
                shares.append(p[i - 1] - p[start])
            start = i
    return np.asarray(shares, dtype=np.float64)


def constant_column(
    column: str,
    values: Sequence[Any],
    reference: ColumnProfile,
    thresholds: QualityThresholds | None = None,
) -> QualityResult:
    """Judge whether non-missing ``values`` being constant is implausible under the reference."""
    t = thresholds or QualityThresholds()
    present = [v for v in values if not is_missing(v)]
    m = len(present)
    if isinstance(reference, NumericProfile):
        distinct = len(set(np.asarray(present, dtype=np.float64).tolist()))
    else:
        distinct = len({category_of(v) for v in present})
    if m < 2 or distinct > 1:
        why = "fewer than 2 values" if m < 2 else f"{distinct} distinct values"
        return QualityResult(
            check=CHECK,
            column=column,
            value=1.0,
            threshold=t.constant_alpha,
            failed=False,
            detail=f"{why} in {m}",
        )
    shares = reference_shares(reference)
    # sum of p**m underflows harmlessly to 0 for large m
    chance = float(min(1.0, np.sum(shares**m))) if shares.size else 0.0
    return QualityResult(
        check=CHECK,
        column=column,
        value=chance,
        threshold=t.constant_alpha,
        failed=chance < t.constant_alpha,
        detail=f"all {m} values are {present[0]!r}; reference chance of that {chance:.3g}",
    )
