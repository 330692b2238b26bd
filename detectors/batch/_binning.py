"""Binning shared by the histogram-based tests (PSI, Jensen-Shannon,
Hellinger, binned chi-squared).

``evidently_counts`` reproduces Evidently 0.7.23's ``get_binned_data``
(``legacy/calculations/stattests/utils.py``) exactly on raw data:

* a numeric column whose *reference* has more than 20 distinct values is cut
  into equal-width bins over the combined range, with numpy's Sturges rule
  applied to the combined size (ceil(log2(n_ref + n_cur) + 1) bins);
* any other column is counted per distinct value over the union of values.

Evidently's docstring says "reference quantiles" and its ``n_bins`` argument
is ignored; the code above is what runs. ``quantile_counts`` is the other
common choice (bins at reference quantiles, open-ended outer bins), used by
``bins=<int>`` and by the binned chi-squared test.

Counts come back as float64 because, from a profile, reference counts in
bins that do not coincide with the profile's quantiles are interpolated.
"""

from __future__ import annotations

import numpy as np

from detectors.batch._data import CategoricalPair, NumericPair, Pair, distinct
from detectors.batch._values import FloatArray
from detectors.batch.profile import DISCRETE_MAX, NumericProfile

Counts = tuple[FloatArray, FloatArray, bool]  # reference, current, approximate


def sturges_edges(lo: float, hi: float, size: int, integer: bool) -> FloatArray:
    """``np.histogram_bin_edges(x, "sturges")`` from x's min, max and size only.

    >>> x = np.array([0.0, 1.0, 2.5, 7.0, 3.0])
    >>> bool(np.array_equal(sturges_edges(0.0, 7.0, 5, False),
    ...                     np.histogram_bin_edges(x, "sturges")))
    True
    """
    if lo == hi:  # numpy widens a zero range by 0.5 each side, one bin
        return np.linspace(lo - 0.5, hi + 0.5, 2)
    width = (hi - lo) / (np.log2(size) + 1.0)
    if integer and width < 1:
        width = 1.0
    n_bins = int(np.ceil((hi - lo) / width))
    return np.linspace(lo, hi, n_bins + 1)


def sorted_bin_counts(sorted_values: FloatArray, edges: FloatArray) -> FloatArray:
    """numpy.histogram counts (``[e_i, e_i+1)``, last bin closed) of sorted data."""
    left = np.searchsorted(sorted_values, edges, side="left")
    left[-1] = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(left).astype(np.float64)


def profile_below(profile: NumericProfile, x: FloatArray) -> FloatArray:
    """Reference count below each ``x``: exact at the profile's edges and for
    discrete columns, linearly interpolated in between."""
    if profile.values is not None and profile.value_counts is not None:
        cum = np.concatenate([[0], np.cumsum(profile.value_counts)])
        return cum[np.searchsorted(np.asarray(profile.values), x, side="left")].astype(np.float64)
    q = np.asarray(profile.quantiles)
    cum = np.concatenate([[0], np.cumsum(profile.counts)]).astype(np.float64)
    edges, first = np.unique(q, return_index=True)
    return np.interp(x, edges, cum[first], left=0.0, right=float(profile.n))


def profile_bin_counts(profile: NumericProfile, edges: FloatArray) -> FloatArray:
    """Reference counts in histogram bins ``edges`` (last bin closed, ends at or above max)."""
    below = profile_below(profile, edges)
    below[-1] = profile.n
    return np.diff(below)


def evidently_counts(pair: Pair) -> Counts:
    """Counts per bin as Evidently's ``get_binned_data`` forms them."""
    if isinstance(pair, CategoricalPair):
        return _as_float(pair.ref_counts), _as_float(pair.cur_counts), False
    if pair.ref_unique > DISCRETE_MAX:
        lo = min(pair.ref_min, float(pair.cur.min()))
        hi = max(pair.ref_max, float(pair.cur.max()))
        edges = sturges_edges(lo, hi, pair.n_ref + pair.n_cur, pair.integer)
        cur = _bin_counts(pair.cur, pair, edges, current=True)
        if pair.profile is not None:
            exact = pair.profile.values is not None
            return profile_bin_counts(pair.profile, edges), cur, not exact
        return _bin_counts(pair.raw_ref("binning"), pair, edges, current=False), cur, False
    return discrete_counts(pair)


def binned_counts(pair: Pair, bins: str | int) -> Counts:
    """Counts on Evidently's Sturges bins (``"sturges"``) or on ``bins``
    reference-quantile bins."""
    if bins == "sturges":
        return evidently_counts(pair)
    assert isinstance(bins, int)
    return quantile_counts(pair, bins)


def discrete_counts(pair: NumericPair) -> Counts:
    """Counts per distinct value over the union of both sides' values."""
    ref_vals, ref_counts = pair.ref_values()
    cur_vals, cur_counts = distinct(pair.sorted_cur)
    keys = np.union1d(ref_vals, cur_vals)
    ref = np.zeros(keys.size)
    cur = np.zeros(keys.size)
    ref[np.searchsorted(keys, ref_vals)] = ref_counts
    cur[np.searchsorted(keys, cur_vals)] = cur_counts
    return ref, cur, False


def quantile_counts(pair: Pair, n_bins: int) -> Counts:
    """Counts in ``n_bins`` bins cut at reference quantiles, outer bins open-ended.

    From a profile the cuts are the profile's own quantiles, exact when
    ``n_bins`` divides the profile's number of bins.
    """
    if isinstance(pair, CategoricalPair):
        return _as_float(pair.ref_counts), _as_float(pair.cur_counts), False
    probs = np.arange(n_bins + 1) / n_bins  # the levels profiles store (see profile.py)
    profile = pair.profile
    if profile is None:
        ref = pair.sorted_ref("binning")
        cuts = np.unique(np.quantile(ref, probs)[1:-1])
        ref_counts = _open_counts(ref, cuts)
        approximate = False
    else:
        stored = np.asarray(profile.probabilities)
        qs = np.asarray(profile.quantiles)
        at = np.searchsorted(stored, probs[1:-1])
        at = np.minimum(at, stored.size - 1)
        # the cuts are stored edges when the profile has these levels (np.quantile
        # at j/k, as from raw data), else interpolated between stored levels
        on_grid = bool(np.allclose(stored[at], probs[1:-1], rtol=0, atol=1e-12))
        cuts = np.unique(qs[at] if on_grid else np.interp(probs[1:-1], stored, qs))
        below = np.concatenate([[0.0], profile_below(profile, cuts), [float(profile.n)]])
        ref_counts = np.diff(below)
        approximate = not on_grid and profile.values is None
    if pair.has_sorted():
        return ref_counts, _open_counts(pair.sorted_cur, cuts), approximate
    cur_counts = np.bincount(np.searchsorted(cuts, pair.cur, side="right"), minlength=cuts.size + 1)
    return ref_counts, _as_float(cur_counts), approximate


def fill_zeros(percents: FloatArray) -> FloatArray:
    """Evidently's ``feel_zeroes``: empty bins get min(nonzero)/1e6, or 1e-4 if
    the smallest nonzero share is above 1e-4 (keeps PSI finite)."""
    nonzero = percents[percents != 0]
    smallest = float(nonzero.min())
    fill = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(percents == 0, fill, percents)


def _open_counts(sorted_values: FloatArray, cuts: FloatArray) -> FloatArray:
    # x goes to bin searchsorted(cuts, x, "right"): bin i is [cut_{i-1}, cut_i)
    below = np.searchsorted(sorted_values, cuts, side="left")
    return np.diff(np.concatenate([[0], below, [sorted_values.size]])).astype(np.float64)


def _bin_counts(
    values: FloatArray, pair: NumericPair, edges: FloatArray, current: bool
) -> FloatArray:
    if pair.has_sorted():
        return sorted_bin_counts(pair.sorted_cur if current else pair.sorted_ref("binning"), edges)
    # numpy's equal-width fast path: O(n), and it places values exactly as the
    # searchsorted path does (it corrects the arithmetic bin against the edges)
    counts, _ = np.histogram(values, bins=edges.size - 1, range=(edges[0], edges[-1]))
    return counts.astype(np.float64)


def _as_float(counts: np.ndarray) -> FloatArray:
    return np.asarray(counts, dtype=np.float64)
