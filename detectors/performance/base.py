"""Performance metrics with intervals, and the degradation rule.

A metric computed on a window is a :class:`MetricValue`: the point value and
an interval that says how far the window's size lets the value be trusted.
:func:`compare_to_baseline` calls a metric degraded only when the *whole*
interval is worse than the baseline by more than a margin, so a 30-row
window with a bad-looking accuracy does not page anybody.

Intervals are analytic where that is exact enough (Wilson score intervals
for proportions) and otherwise a percentile bootstrap with a seeded
generator and a bounded number of resamples, so a repeated check gives the
same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

from monitor.events import category_key

FloatArray = NDArray[np.float64]
Direction = Literal["higher", "lower"]

#: Interval coverage used unless told otherwise.
CONFIDENCE = 0.95
#: Bootstrap resamples: 200 puts the 2.5% and 97.5% percentiles within
#: about a tenth of the interval's width of their limits.
N_RESAMPLES = 200
#: Resampled cells held in memory at once (resamples x rows), about 16 MB.
MAX_CELLS = 2_000_000
#: Default margins of :func:`compare_to_baseline`.
MARGIN = 0.0
RELATIVE_MARGIN = 0.05


class MetricValue(msgspec.Struct, frozen=True, kw_only=True):
    """One metric on one window.

    ``lower``/``upper`` bound the value at ``confidence``; ``method`` is how
    (``"wilson"``, ``"bootstrap"``, ``"cbpe"``); ``n`` the rows it used;
    ``direction`` whether ``"higher"`` or ``"lower"`` values are better.
    """

    name: str
    value: float
    lower: float
    upper: float
    n: int
    method: str
    direction: Direction
    confidence: float = CONFIDENCE


def category_of(value: Any) -> str:
    """:func:`monitor.events.category_key` of a value, numpy scalars included
    (``np.True_`` is no ``bool``, and would key as ``"True"``, not ``"true"``)."""
    return category_key(value.item() if isinstance(value, np.generic) else value)


def compare_to_baseline(
    current: MetricValue,
    baseline: float,
    direction: Direction | None = None,
    *,
    margin: float = MARGIN,
    relative_margin: float = RELATIVE_MARGIN,
) -> bool:
    """Whether ``current`` is degraded: its whole interval is worse than
    ``baseline`` by more than ``max(margin, relative_margin * |baseline|)``.

    ``direction`` defaults to the metric's own.

    >>> acc = MetricValue(name="accuracy", value=0.7, lower=0.68, upper=0.72, n=5000,
    ...                   method="wilson", direction="higher")
    >>> compare_to_baseline(acc, 0.9), compare_to_baseline(acc, 0.75)
    (True, False)
    >>> mae = MetricValue(name="mae", value=2.0, lower=1.0, upper=3.0, n=20,
    ...                   method="bootstrap", direction="lower")
    >>> compare_to_baseline(mae, 1.0)
    False
    """
    if margin < 0 or relative_margin < 0:
        raise ValueError("margins must be >= 0")
    tolerance = max(margin, relative_margin * abs(baseline))
    if (direction or current.direction) == "higher":
        return current.upper < baseline - tolerance
    return current.lower > baseline + tolerance


def z_value(confidence: float) -> float:
    """Two-sided normal quantile: 1.96 for 0.95."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when ``n == 0``.

    >>> [round(b, 3) for b in wilson(7, 10)]
    [0.397, 0.892]
    """
    if n == 0:
        return 0.0, 1.0
    z = z_value(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def resample_weights(n: int, n_resamples: int, rng: np.random.Generator) -> Iterator[FloatArray]:
    """Bootstrap resamples as row multiplicities, in chunks of at most
    :data:`MAX_CELLS` cells: resampling rows with replacement is the same as
    weighting each row by how often it was drawn, which vectorizes."""
    per_chunk = max(1, MAX_CELLS // max(n, 1))
    done = 0
    while done < n_resamples:
        b = min(per_chunk, n_resamples - done)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


def bootstrap(
    statistic: Callable[[FloatArray], FloatArray],
    n: int,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` (weights (b, n) -> values (b,))."""
    return bootstrap_columns(
        lambda w: statistic(w)[:, None],
        n,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )[0]


def bootstrap_columns(
    statistic: Callable[[FloatArray], FloatArray],
    n: int,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> list[tuple[float, float]]:
    """Percentile intervals of several statistics computed together
    (weights (b, n) -> values (b, k)), one per column, from the same resamples."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples!r}")
    rng = np.random.default_rng(seed)
    stats = np.concatenate([statistic(w) for w in resample_weights(n, n_resamples, rng)])
    return [percentiles(stats[:, j], confidence) for j in range(stats.shape[1])]


def percentiles(stats: FloatArray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` range of ``stats`` (NaNs dropped)."""
    z_value(confidence)  # validates
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    # Outward order statistics, not interpolated ones: metrics of a window
    # are discrete (k / n), and a limit between two attainable values
    # drops the mass of the outer one, so coverage fell short by 1-2 points.
    lo = np.quantile(stats, tail, method="lower")
    hi = np.quantile(stats, 1.0 - tail, method="higher")
    return float(lo), float(hi)


#: Which way each metric improves.
DIRECTIONS: dict[str, Direction] = {
    "accuracy": "higher",
    "precision": "higher",
    "recall": "higher",
    "f1": "higher",
    "roc_auc": "higher",
    "log_loss": "lower",
    "mae": "lower",
    "rmse": "lower",
    "mape": "lower",
}


def metric(
    name: str,
    value: float,
    interval: tuple[float, float],
    n: int,
    method: str,
    confidence: float = CONFIDENCE,
) -> MetricValue:
    """A :class:`MetricValue` (direction from :data:`DIRECTIONS`) whose interval
    is widened to hold ``value`` (a percentile interval of a skewed statistic
    can miss its own point)."""
    lo, hi = interval
    if not math.isnan(value):
        lo = value if math.isnan(lo) else min(lo, value)
        hi = value if math.isnan(hi) else max(hi, value)
    return MetricValue(
        name=name,
        value=float(value),
        lower=float(lo),
        upper=float(hi),
        n=n,
        method=method,
        direction=DIRECTIONS[name],
        confidence=confidence,
    )


def ratio(num: Any, den: Any) -> FloatArray:
    """``num / den`` with 0 where ``den == 0`` (scikit-learn's ``zero_division=0``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def weighted_auc(scores: FloatArray, positive: FloatArray, weights: FloatArray) -> FloatArray:
    """ROC AUC per row of ``weights`` (b, n) and ``positive`` ((b, n) or (n,)),
    ties counted half (as scikit-learn); NaN where a class has no weight.

    Sorting and grouping the scores once serves every resample or simulation.
    """
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    pos = np.broadcast_to(positive, weights.shape)[:, order] * weights[:, order]
    neg = weights[:, order] - pos
    starts = np.concatenate([[0], np.flatnonzero(np.diff(s)) + 1])
    pos_g = np.add.reduceat(pos, starts, axis=1)
    neg_g = np.add.reduceat(neg, starts, axis=1)
    below = np.cumsum(neg_g, axis=1) - neg_g  # negatives strictly below each group
    wins = np.sum(pos_g * (below + 0.5 * neg_g), axis=1)
    total = pos_g.sum(axis=1) * neg_g.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, wins / total, np.nan)
