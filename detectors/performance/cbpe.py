"""Confidence-based performance estimation (CBPE) for binary classifiers.

Before labels arrive, a window's performance can be estimated from its
scores alone, provided the scores are calibrated (a score of 0.8 means the
positive class 80% of the time). Each row's label is then a Bernoulli draw
with the row's score as probability, so the metric of the window is a
random variable whose distribution we can simulate: draw every label
``n_simulations`` times from a seeded generator and compute the metric on
each draw. The estimate is the expectation (exact for accuracy and
precision, whose denominators are fixed by the predictions; the simulation
mean for recall, F1 and ROC AUC), the interval the central ``confidence``
range of the simulations, which is where the realized value should land if
calibration holds. This is the method of NannyML's CBPE.

What it can follow is covariate shift: inputs move, scores move with them,
calibration (P(y | score)) holds. It cannot see concept drift, where the
same score comes to mean a different probability; only labels show that.

Raw model scores are seldom calibrated; :func:`fit_calibration` fits
scikit-learn's isotonic regression on a labeled reference and returns a
small serializable :class:`Calibration` to store beside the reference
profile. The intervals do not include the calibration's own error, which
is small when the reference has thousands of labeled rows.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> p = rng.uniform(size=2000)
>>> est = estimate_performance(p)
>>> round(est["accuracy"].value, 2), est["accuracy"].method
(0.75, 'cbpe')
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata
from sklearn.isotonic import IsotonicRegression

from detectors.performance.base import (
    CONFIDENCE,
    MAX_CELLS,
    FloatArray,
    MetricValue,
    category_of,
    metric,
    percentiles,
    ratio,
)

#: Label draws per estimate: enough for the 2.5% and 97.5% percentiles.
N_SIMULATIONS = 500
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    """A monotone map from raw scores to probabilities of the positive class:
    linear interpolation between ``x`` and ``y`` knots, clipped at both ends
    (what ``IsotonicRegression(out_of_bounds="clip").predict`` does)."""

    x: list[float]
    y: list[float]
    #: Labeled reference rows it was fitted on.
    n: int

    def apply(self, scores: Sequence[float] | FloatArray) -> FloatArray:
        """Calibrated probabilities of ``scores``."""
        return np.interp(np.asarray(scores, dtype=np.float64), self.x, self.y)


def fit_calibration(
    scores: Sequence[float] | FloatArray, labels: Sequence[Any], positive: Any = True
) -> Calibration:
    """Fit isotonic regression of ``labels == positive`` on ``scores``.

    Labels are compared by :func:`monitor.events.category_key` (so the
    default ``positive=True`` matches ``True``, ``"true"``; give ``1`` for
    0/1 labels).

    >>> c = fit_calibration([0.1, 0.2, 0.7, 0.9], [0, 1, 0, 1], positive=1)
    >>> c.apply([0.0, 0.5, 1.0]).tolist()
    [0.0, 0.5, 1.0]
    """
    s = np.asarray(scores, dtype=np.float64)
    key = category_of(positive)
    y = np.asarray([category_of(v) == key for v in labels], dtype=np.float64)
    if s.shape != y.shape or s.size < 2:
        raise ValueError(f"need at least 2 scores with one label each, got {s.size} and {y.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
    return Calibration(x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist(), n=int(s.size))


def estimate_performance(
    scores: Sequence[float | None] | FloatArray,
    predicted: Sequence[bool] | NDArray[np.bool_] | None = None,
    *,
    threshold: float = 0.5,
    calibration: Calibration | None = None,
    confidence: float = CONFIDENCE,
    n_simulations: int = N_SIMULATIONS,
    seed: int = 0,
) -> dict[str, MetricValue]:
    """Expected accuracy, precision, recall, F1 and ROC AUC of the positive class.

    Parameters
    ----------
    scores
        The model's scores for the positive class; ``None`` rows are dropped
        (with their ``predicted`` entry).
    predicted
        Whether each row was predicted positive; default ``score >= threshold``
        on the raw scores (the model's decision, not the calibrated one).
    calibration
        Applied to the scores first; without it they must already be
        probabilities in [0, 1].
    n_simulations, seed
        Label draws, from ``numpy.random.default_rng(seed)``.

    Returns
    -------
    Every metric of :data:`METRICS` with method ``"cbpe"``, or nothing for
    an empty window.

    """
    keep = np.asarray([s is not None for s in scores], dtype=bool)
    raw = np.asarray([s for s in scores if s is not None], dtype=np.float64)
    if predicted is None:
        yhat = raw >= threshold
    else:
        yhat = np.asarray(predicted, dtype=bool)
        if yhat.shape != keep.shape:
            raise ValueError(f"{yhat.size} predictions for {keep.size} scores")
        yhat = yhat[keep]
    if n_simulations < 1:
        raise ValueError(f"n_simulations must be >= 1, got {n_simulations!r}")
    n = int(raw.size)
    if n == 0:
        return {}
    p = calibration.apply(raw) if calibration is not None else raw
    if not (np.all(np.isfinite(p)) and p.min() >= 0.0 and p.max() <= 1.0):
        raise ValueError("scores must be probabilities in [0, 1] (or pass a calibration)")
    pred = yhat.astype(np.float64)
    pp = pred.sum()
    # Midranks of the raw scores: AUC = Mann-Whitney U / (P * N), ties half.
    ranks = rankdata(raw)
    sims = np.concatenate(list(_simulate(p, pred, ranks, n_simulations, seed)))
    expected = {
        "accuracy": float(np.mean(pred * p + (1 - pred) * (1 - p))),
        "precision": float(p @ pred / pp) if pp else 0.0,
    }
    out = {}
    for j, name in enumerate(METRICS):
        column = sims[:, j]
        value = expected.get(name)
        if value is None:
            value = float(np.nanmean(column)) if np.any(~np.isnan(column)) else float("nan")
        out[name] = metric(name, value, percentiles(column, confidence), n, "cbpe", confidence)
    return out


def _simulate(
    p: FloatArray, pred: FloatArray, ranks: FloatArray, n_simulations: int, seed: int
) -> Iterator[FloatArray]:
    """Metrics (accuracy, precision, recall, F1, AUC) of labels drawn from ``p``,
    one row per draw, in chunks of bounded memory."""
    rng = np.random.default_rng(seed)
    n = p.size
    pp = pred.sum()  # predicted positives: fixed by the predictions
    per_chunk = max(1, MAX_CELLS // n)
    done = 0
    while done < n_simulations:
        b = min(per_chunk, n_simulations - done)
        y = (rng.random((b, n)) < p).astype(np.float64)
        tp = y @ pred  # true positives
        pos = y.sum(axis=1)  # actual positives
        neg = n - pos
        correct = n + 2 * tp - pos - pp  # TP + TN, TN = neg - (pp - tp)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = np.where(pos * neg > 0, (y @ ranks - pos * (pos + 1) / 2) / (pos * neg), np.nan)
        metrics = [correct / n, ratio(tp, pp), ratio(tp, pos), ratio(2 * tp, pp + pos), auc]
        yield np.stack(metrics, axis=1)
        done += b
