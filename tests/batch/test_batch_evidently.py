"""driftd's statistics equal Evidently 0.7.23's on the same data, for every
test both libraries have, to 1e-6 relative.

Evidently's functions are called directly on pandas Series; it is imported
once for the module (about 5 s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import anderson_ksamp, chi2_contingency

from detectors.batch import BINARY, CATEGORICAL, NUMERIC, build_test
from detectors.batch.chi_squared import ChiSquared
from detectors.batch.z_test import ZTest

evidently = pytest.importorskip("evidently")

from evidently.legacy.calculations.stattests.anderson_darling_stattest import (  # noqa: E402
    _anderson_darling,
)
from evidently.legacy.calculations.stattests.hellinger_distance import (  # noqa: E402
    _hellinger_distance,
)
from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon  # noqa: E402
from evidently.legacy.calculations.stattests.ks_stattest import _ks_stat_test  # noqa: E402
from evidently.legacy.calculations.stattests.psi import _psi  # noqa: E402
from evidently.legacy.calculations.stattests.wasserstein_distance_norm import (  # noqa: E402
    _wasserstein_distance_norm,
)
from evidently.legacy.calculations.stattests.z_stattest import (  # noqa: E402
    _z_stat_test,
    proportions_diff_z_stat_ind,
)
from evidently.legacy.core import ColumnType  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:p-value (capped|floored)", "ignore:Parameter `variant`"
)

RTOL = 1e-6
rng = np.random.default_rng(20261123)

# driftd name -> (Evidently function, compared field: statistic or p_value)
PAIRS: dict[str, tuple[Callable[..., Any], str]] = {
    "ks": (_ks_stat_test, "p_value"),
    "anderson": (_anderson_darling, "p_value"),
    "wasserstein": (_wasserstein_distance_norm, "statistic"),
    "psi": (_psi, "statistic"),
    "jensenshannon": (_jensenshannon, "statistic"),
    "hellinger": (_hellinger_distance, "statistic"),
    "z": (_z_stat_test, "p_value"),
}

# name -> (reference, current, driftd column type); unequal sizes on purpose
DATA: dict[str, tuple[np.ndarray, np.ndarray, str]] = {
    "normal_shift": (rng.normal(size=3000), rng.normal(0.08, 1.1, size=2500), NUMERIC),
    "normal_same": (rng.normal(size=2000), rng.normal(size=2000), NUMERIC),
    "lognormal": (rng.lognormal(0, 0.6, 4000), rng.lognormal(0.1, 0.6, 1500), NUMERIC),
    "poisson_int": (rng.poisson(30, 3000), rng.poisson(31, 2000), NUMERIC),
    "discrete_float": (
        rng.integers(0, 8, 3000).astype(float),
        rng.integers(0, 9, 2200).astype(float),
        NUMERIC,
    ),
    "outside_range": (rng.uniform(0, 1, 1000), rng.uniform(0.5, 1.8, 1200), NUMERIC),
    "categorical": (
        rng.choice(list("abcdef"), 3000, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1]),
        rng.choice(list("abcdefg"), 2000, p=[0.25, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05]),
        CATEGORICAL,
    ),
    "binary": (
        rng.choice(["no", "yes"], 2000, p=[0.7, 0.3]),
        rng.choice(["no", "yes"], 1800, p=[0.67, 0.33]),
        BINARY,
    ),
}

CASES = [
    (test, data)
    for test in PAIRS
    for data, (_, _, ctype) in DATA.items()
    if ctype in build_test(test).column_types
    and not (test == "z" and ctype == CATEGORICAL)  # z: at most 2 categories
]
# large enough for driftd's bucketed Wasserstein path (>= 100k values in all)
DATA["normal_large"] = (rng.normal(size=60_000), rng.normal(0.01, 1.0, 55_000), NUMERIC)
DATA["integer_large"] = (rng.poisson(30, 60_000), rng.poisson(30.2, 55_000), NUMERIC)
CASES += [
    (test, data)
    for test in ("wasserstein", "psi", "jensenshannon", "hellinger")
    for data in ("normal_large", "integer_large")
]


def _evidently(test: str, ref: np.ndarray, cur: np.ndarray, ctype: str) -> float:
    func, _ = PAIRS[test]
    etype = ColumnType.Numerical if ctype == NUMERIC else ColumnType.Categorical
    # copies: Evidently's hellinger drops NaN in place
    value, _drift = func(pd.Series(ref.copy()), pd.Series(cur.copy()), etype, 0.1)
    return float(value)


@pytest.mark.parametrize(("test", "data"), CASES, ids=[f"{t}-{d}" for t, d in CASES])
def test_same_value_as_evidently(test: str, data: str) -> None:
    ref, cur, ctype = DATA[data]
    result = build_test(test).run(ref, cur, column_type=ctype)
    ours = result.p_value if PAIRS[test][1] == "p_value" else result.statistic
    assert ours is not None
    assert ours == pytest.approx(_evidently(test, ref, cur, ctype), rel=RTOL, abs=1e-12)


def test_cases_cover_every_shared_test_and_branch() -> None:
    covered = {t for t, _ in CASES}
    assert covered == set(PAIRS)
    # numeric binning: Sturges (>20 distinct), per-value (<=20), integer-typed
    assert {d for t, d in CASES if t == "psi"} >= {"normal_shift", "discrete_float", "poisson_int"}


def test_anderson_statistic_matches_evidentlys_scipy_call() -> None:
    """Evidently exposes only the (table-interpolated, clipped) p-value; the
    statistic is checked against the exact call Evidently makes."""
    interior = 0
    for ref, cur, ctype in DATA.values():
        if ctype != NUMERIC:
            continue
        r = build_test("anderson").run(ref, cur)
        expected = anderson_ksamp([pd.Series(ref).values, pd.Series(cur).values])
        assert r.statistic == pytest.approx(expected.statistic, rel=RTOL)
        interior += 0.001 < r.p_value < 0.25  # type: ignore[operator]
    assert interior >= 1  # at least one p-value not at scipy's floor or cap


def test_z_statistic_matches_evidently_formula() -> None:
    ref, cur, _ = DATA["binary"]
    ours = ZTest().run(ref, cur, column_type=BINARY).statistic
    ind = lambda x: pd.Series((x != "no").astype(int))  # noqa: E731
    assert ours == pytest.approx(proportions_diff_z_stat_ind(ind(ref), ind(cur)), rel=RTOL)


def test_chi2_is_homogeneity_not_goodness_of_fit() -> None:
    """Evidently's ``chisquare`` is a goodness-of-fit test, a different test:
    driftd's ``chi2`` equals scipy's homogeneity test on the 2 x k table."""
    ref, cur, _ = DATA["categorical"]
    cats = sorted(set(ref) | set(cur))
    table = np.array([[np.sum(ref == c) for c in cats], [np.sum(cur == c) for c in cats]])
    expected = chi2_contingency(table, correction=False)
    r = ChiSquared().run(ref, cur, column_type=CATEGORICAL)
    assert r.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_chi2_squares_z_on_binary() -> None:
    ref, cur, _ = DATA["binary"]
    z = ZTest().run(ref, cur, column_type=BINARY)
    c = ChiSquared().run(ref, cur, column_type=BINARY)
    assert c.statistic == pytest.approx(z.statistic**2, rel=1e-9)
    assert c.p_value == pytest.approx(z.p_value, rel=1e-9)
