"""Normed Wasserstein distance: W1(reference, current) / std(reference)."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from detectors.batch._data import NumericPair, Pair, distinct
from detectors.batch._values import FloatArray
from detectors.batch._wasserstein_buckets import wasserstein_buckets
from detectors.batch.base import NUMERIC, BatchTest, Kind, Outcome
from detectors.batch.profile import NumericProfile

#: Evidently's floor on the reference std, so constant columns do not divide by 0.
STD_FLOOR = 0.001
#: From this many values (both sides) the distance is computed by bucketing
#: instead of sorting (see ``_wasserstein_buckets``): same value, less work.
BUCKETS_FROM = 100_000


class Wasserstein(BatchTest):
    """Earth mover's distance between the two samples, in reference standard
    deviations (Evidently's "Wasserstein distance (normed)").

    A pure location shift of ``d`` standard deviations gives exactly ``d``,
    whatever the sample size, which is why the 0.1 default means "a tenth of
    a standard deviation" at 1,000 rows as at 10 million. Computed exactly
    (same value as ``scipy.stats.wasserstein_distance``, several times
    faster): from sorted samples, or on large samples by bucketing without a
    full sort. From a profile: approximately, from its per-bin sums.

    Parameters
    ----------
    threshold
        Drift when the normed distance is ``>= threshold``.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([0.0, 1.0, 2.0, 3.0])
    >>> r = Wasserstein().run(ref, ref + 0.5)
    >>> round(r.statistic, 6), r.drift
    (0.447214, True)

    """

    name: ClassVar[str] = "wasserstein"
    column_types: ClassVar[tuple[str, ...]] = (NUMERIC,)
    statistic_name: ClassVar[str] = "normed_wasserstein"
    default_threshold: ClassVar[float] = 0.1
    kind: ClassVar[Kind] = "distance"
    from_profile: ClassVar[Literal["exact", "approximate", "no"]] = "approximate"

    def compute(self, pair: Pair) -> Outcome:
        assert isinstance(pair, NumericPair)
        norm = max(pair.ref_std, STD_FLOOR)
        if pair.profile is not None:
            w1, approximate = wasserstein_profile(pair.profile, pair.sorted_cur)
            return Outcome(w1 / norm, None, approximate)
        ref = pair.raw_ref(self.name)
        if pair.n_ref + pair.n_cur >= BUCKETS_FROM and not pair.has_sorted():
            bucketed = wasserstein_buckets(ref, pair.cur, integer=pair.integer)
            if bucketed is not None:
                return Outcome(bucketed / norm)
        return Outcome(wasserstein_sorted(pair.sorted_ref(self.name), pair.sorted_cur) / norm)


def wasserstein_sorted(u: FloatArray, v: FloatArray) -> float:
    """First Wasserstein distance of two *sorted* samples.

    Integrates ``|Q_u(t) - Q_v(t)|`` over the quantile levels ``t``, which
    equals scipy's integral of ``|F_u(x) - F_v(x)|`` over ``x``.

    >>> from scipy.stats import wasserstein_distance
    >>> u, v = np.array([0.0, 1.0, 3.0]), np.array([5.0, 6.0])
    >>> round(wasserstein_sorted(u, v), 6), round(float(wasserstein_distance(u, v)), 6)
    (4.166667, 4.166667)
    """
    n, m = u.size, v.size
    if n == m:
        return float(np.abs(u - v).mean())
    if n * m > 2**62:  # quantile grid would overflow int64: merge the samples instead
        return _wasserstein_merge(u, v)
    iu, iv, weights = _quantile_grid(n, m)
    return float(np.abs(u[iu] - v[iv]) @ weights)


@lru_cache(maxsize=4)
def _quantile_grid(n: int, m: int) -> tuple[NDArray[np.intp], NDArray[np.intp], FloatArray]:
    # Quantile levels in units of 1/lcm(n, m): Q_u steps at multiples of L/n,
    # Q_v at multiples of L/m. Every column of a check with the same (n, m)
    # shares this grid, hence the cache.
    lcm = math.lcm(n, m)
    a, b = lcm // n, lcm // m
    steps = np.concatenate(
        [np.arange(1, n + 1, dtype=np.int64) * a, np.arange(1, m + 1, dtype=np.int64) * b]
    )
    steps.sort(kind="stable")  # two sorted runs: a linear merge
    steps = steps[np.concatenate([[True], steps[1:] != steps[:-1]])]
    weights = np.diff(steps, prepend=0) / lcm
    iu = ((steps - 1) // a).astype(np.intp)
    iv = ((steps - 1) // b).astype(np.intp)
    return iu, iv, weights


def _wasserstein_merge(u: FloatArray, v: FloatArray) -> float:
    both = np.concatenate([u, v])
    order = np.argsort(both, kind="stable")
    from_u = order < u.size
    cdf_gap = np.cumsum(from_u)[:-1] / u.size - np.cumsum(~from_u)[:-1] / v.size
    return float(np.abs(cdf_gap) @ np.diff(both[order]))


def wasserstein_profile(profile: NumericProfile, v: FloatArray) -> tuple[float, bool]:
    """W1 between a profiled reference and sorted current values; (value, approximate).

    For each profile bin (a slice of quantile levels holding known reference
    values) the reference's share of ``integral Q_ref`` is its bin sum; the
    current's is read off its sorted values. ``|difference|`` per bin is the
    exact W1 contribution unless the quantile functions cross inside the
    bin, where it is less: the estimate never exceeds the exact distance.
    """
    if profile.values is not None and profile.value_counts is not None:
        # discrete reference: its CDF is known exactly, integrate |F_ref - F_cur|
        vals = np.asarray(profile.values)
        cum = np.concatenate([[0], np.cumsum(profile.value_counts)]) / profile.n
        points = np.union1d(vals, distinct(v)[0])
        f_ref = cum[np.searchsorted(vals, points, side="right")]
        f_cur = np.searchsorted(v, points, side="right") / v.size
        return float(np.abs(f_ref - f_cur)[:-1] @ np.diff(points)), False
    levels = np.concatenate([[0], np.cumsum(profile.counts)]) / profile.n
    ref_part = np.asarray(profile.sums) / profile.n
    cur_part = np.diff(_integral_of_quantiles(v, levels))
    return float(np.abs(ref_part - cur_part).sum()), True


def _integral_of_quantiles(v: FloatArray, levels: FloatArray) -> FloatArray:
    """``integral_0^t Q_v(s) ds`` at each level t, for sorted v."""
    m = v.size
    cum = np.concatenate([[0.0], np.cumsum(v)])
    pos = levels * m
    whole = np.minimum(np.floor(pos).astype(np.intp), m)
    frac = pos - whole
    partial = np.where(whole < m, v[np.minimum(whole, m - 1)], 0.0) * frac
    return (cum[whole] + partial) / m
