"""Schema: undeclared features arriving, and required features going missing.

Two results from the window's exact counts:

* ``unexpected_features``: undeclared feature keys per prediction (a renamed
  or added upstream field); fails above ``unexpected_margin``.
* ``missing_required``: the largest missing share among required features
  (by default those never missing in the reference; a dropped or renamed
  field); fails above ``missing_required_margin``.

Both need ``min_rows`` predictions to fail.

>>> [r.failed for r in schema(0, 1000, {"x": 0, "y": 3}, ["x", "y"])]
[False, False]
>>> [r.failed for r in schema(1000, 1000, {"x": 1000, "y": 0}, ["x", "y"])]
[True, True]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from detectors.quality.base import QualityResult, QualityThresholds, rate_result

UNEXPECTED = "unexpected_features"
MISSING_REQUIRED = "missing_required"


def schema(
    n_unexpected: int,
    n: int,
    missing: Mapping[str, int],
    required: Sequence[str],
    thresholds: QualityThresholds | None = None,
) -> list[QualityResult]:
    """Judge ``n_unexpected`` undeclared keys and ``missing`` counts of ``required`` features."""
    t = thresholds or QualityThresholds()
    # Several undeclared keys per prediction count several times: the rate
    # can exceed 1, and the binomial slack does not apply (expected is 0).
    unexpected = rate_result(
        UNEXPECTED, None, n_unexpected, n, 0.0, t.unexpected_margin, t, "undeclared feature keys"
    )
    unknown = [name for name in required if name not in missing]
    if unknown:
        raise ValueError(f"required features without a missing count: {unknown}")
    worst = max(required, key=lambda name: missing[name], default=None)
    if worst is None:
        return [
            unexpected,
            QualityResult(
                check=MISSING_REQUIRED,
                column=None,
                value=0.0,
                threshold=t.missing_required_margin,
                failed=False,
                detail="no required features",
            ),
        ]
    result = rate_result(
        MISSING_REQUIRED,
        None,
        missing[worst],
        n,
        0.0,
        t.missing_required_margin,
        t,
        f"missing {worst!r}",
    )
    over = [name for name in required if n and missing[name] / n > result.threshold]
    if over:
        result = QualityResult(
            check=result.check,
            column=None,
            value=result.value,
            threshold=result.threshold,
            failed=result.failed,
            detail=f"{result.detail}; over the limit: {', '.join(over)}",
        )
    return [unexpected, result]
