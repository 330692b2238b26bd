"""The column-wise check: inputs, overrides, errors, and equivalences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.batch import build_test, check
from detectors.batch.check import PreparedReference
from detectors.batch.psi import PSI
from detectors.batch.synthetic import make_drift_data


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return make_drift_data(5000, seed=9)


def _key(results):  # type: ignore[no-untyped-def]
    return [(r.column, r.test, r.statistic, r.p_value, r.drift) for r in results]


def test_one_result_per_column_in_order(data) -> None:  # type: ignore[no-untyped-def]
    results = check(data.reference, data.current, data.column_types)
    assert [r.column for r in results] == list(data.column_types)


def test_dataframe_input_equals_dict_input(data) -> None:  # type: ignore[no-untyped-def]
    ref, cur = pd.DataFrame(data.reference), pd.DataFrame(data.current)
    assert _key(check(ref, cur, data.column_types)) == _key(
        check(data.reference, data.current, data.column_types)
    )


def test_pandas_categorical_and_nullable_dtypes() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {
            "c": pd.Categorical(rng.choice(["x", "y", "z"], 3000)),
            "i": pd.array(rng.integers(0, 50, 3000), dtype="Int64"),
        }
    )
    cur = pd.DataFrame(
        {
            "c": pd.Categorical(rng.choice(["x", "y"], 3000), categories=["y", "x", "w"]),
            "i": pd.array([*rng.integers(0, 50, 2999).tolist(), None], dtype="Int64"),
        }
    )
    types = {"c": "categorical", "i": "numeric"}
    got = check(ref, cur, types)
    plain = check(
        {"c": np.asarray(ref["c"], dtype=object), "i": ref["i"].to_numpy(float)},
        {"c": np.asarray(cur["c"], dtype=object), "i": cur["i"].to_numpy(float, na_value=np.nan)},
        types,
    )
    assert _key(got) == _key(plain)
    assert got[0].drift  # "z" vanished from current


def test_prepared_reference_and_workers_give_identical_results(data) -> None:  # type: ignore[no-untyped-def]
    base = _key(check(data.reference, data.current, data.column_types, workers=1))
    prepared = PreparedReference(data.reference, data.column_types)
    assert _key(check(prepared, data.current)) == base
    assert _key(check(data.reference, data.current, data.column_types, workers=2)) == base


def test_overrides_by_name_and_instance(data) -> None:  # type: ignore[no-untyped-def]
    results = check(
        data.reference,
        data.current,
        data.column_types,
        tests={"num_00": "ks", "num_03": PSI(threshold=0.5, bins=10), "cat_3": "z"},
    )
    by_col = {r.column: r for r in results}
    assert by_col["num_00"].test == "ks" and by_col["num_00"].p_value is not None
    assert by_col["num_03"].test == "psi" and by_col["num_03"].threshold == 0.5
    assert by_col["cat_3"].test == "z"
    assert by_col["num_01"].test == "wasserstein"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"column_types": {"nope": "numeric"}}, "column 'nope' is missing from current"),
        ({"column_types": {"num_00": "text"}}, "column 'num_00': unknown column type 'text'"),
        ({"tests": {"num_00": "kss"}}, r"unknown batch test 'kss' \(did you mean 'ks'\?\)"),
        ({"tests": {"cat_0": "ks"}}, "tests: column 'cat_0': test 'ks' does not take categorical"),
        ({"tests": {"zzz": "ks"}}, "tests: column 'zzz' is not among the checked columns"),
        ({"workers": 0}, "workers must be an integer >= 1, got 0"),
        ({"column_types": None}, "column_types is required unless the reference is a profile"),
    ],
)
def test_errors_name_the_problem(data, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    args = {"column_types": data.column_types, **kwargs}
    with pytest.raises(ValueError, match=message):
        check(data.reference, data.current, **args)


def test_missing_values_do_not_count_as_drift() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=5000)
    cur = rng.normal(size=5000)
    cur[::10] = np.nan
    r = check({"x": ref}, {"x": cur}, {"x": "numeric"})[0]
    assert not r.drift
    assert r == build_test("wasserstein").run(ref, cur[~np.isnan(cur)], column="x")


def test_non_numbers_in_a_numeric_column() -> None:
    with pytest.raises(ValueError, match="column 'x': numeric column holds non-numbers"):
        check({"x": np.array(["a", "b"], dtype=object)}, {"x": np.ones(2)}, {"x": "numeric"})
