"""New categories: the share of current values in categories the reference never had.

Categories are compared by :func:`monitor.events.category_key` (so 1, 1.0,
"1" agree, and True is "true"), which is how the daemon keys them. The
expected share is the Good-Turing estimate of the reference's unseen mass
(reference categories seen exactly once, over the reference size): a
reference full of one-off categories predicts more new ones. The check fails
beyond that plus ``max(new_category_margin, sigmas * binomial std)``.

>>> from detectors.batch import build_profile
>>> p = build_profile({"c": ["a", "b"] * 100}, {"c": "categorical"})
>>> new_categories("c", ["a", "b", None] * 20, p.columns["c"]).failed
False
>>> r = new_categories("c", ["a", "z"] * 30, p.columns["c"])
>>> r.failed, r.value
(True, 0.5)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from detectors.batch.profile import CategoricalProfile
from detectors.quality.base import (
    QualityResult,
    QualityThresholds,
    category_of,
    is_missing,
    rate_result,
)

CHECK = "new_categories"
#: New categories named in the detail, most frequent first.
SHOWN = 5


def new_categories(
    column: str,
    values: Sequence[Any],
    reference: CategoricalProfile,
    thresholds: QualityThresholds | None = None,
) -> QualityResult:
    """Judge the share of non-missing ``values`` whose category the reference lacks."""
    t = thresholds or QualityThresholds()
    known = {category_of(c) for c in reference.categories}
    present = [category_of(v) for v in values if not is_missing(v)]
    new = Counter(v for v in present if v not in known)
    count = sum(new.values())
    singletons = sum(1 for c in reference.counts if c == 1)
    expected = singletons / reference.n if reference.n else 0.0
    result = rate_result(
        CHECK, column, count, len(present), expected, t.new_category_margin, t, "in new categories"
    )
    if not new:
        return result
    shown = ", ".join(f"{c!r} x{k}" for c, k in new.most_common(SHOWN))
    more = f" and {len(new) - SHOWN} more" if len(new) > SHOWN else ""
    return QualityResult(
        check=result.check,
        column=column,
        value=result.value,
        threshold=result.threshold,
        failed=result.failed,
        detail=f"{result.detail}; new: {shown}{more}",
    )
