"""Data-quality results of a window, in the batch check's result shape."""

from __future__ import annotations

from typing import Any

import msgspec

from monitor.config import ModelConfig
from monitor.metrics import Metrics
from monitor.windows import Window


def quality_results(
    model: ModelConfig, window: Window, profile: Any, metrics: Metrics, segment: str
) -> list[dict[str, Any]]:
    """Run every data-quality check (schema, duplicates, missing rates, ranges,
    new categories, constant columns) and set the ``driftd_quality_value`` gauges."""
    from detectors.quality import run_quality

    # Every feature, in the window's order; one the profile lacks (a segment's
    # own column) gets the schema checks only.
    names = model.numeric_features() + model.categorical_features()
    out: list[dict[str, Any]] = []
    for q in run_quality(window, profile, names):
        metrics.quality_value.labels(model.name, q.check, q.column or "", segment).set(q.value)
        detail = msgspec.to_builtins(q.detail) if q.detail is not None else {}
        out.append(
            {
                "kind": "quality",
                "name": q.check,
                "column": q.column,
                "statistic": q.value,
                "p_value": None,
                "threshold": q.threshold,
                "failed": q.failed,
                "detail": detail if isinstance(detail, dict) else {"detail": detail},
            }
        )
    return out
