"""Z-test for two proportions."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from detectors.batch._data import CategoricalPair, Pair
from detectors.batch.base import BINARY, CATEGORICAL, BatchTest, Kind, Outcome


class ZTest(BatchTest):
    """Pooled two-proportion z-test on a column with at most two categories.

    The proportion tested is the share of every category but the first in
    sorted order (Evidently's convention); ``statistic`` is
    ``(p_ref - p_cur) / sqrt(P (1 - P) (1/n_ref + 1/n_cur))`` with ``P`` the
    pooled proportion, and the p-value is two-sided. Runs exactly from a
    profile.

    Parameters
    ----------
    threshold
        Significance level; drift when ``p_value < threshold``.

    Examples
    --------
    >>> ref = [0] * 50 + [1] * 50
    >>> cur = [0] * 70 + [1] * 30
    >>> r = ZTest().run(ref, cur, column_type="binary")
    >>> round(r.statistic, 4), round(r.p_value, 4), r.drift
    (2.8868, 0.0039, True)

    """

    name: ClassVar[str] = "z"
    column_types: ClassVar[tuple[str, ...]] = (BINARY, CATEGORICAL)
    statistic_name: ClassVar[str] = "z"
    default_threshold: ClassVar[float] = 0.05
    kind: ClassVar[Kind] = "p_value"
    from_profile: ClassVar[Literal["exact", "approximate", "no"]] = "exact"

    def compute(self, pair: Pair) -> Outcome:
        from scipy.special import ndtr

        assert isinstance(pair, CategoricalPair)
        k = len(pair.categories)
        if k > 2:
            raise ValueError(
                f"column {pair.column!r}: test 'z' takes at most 2 categories, got {k} (use 'chi2')"
            )
        n1, n2 = pair.n_ref, pair.n_cur
        p1 = 1.0 - pair.ref_counts[0] / n1
        p2 = 1.0 - pair.cur_counts[0] / n2
        pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
        var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
        if var == 0.0:  # both sides hold the same single category
            return Outcome(0.0, 1.0)
        z = (p1 - p2) / math.sqrt(var)
        # ndtr(-|z|) rather than 1 - cdf(|z|): keeps precision in the tail
        return Outcome(z, float(2.0 * ndtr(-abs(z))))
