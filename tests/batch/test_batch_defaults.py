"""Size-aware defaults: the right test at every size, and the acceptance
check (exactly the shifted columns flagged at 10k, 100k and 1M rows)."""

from __future__ import annotations

import pytest

from detectors.batch import build_test, check, default_test
from detectors.batch.chi_squared import ChiSquared
from detectors.batch.jensen_shannon import JensenShannon
from detectors.batch.ks import KS
from detectors.batch.synthetic import make_drift_data
from detectors.batch.wasserstein import Wasserstein
from detectors.batch.z_test import ZTest


@pytest.mark.parametrize(
    ("column_type", "n_ref", "n_cur", "expected"),
    [
        ("numeric", 1000, 1000, KS()),
        ("numeric", 1001, 1001, Wasserstein()),
        ("numeric", 1_000_000, 500, KS()),  # the smaller side decides
        ("categorical", 300, 10_000, ChiSquared()),
        ("categorical", 5000, 5000, JensenShannon()),
        ("binary", 200, 200, ZTest()),
        ("binary", 20_000, 20_000, JensenShannon()),
    ],
)
def test_table(column_type: str, n_ref: int, n_cur: int, expected: object) -> None:
    assert default_test(column_type, n_ref, n_cur) == expected


def test_from_profile_avoids_tests_that_need_raw_data() -> None:
    assert default_test("numeric", 100_000, 300, from_profile=True) == ChiSquared()
    for ctype in ("numeric", "categorical", "binary"):
        for n in (100, 10_000):
            assert default_test(ctype, n, n, from_profile=True).from_profile != "no"


@pytest.fixture(scope="module")
def data_1m():  # type: ignore[no-untyped-def]
    return make_drift_data(1_000_000, seed=7)


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_defaults_flag_exactly_the_shifted_columns(n: int) -> None:
    d = make_drift_data(n, seed=n)
    flagged = {r.column for r in check(d.reference, d.current, d.column_types) if r.drift}
    assert flagged == d.shifted


def test_defaults_flag_exactly_the_shifted_columns_at_1m(data_1m) -> None:  # type: ignore[no-untyped-def]
    d = data_1m
    results = check(d.reference, d.current, d.column_types)
    assert {r.column for r in results if r.drift} == d.shifted
    assert {r.test for r in results} == {"wasserstein", "jensenshannon"}


def test_p_value_tests_flag_irrelevant_drift_at_1m(data_1m) -> None:  # type: ignore[no-untyped-def]
    """The failure the defaults avoid: at 1M rows KS and chi-squared call a
    0.01-sd shift and a 0.2-point share change significant."""
    d = data_1m
    assert build_test("ks").run(d.reference["num_01"], d.current["num_01"]).drift
    chi2 = build_test("chi2")
    assert chi2.run(d.reference["cat_2"], d.current["cat_2"], column_type="categorical").drift


def test_small_samples_use_p_value_tests() -> None:
    d = make_drift_data(800, seed=11)
    results = check(d.reference, d.current, d.column_types)
    assert {r.test for r in results} == {"ks", "chi2", "z"}
    flagged = {r.column for r in results if r.drift}
    # at 800 rows the 0.5-sd shift and the moved shares are found; smaller
    # shifts are below what 800 rows can show, and few false alarms remain
    assert {"num_03", "cat_1"} <= flagged
    assert len(flagged - d.shifted) <= 2


def test_stable_data_stays_quiet_across_seeds() -> None:
    false_alarms = 0
    for seed in range(5):
        d = make_drift_data(20_000, seed=100 + seed)
        same = make_drift_data(20_000, seed=200 + seed).reference  # a fresh sample, no drift
        results = check(d.reference, same, d.column_types)
        false_alarms += sum(r.drift for r in results)
    assert false_alarms == 0
