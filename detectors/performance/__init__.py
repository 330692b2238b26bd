"""Model performance on a window: realized (with labels) and estimated (CBPE).

Pure functions (no I/O, no clock; bootstraps and simulations are seeded).

* :func:`realized_metrics` / :func:`classification_metrics` /
  :func:`regression_metrics`: metrics of joined predictions and labels, each
  a :class:`MetricValue` with an interval;
* :func:`estimate_performance`: CBPE, expected binary-classification
  metrics from calibrated scores alone, with :func:`fit_calibration` to
  calibrate raw scores on a labeled reference;
* :func:`compare_to_baseline`: degraded only when the whole interval is
  worse than the baseline by more than a margin.
"""

from detectors.performance.base import (
    CONFIDENCE,
    DIRECTIONS,
    MARGIN,
    N_RESAMPLES,
    RELATIVE_MARGIN,
    MetricValue,
    compare_to_baseline,
    wilson,
)
from detectors.performance.cbpe import (
    N_SIMULATIONS,
    Calibration,
    estimate_performance,
    fit_calibration,
)
from detectors.performance.realized import (
    classification_metrics,
    realized_metrics,
    regression_metrics,
)

__all__ = [
    "CONFIDENCE",
    "DIRECTIONS",
    "MARGIN",
    "N_RESAMPLES",
    "N_SIMULATIONS",
    "RELATIVE_MARGIN",
    "Calibration",
    "MetricValue",
    "classification_metrics",
    "compare_to_baseline",
    "estimate_performance",
    "fit_calibration",
    "realized_metrics",
    "regression_metrics",
    "wilson",
]
