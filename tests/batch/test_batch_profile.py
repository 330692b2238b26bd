"""Reference profiles: JSON round trip, and checks against a profile agree
with checks against the raw reference (exactly where the docs say so)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.batch import (
    NumericProfile,
    ReferenceProfile,
    build_profile,
    build_test,
    check,
    decode_profile,
    encode_profile,
)
from detectors.batch.synthetic import make_drift_data


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    d = make_drift_data(20_000, seed=5)
    profile = decode_profile(encode_profile(build_profile(d.reference, d.column_types)))
    return d, profile


def test_profile_contents_and_json(data) -> None:  # type: ignore[no-untyped-def]
    d, profile = data
    assert isinstance(profile, ReferenceProfile)
    doc = json.loads(encode_profile(profile))
    assert set(doc["columns"]) == set(d.column_types)
    num = profile.columns["num_00"]
    assert isinstance(num, NumericProfile)
    assert len(num.quantiles) == len(num.probabilities) == 107  # 101 + 6 tail levels
    assert sum(num.counts) == num.n == 20_000
    assert sum(num.sums) == pytest.approx(d.reference["num_00"].sum())
    assert num.min == d.reference["num_00"].min() and num.max == d.reference["num_00"].max()
    assert num.mean == pytest.approx(d.reference["num_00"].mean())
    assert num.missing_rate == 0.0
    cat = profile.columns["cat_0"]
    assert sum(cat.frequencies.values()) == pytest.approx(1.0)  # type: ignore[union-attr]
    assert profile.column_types == d.column_types
    assert len(encode_profile(profile)) < 200_000  # small, whatever the row count


def test_missing_rate_and_discrete_values() -> None:
    ref = {"x": np.array([1.0, 2.0, np.nan, 2.0, 3.0]), "c": ["a", None, "b", "b"]}
    p = build_profile(ref, {"x": "numeric", "c": "categorical"}, n_bins=4)
    x = p.columns["x"]
    assert isinstance(x, NumericProfile)
    assert x.missing_rate == 0.2 and x.values == [1.0, 2.0, 3.0] and x.value_counts == [1, 2, 1]
    assert p.columns["c"].missing_rate == 0.25


CATEGORICAL_CASES = [
    (test, column)
    for test in ("chi2", "z", "psi", "jensenshannon", "hellinger")
    for column in ("cat_0", "cat_1", "cat_2", "cat_3", "cat_4")
    if test != "z" or column == "cat_3"  # z: the binary column only
]


@pytest.mark.parametrize(("test", "column"), CATEGORICAL_CASES)
def test_categorical_tests_are_exact_from_a_profile(data, test: str, column: str) -> None:  # type: ignore[no-untyped-def]
    d, profile = data
    ctype = d.column_types[column]
    t = build_test(test)
    raw = t.run(d.reference[column], d.current[column], column_type=ctype)
    prof = t.run(profile.columns[column], d.current[column], column_type=ctype)
    assert prof.statistic == pytest.approx(raw.statistic, rel=1e-12)
    assert prof.p_value == pytest.approx(raw.p_value, rel=1e-9)
    assert not prof.approximate


@pytest.mark.parametrize("high", [10, 60, 900])  # Evidently's per-value and Sturges binning
def test_discrete_numeric_is_exact_from_a_profile(high: int) -> None:
    rng = np.random.default_rng(high)
    ref, cur = rng.integers(0, high, 5000), rng.integers(0, high + 1, 4000)
    p = build_profile({"x": ref}, {"x": "numeric"}).columns["x"]
    for name in ("psi", "jensenshannon", "hellinger", "wasserstein", "chi2"):
        raw = build_test(name).run(ref, cur)
        prof = build_test(name).run(p, cur)
        assert prof.statistic == pytest.approx(raw.statistic, rel=1e-9), name
        assert prof.p_value == pytest.approx(raw.p_value, rel=1e-9), name
        assert not prof.approximate, name


@pytest.mark.parametrize("column", ["num_00", "num_03", "num_04", "num_07", "num_09", "num_16"])
def test_continuous_numeric_is_close_from_a_profile(data, column: str) -> None:  # type: ignore[no-untyped-def]
    d, profile = data
    ref, cur, p = d.reference[column], d.current[column], profile.columns[column]
    w_raw = build_test("wasserstein").run(ref, cur)
    w_prof = build_test("wasserstein").run(p, cur)
    assert w_prof.approximate and w_prof.drift == w_raw.drift
    assert w_prof.statistic == pytest.approx(w_raw.statistic, abs=0.01)
    for name in ("psi", "jensenshannon", "hellinger"):
        raw, prof = build_test(name).run(ref, cur), build_test(name).run(p, cur)
        assert prof.statistic == pytest.approx(raw.statistic, abs=0.02, rel=0.1), name
    # quantile bins: the cuts are the profile's own quantiles, so exact
    for name, params in (("chi2", {}), ("psi", {"bins": 10}), ("jensenshannon", {"bins": 20})):
        raw = build_test(name, params).run(ref, cur)
        prof = build_test(name, params).run(p, cur)
        assert prof.statistic == pytest.approx(raw.statistic, rel=1e-9), name
        assert not prof.approximate, name


@pytest.mark.parametrize("test", ["ks", "anderson"])
def test_tests_needing_raw_data_say_so(data, test: str) -> None:  # type: ignore[no-untyped-def]
    d, profile = data
    with pytest.raises(ValueError, match=f"test '{test}' needs the raw reference, not a profile"):
        build_test(test).run(profile.columns["num_00"], d.current["num_00"])


def test_check_against_a_profile_gives_the_raw_verdicts(data) -> None:  # type: ignore[no-untyped-def]
    d, profile = data
    raw = check(d.reference, d.current, d.column_types)
    prof = check(profile, d.current)  # column types come from the profile
    assert [r.drift for r in prof] == [r.drift for r in raw]
    assert {r.column for r in prof if r.drift} == d.shifted


def test_small_current_window_against_a_profile(data) -> None:  # type: ignore[no-untyped-def]
    d, profile = data
    window = {k: v[:500] for k, v in d.current.items()}
    results = check(profile, window)
    assert {r.test for r in results} == {"chi2", "z"}
    assert {"num_03", "cat_1"} <= {r.column for r in results if r.drift}


def test_profile_errors() -> None:
    with pytest.raises(ValueError, match="column 'x': no non-missing reference values"):
        build_profile({"x": np.array([np.nan])}, {"x": "numeric"})
    with pytest.raises(ValueError, match="build_profile: n_bins must be an integer >= 1"):
        build_profile({"x": np.ones(3)}, {"x": "numeric"}, n_bins=0)
    p = build_profile({"x": np.arange(5.0)}, {"x": "numeric"})
    with pytest.raises(ValueError, match="column 'x': declared categorical, profiled as numeric"):
        check(p, {"x": ["a"]}, {"x": "categorical"})
    with pytest.raises(ValueError, match="Object missing required field `n`"):
        decode_profile(b'{"columns": {"x": {"type": "numeric"}}}')
