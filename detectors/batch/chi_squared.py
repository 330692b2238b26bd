"""Chi-squared test of homogeneity (``scipy.stats.chi2_contingency``)."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from detectors.batch._binning import quantile_counts
from detectors.batch._data import Pair
from detectors.batch.base import BINARY, CATEGORICAL, NUMERIC, BatchTest, Kind, Outcome, check_int


class ChiSquared(BatchTest):
    """Chi-squared test that reference and current share one distribution.

    This is the test of homogeneity on the 2 x k table of counts, which
    accounts for sampling noise on *both* sides. Evidently's ``chisquare``
    is a goodness-of-fit test that takes the reference frequencies as exact,
    which makes it anti-conservative on large samples; hence the different
    config name. No Yates correction, so on a binary column the statistic is
    the square of :class:`~detectors.batch.z_test.ZTest`'s.

    Numeric columns are binned at ``n_bins`` reference quantiles, outer bins
    open-ended. Runs exactly from a profile (for numeric columns when
    ``n_bins`` divides the profile's bins).

    Parameters
    ----------
    threshold
        Significance level; drift when ``p_value < threshold``.
    n_bins
        Quantile bins for numeric columns.

    Examples
    --------
    >>> ref = ["a"] * 50 + ["b"] * 50
    >>> cur = ["a"] * 70 + ["b"] * 30
    >>> r = ChiSquared().run(ref, cur, column_type="categorical")
    >>> round(r.statistic, 4), round(r.p_value, 4), r.drift
    (8.3333, 0.0039, True)

    """

    name: ClassVar[str] = "chi2"
    column_types: ClassVar[tuple[str, ...]] = (CATEGORICAL, BINARY, NUMERIC)
    statistic_name: ClassVar[str] = "chi2"
    default_threshold: ClassVar[float] = 0.05
    kind: ClassVar[Kind] = "p_value"
    from_profile: ClassVar[Literal["exact", "approximate", "no"]] = "exact"

    def __init__(self, threshold: float | None = None, n_bins: int = 10) -> None:
        super().__init__(threshold)
        self.n_bins = check_int("n_bins", n_bins, self.name, 2)

    def compute(self, pair: Pair) -> Outcome:
        from scipy.stats import chi2_contingency

        ref, cur, approximate = quantile_counts(pair, self.n_bins)
        table = np.vstack([ref, cur])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:  # one category on both sides: nothing can differ
            return Outcome(0.0, 1.0, approximate)
        res = chi2_contingency(table, correction=False)
        return Outcome(float(res.statistic), float(res.pvalue), approximate)
