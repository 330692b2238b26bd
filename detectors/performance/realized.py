"""Realized performance: metrics of a window's joined predictions and labels.

Point values are scikit-learn's; intervals are Wilson score intervals for
accuracy and binary precision/recall, and a seeded percentile bootstrap
(see :mod:`detectors.performance.base`) for the rest.

Classification labels and predictions are compared by
:func:`monitor.events.category_key`, as the daemon's per-event error is.
With a ``positive`` class the metrics are binary (precision, recall and F1 of
that class; ROC AUC and log loss from ``scores``, the probability of that
class); without one, precision, recall and F1 are macro averages over the
classes seen, and AUC and log loss are skipped (a single score per row does
not say which class it is the probability of).

>>> m = classification_metrics(["a", "b", "a", "a"], ["a", "b", "b", "a"], positive="a")
>>> m["accuracy"].value, m["precision"].value, m["recall"].value
(0.75, 0.6666666666666666, 1.0)
>>> r = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.5, 0.0])
>>> r["mae"].value, r["mape"].n  # the zero label is left out of MAPE
(1.1666666666666667, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sklearn import metrics as skm

from detectors.performance.base import (
    CONFIDENCE,
    N_RESAMPLES,
    FloatArray,
    MetricValue,
    bootstrap,
    bootstrap_columns,
    category_of,
    metric,
    ratio,
    weighted_auc,
    wilson,
)

#: Scores are clipped to [EPS, 1 - EPS] for log loss, as scikit-learn does.
EPS = float(np.finfo(np.float64).eps)


def classification_metrics(
    predictions: Sequence[Any],
    labels: Sequence[Any],
    scores: Sequence[float | None] | None = None,
    *,
    positive: Any = None,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict[str, MetricValue]:
    """Accuracy, precision, recall, F1 and (binary, with scores) ROC AUC and log loss.

    A metric that cannot be computed (no rows, one class only for AUC,
    scores outside [0, 1] for log loss) is left out of the result.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    pred = np.asarray([category_of(p) for p in predictions], dtype=object)
    true = np.asarray([category_of(y) for y in labels], dtype=object)
    n = int(pred.size)
    if n == 0:
        return {}
    boot: dict[str, Any] = {"n_resamples": n_resamples, "seed": seed, "confidence": confidence}
    correct = int(np.sum(pred == true))
    acc = skm.accuracy_score(true, pred)
    out = {
        "accuracy": metric("accuracy", acc, wilson(correct, n, confidence), n, "wilson", confidence)
    }
    if positive is None:
        out.update(_macro(pred, true, boot))
        return out
    key = category_of(positive)
    yt, yp = true == key, pred == key
    tp, pp, ap = int(np.sum(yt & yp)), int(yp.sum()), int(yt.sum())
    precision = skm.precision_score(yt, yp, zero_division=0)
    recall = skm.recall_score(yt, yp, zero_division=0)
    out["precision"] = metric(
        "precision", precision, wilson(tp, pp, confidence), pp, "wilson", confidence
    )
    out["recall"] = metric("recall", recall, wilson(tp, ap, confidence), ap, "wilson", confidence)
    hit = (yt & yp).astype(np.float64)
    wrong = (yt != yp).astype(np.float64)  # false positives and false negatives

    def f1(w: FloatArray) -> FloatArray:
        t = w @ hit
        return ratio(2 * t, 2 * t + w @ wrong)

    f1_value = skm.f1_score(yt, yp, zero_division=0)
    out["f1"] = metric("f1", f1_value, bootstrap(f1, n, **boot), n, "bootstrap", confidence)
    if scores is not None:
        out.update(_scored(yt, scores, boot))
    return out


def _macro(pred: NDArray[Any], true: NDArray[Any], boot: dict[str, Any]) -> dict[str, MetricValue]:
    # Over the classes of the whole window, also in resamples that lack one
    # (it then scores 0, as scikit-learn does for a listed, absent class).
    classes = sorted(set(pred.tolist()) | set(true.tolist()))
    row = np.asarray(classes, dtype=object)[None, :]
    p_ind = (pred[:, None] == row).astype(np.float64)
    t_ind = (true[:, None] == row).astype(np.float64)
    both = p_ind * t_ind

    def macro(w: FloatArray) -> FloatArray:
        tp, pp, ap = w @ both, w @ p_ind, w @ t_ind
        return np.stack(
            [
                ratio(tp, pp).mean(axis=1),
                ratio(tp, ap).mean(axis=1),
                ratio(2 * tp, pp + ap).mean(axis=1),
            ],
            axis=1,
        )

    intervals = bootstrap_columns(macro, int(pred.size), **boot)
    scorers = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}
    return {
        name: metric(
            name,
            scorer(true, pred, labels=classes, average="macro", zero_division=0),
            interval,
            int(pred.size),
            "bootstrap",
            boot["confidence"],
        )
        for (name, scorer), interval in zip(scorers.items(), intervals, strict=True)
    }


def _scored(
    positive: NDArray[np.bool_], scores: Sequence[float | None], boot: dict[str, Any]
) -> dict[str, MetricValue]:
    if len(scores) != positive.size:
        raise ValueError(f"{len(scores)} scores but {positive.size} labels")
    have = np.asarray([s is not None for s in scores], dtype=bool)
    s = np.asarray([v for v in scores if v is not None], dtype=np.float64)
    y = positive[have].astype(np.float64)
    n = int(s.size)
    conf = boot["confidence"]
    out: dict[str, MetricValue] = {}
    if n and 0 < y.sum() < n:
        auc = skm.roc_auc_score(y, s)
        interval = bootstrap(lambda w: weighted_auc(s, y, w), n, **boot)
        out["roc_auc"] = metric("roc_auc", auc, interval, n, "bootstrap", conf)
    if n and s.min() >= 0.0 and s.max() <= 1.0:
        p = np.clip(s, EPS, 1 - EPS)
        losses = -(y * np.log(p) + (1 - y) * np.log1p(-p))
        loss = skm.log_loss(y, p, labels=[0.0, 1.0])
        interval = bootstrap(lambda w: w @ losses / n, n, **boot)
        out["log_loss"] = metric("log_loss", loss, interval, n, "bootstrap", conf)
    return out


def regression_metrics(
    predictions: Sequence[float],
    labels: Sequence[float],
    *,
    mape_min_abs_label: float = 0.0,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict[str, MetricValue]:
    """MAE, RMSE and MAPE (a fraction, not percent), with bootstrap intervals.

    MAPE leaves out rows whose ``|label| <= mape_min_abs_label`` (default:
    exact zeros), whose relative error is unbounded; it is omitted when no
    row is left, and its ``n`` says how many rows it used.
    """
    yp = np.asarray(predictions, dtype=np.float64)
    yt = np.asarray(labels, dtype=np.float64)
    if yp.shape != yt.shape or yp.ndim != 1:
        raise ValueError(f"predictions {yp.shape} and labels {yt.shape} must be equal 1-D")
    n = int(yt.size)
    if n == 0:
        return {}
    boot: dict[str, Any] = {"n_resamples": n_resamples, "seed": seed, "confidence": confidence}
    abs_err = np.abs(yp - yt)
    sq_err = abs_err**2
    mae = skm.mean_absolute_error(yt, yp)
    rmse = skm.root_mean_squared_error(yt, yp)
    out = {
        "mae": metric(
            "mae", mae, bootstrap(lambda w: w @ abs_err / n, n, **boot), n, "bootstrap", confidence
        ),
        "rmse": metric(
            "rmse",
            rmse,
            bootstrap(lambda w: np.sqrt(w @ sq_err / n), n, **boot),
            n,
            "bootstrap",
            confidence,
        ),
    }
    keep = np.abs(yt) > mape_min_abs_label
    m = int(keep.sum())
    if m:
        ape = abs_err[keep] / np.abs(yt[keep])
        mape = skm.mean_absolute_percentage_error(yt[keep], yp[keep])
        interval = bootstrap(lambda w: w @ ape / m, m, **boot)
        out["mape"] = metric("mape", mape, interval, m, "bootstrap", confidence)
    return out


def realized_metrics(
    labeled: Sequence[tuple[Any, Any, float | None, float]],
    task: Literal["classification", "regression"],
    *,
    positive: Any = None,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict[str, MetricValue]:
    """Metrics of a window's ``labeled`` sample of ``(prediction, label, score, time)``."""
    preds = [row[0] for row in labeled]
    labels = [row[1] for row in labeled]
    opts: dict[str, Any] = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    if task == "regression":
        return regression_metrics(preds, labels, **opts)
    scores = [row[2] for row in labeled]
    return classification_metrics(preds, labels, scores, positive=positive, **opts)
