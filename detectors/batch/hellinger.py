"""Hellinger distance."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from detectors.batch._binning import profile_bin_counts, sorted_bin_counts, sturges_edges
from detectors.batch._data import CategoricalPair, NumericPair, Pair, distinct
from detectors.batch._values import FloatArray
from detectors.batch.base import BINARY, CATEGORICAL, NUMERIC, BatchTest, Kind, Outcome


class Hellinger(BatchTest):
    """Hellinger distance ``sqrt(1 - sum(sqrt(r * c)))`` between binned shares.

    In [0, 1]. Categories are their own bins. Numeric columns are binned as
    Evidently 0.7.23 does for this test: equal-width bins over the combined
    range, their number given by Sturges' rule on the count of *distinct*
    values of both samples (not on the sample size, as for PSI). From a
    profile that count is estimated, hence approximate.

    Parameters
    ----------
    threshold
        Drift when the distance is ``>= threshold``.

    Examples
    --------
    >>> ref = ["a"] * 60 + ["b"] * 40
    >>> cur = ["a"] * 40 + ["b"] * 60
    >>> r = Hellinger().run(ref, cur, column_type="categorical")
    >>> round(r.statistic, 4), r.drift
    (0.1421, True)

    """

    name: ClassVar[str] = "hellinger"
    column_types: ClassVar[tuple[str, ...]] = (NUMERIC, CATEGORICAL, BINARY)
    statistic_name: ClassVar[str] = "hellinger_distance"
    default_threshold: ClassVar[float] = 0.1
    kind: ClassVar[Kind] = "distance"
    from_profile: ClassVar[Literal["exact", "approximate", "no"]] = "approximate"

    def compute(self, pair: Pair) -> Outcome:
        ref: FloatArray
        cur: FloatArray
        if isinstance(pair, CategoricalPair):
            ref, cur = pair.ref_counts.astype(np.float64), pair.cur_counts.astype(np.float64)
            approximate = False
        else:
            ref, cur, approximate = _numeric_counts(pair)
        value = hellinger(ref / pair.n_ref, cur / pair.n_cur)
        return Outcome(float(value), None, approximate)


def hellinger(ref_share: FloatArray, cur_share: FloatArray) -> FloatArray:
    """Hellinger distance along the last axis.

    >>> hellinger(np.array([0.5, 0.5]), np.array([1.0, 0.0])).round(4)
    np.float64(0.5412)
    """
    overlap = np.clip(np.sum(np.sqrt(ref_share * cur_share), axis=-1), 0.0, 1.0)
    return np.sqrt(1.0 - overlap)


def _numeric_counts(pair: NumericPair) -> tuple[FloatArray, FloatArray, bool]:
    cur_vals = distinct(pair.sorted_cur)[0]
    lo = min(pair.ref_min, float(cur_vals[0]))
    hi = max(pair.ref_max, float(cur_vals[-1]))
    profile = pair.profile
    if profile is None:
        ref_sorted = pair.sorted_ref("hellinger")
        n_distinct = _union_size(distinct(ref_sorted)[0], cur_vals)
        edges = sturges_edges(lo, hi, n_distinct, pair.integer)
        ref = sorted_bin_counts(ref_sorted, edges)
        approximate = False
    else:
        if profile.values is not None:
            n_distinct = _union_size(np.asarray(profile.values), cur_vals)
        else:
            # Shared values are unknown; integer data shares the ones in range,
            # continuous data shares essentially none.
            inside = (cur_vals >= profile.min) & (cur_vals <= profile.max)
            shared = int(np.count_nonzero(inside)) if profile.integer else 0
            n_distinct = profile.n_unique + cur_vals.size - min(shared, profile.n_unique)
        edges = sturges_edges(lo, hi, n_distinct, pair.integer)
        ref = profile_bin_counts(profile, edges)
        approximate = profile.values is None
    return ref, sorted_bin_counts(pair.sorted_cur, edges), approximate


def _union_size(a: FloatArray, b: FloatArray) -> int:
    """Size of the union of two sorted arrays of distinct values."""
    idx = np.minimum(np.searchsorted(a, b), a.size - 1)
    shared = int(np.count_nonzero(a[idx] == b))
    return int(a.size + b.size - shared)
