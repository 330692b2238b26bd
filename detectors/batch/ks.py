"""Two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from detectors.batch._data import NumericPair, Pair
from detectors.batch.base import NUMERIC, BatchTest, Kind, Outcome


class KS(BatchTest):
    """Kolmogorov-Smirnov test: the largest gap between the two empirical CDFs.

    Sensitive to any difference in distribution, and at a million rows to
    differences far too small to matter: prefer a distance test there (see
    :mod:`detectors.batch.defaults`). Needs the raw reference.

    Parameters
    ----------
    threshold
        Significance level; drift when ``p_value < threshold``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> r = KS().run(rng.normal(size=500), rng.normal(0.5, 1.0, size=500))
    >>> r.test, r.statistic_name, r.drift, r.threshold
    ('ks', 'D', True, 0.05)
    >>> KS(threshold=1.5)
    Traceback (most recent call last):
    ...
    ValueError: ks: threshold must be in (0, 1), got 1.5

    """

    name: ClassVar[str] = "ks"
    column_types: ClassVar[tuple[str, ...]] = (NUMERIC,)
    statistic_name: ClassVar[str] = "D"
    default_threshold: ClassVar[float] = 0.05
    kind: ClassVar[Kind] = "p_value"
    from_profile: ClassVar[Literal["exact", "approximate", "no"]] = "no"

    def compute(self, pair: Pair) -> Outcome:
        from scipy.stats import ks_2samp

        assert isinstance(pair, NumericPair)
        ref = pair.sorted_ref(self.name)
        res = ks_2samp(ref, pair.sorted_cur)
        return Outcome(float(res.statistic), float(res.pvalue))
