"""Size-aware choice of the default test for a column.

A p-value answers "could these two samples come from one distribution?".
With a million rows per side the answer is "no" for differences of a
hundredth of a standard deviation, which nobody wants to be paged about:
KS at p < 0.05 then flags columns that are stable for every practical
purpose. A distance answers "how different are they?", and its threshold
means the same thing at every sample size, but on small samples its own
sampling noise reaches the threshold. So, like Evidently, driftd tests
small samples and measures large ones:

============  ==================================  ==================================
column type   n <= 1000                           n > 1000
============  ==================================  ==================================
numeric       ``ks``: KS test, p < 0.05           ``wasserstein``: normed Wasserstein
                                                  distance >= 0.1
categorical   ``chi2``: chi-squared homogeneity   ``jensenshannon``: Jensen-Shannon
              test, p < 0.05                      distance >= 0.1
binary        ``z``: two-proportion z-test,       ``jensenshannon``: Jensen-Shannon
              p < 0.05                            distance >= 0.1
============  ==================================  ==================================

``n`` is the *smaller* of the two sample sizes (non-missing values), where
Evidently 0.7.23 looks at the reference size only: against a large
reference, a stable 200-row window of normal data has a normed Wasserstein
distance of 0.09 on average from sampling noise alone, and 0.1 or more in
about 30% of windows. Just above 1,000 rows per side, about 4% of stable
normal columns reach 0.1 (the false-alarm rate of the p < 0.05 tests below
the switch); at 3,000 rows per side, none of 300 trials did.

When the reference is a stored profile, numeric columns with n <= 1000 get
``chi2`` on 10 reference-decile bins instead of ``ks``, which needs every
reference value. The other choices run from a profile as they are.

The large-sample thresholds are effect sizes: normed Wasserstein 0.1 is a
mean shift of a tenth of a reference standard deviation (or an equivalent
change of shape); Jensen-Shannon 0.1 is, for instance, a binary column
whose share moves from 50% to 64%, or from 40% to 26%. Columns whose drift
matters at a finer grain take an explicit test and threshold.
"""

from __future__ import annotations

from detectors.batch.base import BINARY, CATEGORICAL, COLUMN_TYPES, NUMERIC, BatchTest
from detectors.batch.chi_squared import ChiSquared
from detectors.batch.jensen_shannon import JensenShannon
from detectors.batch.ks import KS
from detectors.batch.wasserstein import Wasserstein
from detectors.batch.z_test import ZTest

#: At or below this many values (on the smaller side) the default is a p-value test.
SMALL_SAMPLE = 1000


def default_test(
    column_type: str, n_reference: int, n_current: int, *, from_profile: bool = False
) -> BatchTest:
    """The default test for a column (see the module docstring for the table).

    >>> default_test("numeric", 500, 100_000)
    KS(threshold=0.05)
    >>> default_test("numeric", 1_000_000, 1_000_000)
    Wasserstein(threshold=0.1)
    >>> default_test("numeric", 100_000, 500, from_profile=True)
    ChiSquared(threshold=0.05, n_bins=10)
    >>> default_test("binary", 800, 900)
    ZTest(threshold=0.05)
    >>> default_test("text", 10, 10)
    Traceback (most recent call last):
    ...
    ValueError: unknown column type 'text'; valid: numeric, categorical, binary
    """
    if column_type not in COLUMN_TYPES:
        raise ValueError(f"unknown column type {column_type!r}; valid: {', '.join(COLUMN_TYPES)}")
    small = min(n_reference, n_current) <= SMALL_SAMPLE
    if column_type == NUMERIC:
        if not small:
            return Wasserstein()
        return ChiSquared() if from_profile else KS()
    if not small:
        return JensenShannon()
    if column_type == CATEGORICAL:
        return ChiSquared()
    assert column_type == BINARY
    return ZTest()
