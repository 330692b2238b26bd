"""Population Stability Index."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from detectors.batch._binning import binned_counts, fill_zeros
from detectors.batch._data import Pair
from detectors.batch._values import FloatArray
from detectors.batch.base import (
    BINARY,
    CATEGORICAL,
    NUMERIC,
    BatchTest,
    Kind,
    Outcome,
    check_bins,
)


class PSI(BatchTest):
    """Population Stability Index: ``sum((r - c) * ln(r / c))`` over bins.

    ``r`` and ``c`` are the reference and current shares per bin, with empty
    bins filled as Evidently does (see
    :func:`~detectors.batch._binning.fill_zeros`). PSI grows with the square
    of a small shift (a 0.2 standard-deviation mean shift gives about 0.04),
    so it misses shifts that normed Wasserstein sees.

    Parameters
    ----------
    threshold
        Drift when PSI ``>= threshold`` (0.1: "moderate change" by the usual
        rule of thumb).
    bins
        ``"sturges"`` bins numeric columns as Evidently 0.7.23 does (equal
        width over the combined range; same value as Evidently on raw data);
        an integer cuts that many reference-quantile bins (the textbook PSI).

    Examples
    --------
    >>> ref = ["a"] * 60 + ["b"] * 40
    >>> cur = ["a"] * 40 + ["b"] * 60
    >>> r = PSI().run(ref, cur, column_type="categorical")
    >>> round(r.statistic, 4), r.drift
    (0.1622, True)
    >>> PSI(bins=1)
    Traceback (most recent call last):
    ...
    ValueError: psi: bins must be 'sturges' or an integer >= 2 (reference-quantile bins), got 1

    """

    name: ClassVar[str] = "psi"
    column_types: ClassVar[tuple[str, ...]] = (NUMERIC, CATEGORICAL, BINARY)
    statistic_name: ClassVar[str] = "psi"
    default_threshold: ClassVar[float] = 0.1
    kind: ClassVar[Kind] = "distance"
    from_profile: ClassVar[Literal["exact", "approximate", "no"]] = "approximate"

    def __init__(self, threshold: float | None = None, bins: str | int = "sturges") -> None:
        super().__init__(threshold)
        self.bins = check_bins(bins, self.name)

    def compute(self, pair: Pair) -> Outcome:
        ref, cur, approximate = binned_counts(pair, self.bins)
        value = psi(fill_zeros(ref / pair.n_ref), fill_zeros(cur / pair.n_cur))
        return Outcome(float(value), None, approximate)


def psi(ref_share: FloatArray, cur_share: FloatArray) -> FloatArray:
    """PSI along the last axis (so a stack of columns binned alike runs in one call).

    >>> psi(np.array([[0.5, 0.5], [0.6, 0.4]]), np.array([[0.5, 0.5], [0.4, 0.6]])).round(4)
    array([0.    , 0.1622])
    """
    return np.sum((ref_share - cur_share) * np.log(ref_share / cur_share), axis=-1)
