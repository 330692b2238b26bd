"""Model performance in batch checks: realized on joined outcomes, estimated
from scores (CBPE) when labels are late or never come, both against the
reference's baseline."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from monitor.config import ModelConfig
from monitor.metrics import Metrics
from monitor.windows import Labeled, Window

log = logging.getLogger("driftd.batch")
# Fewer joined outcomes than this and realized metrics are not judged.
MIN_LABELED = 30


def _positive(model: ModelConfig) -> Any:
    return model.batch.positive_class if model.batch is not None else None


def performance_summary(
    task: str, labeled: list[Labeled], positive_class: str | None
) -> dict[str, Any]:
    """The reference's performance baseline (metric -> value) and, for a binary
    classifier with scores, the calibration CBPE needs."""
    from detectors.performance import fit_calibration, realized_metrics

    if len(labeled) < MIN_LABELED:
        return {}
    metrics = realized_metrics([r[:4] for r in labeled], task, positive=positive_class)  # type: ignore[arg-type]
    out: dict[str, Any] = {
        "metrics": {name: mv.value for name, mv in metrics.items()},
        "n": len(labeled),
    }
    scored = [(r[2], r[1]) for r in labeled if r[2] is not None]
    if task == "classification" and positive_class is not None and len(scored) >= MIN_LABELED:
        calibration = fit_calibration(
            [s for s, _ in scored], [y for _, y in scored], positive_class
        )
        out["calibration"] = msgspec.to_builtins(calibration)
    return out


def performance_results(
    model: ModelConfig,
    window: Window,
    baseline: dict[str, Any],
    metrics: Metrics,
    segment: str = "",
) -> list[dict[str, Any]]:
    from detectors.performance import (
        Calibration,
        compare_to_baseline,
        estimate_performance,
        realized_metrics,
    )

    base = baseline.get("metrics") or {}
    margin = model.batch.performance_margin if model.batch is not None else 0.0
    out: list[dict[str, Any]] = []
    realized: dict[str, Any] = {}
    if len(window.labeled) >= MIN_LABELED:
        realized = realized_metrics(
            [r[:4] for r in window.labeled],
            model.task,
            positive=_positive(model),
        )
        for name, mv in realized.items():
            out.append(
                _result(
                    model,
                    segment,
                    "realized",
                    name,
                    mv,
                    base.get(name),
                    margin,
                    metrics,
                    compare_to_baseline,
                )
            )
    scores = [r[2] for r in window.rows if r[2] is not None]
    calibration = baseline.get("calibration")
    if model.task == "classification" and calibration is not None and len(scores) >= MIN_LABELED:
        cal = msgspec.convert(calibration, Calibration)
        estimated = estimate_performance(scores, calibration=cal)
        for name, mv in estimated.items():
            row = _result(
                model,
                segment,
                "estimated",
                name,
                mv,
                base.get(name),
                margin,
                metrics,
                compare_to_baseline,
            )
            if name in realized:  # how the estimate compares once labels arrived
                row["detail"]["realized"] = realized[name].value
            out.append(row)
    return out


def _result(
    model: ModelConfig,
    segment: str,
    kind: str,
    name: str,
    mv: Any,
    baseline: float | None,
    margin: float,
    metrics: Metrics,
    compare: Any,
) -> dict[str, Any]:
    for bound, value in (("value", mv.value), ("lower", mv.lower), ("upper", mv.upper)):
        metrics.performance.labels(model.name, name, kind, bound, segment).set(value)
    degraded = baseline is not None and bool(compare(mv, baseline, margin=margin))
    return {
        "kind": "performance",
        "name": name if kind == "realized" else f"estimated_{name}",
        "column": None,
        "statistic": mv.value,
        "p_value": None,
        "threshold": baseline,
        "failed": degraded,
        "detail": {
            "lower": mv.lower,
            "upper": mv.upper,
            "n": mv.n,
            "method": mv.method,
            "baseline": baseline,
        },
    }
