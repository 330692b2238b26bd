"""k-sample Anderson-Darling test (``scipy.stats.anderson_ksamp``, two samples)."""

from __future__ import annotations

import warnings
from typing import ClassVar, Literal

from detectors.batch._data import NumericPair, Pair
from detectors.batch.base import NUMERIC, BatchTest, Kind, Outcome


class AndersonDarling(BatchTest):
    """Anderson-Darling k-sample test on reference and current.

    Weighs the tails more than :class:`~detectors.batch.ks.KS`. scipy
    interpolates the p-value from a table, so it is floored at 0.001 and
    capped at 0.25: thresholds outside that range are meaningless. Uses the
    midrank variant (scipy's historical default, Evidently's behaviour).
    Needs the raw reference.

    Parameters
    ----------
    threshold
        Significance level; drift when ``p_value < threshold``. Evidently's
        default of 0.1 is kept.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> r = AndersonDarling().run(rng.normal(size=300), rng.normal(1.0, 1.0, size=300))
    >>> r.drift, r.p_value
    (True, 0.001)

    """

    name: ClassVar[str] = "anderson"
    column_types: ClassVar[tuple[str, ...]] = (NUMERIC,)
    statistic_name: ClassVar[str] = "anderson_darling"
    default_threshold: ClassVar[float] = 0.1
    kind: ClassVar[Kind] = "p_value"
    from_profile: ClassVar[Literal["exact", "approximate", "no"]] = "no"

    def compute(self, pair: Pair) -> Outcome:
        from scipy.stats import anderson_ksamp

        assert isinstance(pair, NumericPair)
        ref = pair.raw_ref(self.name)
        with warnings.catch_warnings():
            # "p-value capped/floored" is documented above, not news per call
            warnings.simplefilter("ignore", UserWarning)
            res = anderson_ksamp([ref, pair.cur], variant="midrank")
        return Outcome(float(res.statistic), float(res.pvalue))
