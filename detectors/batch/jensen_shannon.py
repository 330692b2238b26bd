"""Jensen-Shannon distance (``scipy.spatial.distance.jensenshannon``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from detectors.batch._binning import binned_counts
from detectors.batch._data import Pair
from detectors.batch.base import (
    BINARY,
    CATEGORICAL,
    NUMERIC,
    BatchTest,
    Kind,
    Outcome,
    check_bins,
)


class JensenShannon(BatchTest):
    """Jensen-Shannon distance (natural log, so in [0, sqrt(ln 2)]) between the
    binned reference and current distributions.

    The square root of the Jensen-Shannon divergence, a true metric that
    stays finite on empty bins. Binning as :class:`~detectors.batch.psi.PSI`.

    Parameters
    ----------
    threshold
        Drift when the distance is ``>= threshold``.
    bins
        ``"sturges"`` (Evidently's binning) or a number of reference-quantile
        bins.

    Examples
    --------
    >>> ref = ["a"] * 60 + ["b"] * 40
    >>> cur = ["a"] * 40 + ["b"] * 60
    >>> r = JensenShannon().run(ref, cur, column_type="categorical")
    >>> round(r.statistic, 4), r.drift
    (0.1419, True)

    """

    name: ClassVar[str] = "jensenshannon"
    column_types: ClassVar[tuple[str, ...]] = (NUMERIC, CATEGORICAL, BINARY)
    statistic_name: ClassVar[str] = "jensen_shannon_distance"
    default_threshold: ClassVar[float] = 0.1
    kind: ClassVar[Kind] = "distance"
    from_profile: ClassVar[Literal["exact", "approximate", "no"]] = "approximate"

    def __init__(self, threshold: float | None = None, bins: str | int = "sturges") -> None:
        super().__init__(threshold)
        self.bins = check_bins(bins, self.name)

    def compute(self, pair: Pair) -> Outcome:
        from scipy.spatial.distance import jensenshannon

        ref, cur, approximate = binned_counts(pair, self.bins)
        value = jensenshannon(ref / pair.n_ref, cur / pair.n_cur)
        return Outcome(float(value), None, approximate)
