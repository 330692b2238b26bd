"""The test registry and the contract every batch test follows."""

from __future__ import annotations

import importlib
import re

import msgspec
import numpy as np
import pytest

from detectors.batch import TESTS, TestResult, build_test, get_test_class
from detectors.batch.base import COLUMN_TYPES, BatchTest

NAMES = sorted(TESTS)


def _module_name(cls: type) -> str:
    # KS -> ks, ZTest -> z_test, AndersonDarling -> anderson_darling
    return re.sub(r"(?<=.)(?=[A-Z][a-z])", "_", cls.__name__).lower()


def test_registry_lists_the_required_tests() -> None:
    assert set(NAMES) >= {
        "ks",
        "anderson",
        "chi2",
        "z",
        "psi",
        "wasserstein",
        "jensenshannon",
        "hellinger",
    }


@pytest.mark.parametrize("name", NAMES)
def test_class_contract(name: str) -> None:
    cls = TESTS[name]
    assert issubclass(cls, BatchTest)
    assert cls.name == name
    # one module per test, named after the class
    assert cls.__module__ == f"detectors.batch.{_module_name(cls)}"
    assert importlib.import_module(cls.__module__).__dict__[cls.__name__] is cls
    assert cls.column_types and set(cls.column_types) <= set(COLUMN_TYPES)
    assert cls.kind in ("p_value", "distance")
    assert isinstance(cls.statistic_name, str) and cls.statistic_name
    assert cls.from_profile in ("exact", "approximate", "no")
    if cls.kind == "p_value":
        assert 0 < cls.default_threshold < 1
    else:
        assert cls.default_threshold > 0


def test_unknown_name_lists_valid_names_with_a_hint() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown batch test 'hellnger' \(did you mean 'hellinger'\?\); valid: anderson, chi2",
    ):
        get_test_class("hellnger")
    with pytest.raises(
        ValueError,
        match=r"valid: anderson, chi2, hellinger, jensenshannon, ks, psi, wasserstein, z$",
    ):
        build_test("xyz")


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(
        ValueError, match=r"unknown parameter 'n_bin' for chi2 \(did you mean 'n_bins'\?\)"
    ):
        build_test("chi2", {"n_bin": 5})


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("ks", {"threshold": 0.0}, r"ks: threshold must be in \(0, 1\), got 0.0"),
        ("ks", {"threshold": True}, "ks: threshold must be in"),
        (
            "wasserstein",
            {"threshold": -1},
            r"wasserstein: threshold must be a finite number > 0, got -1",
        ),
        ("psi", {"threshold": float("inf")}, "psi: threshold must be a finite number > 0"),
        ("psi", {"bins": "auto"}, "psi: bins must be 'sturges' or an integer >= 2"),
        ("jensenshannon", {"bins": 1}, "jensenshannon: bins must be"),
        ("chi2", {"n_bins": 1}, "chi2: n_bins must be an integer >= 2, got 1"),
    ],
)
def test_parameters_are_validated_at_construction(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_test(name, params)


def test_result_is_frozen_and_records_the_threshold_used() -> None:
    rng = np.random.default_rng(3)
    r = build_test("wasserstein", {"threshold": 0.3}).run(
        rng.normal(size=2000), rng.normal(0.2, 1, 2000)
    )
    assert isinstance(r, TestResult)
    assert (r.test, r.column, r.threshold, r.p_value, r.drift) == (
        "wasserstein",
        "value",
        0.3,
        None,
        False,
    )
    with pytest.raises(AttributeError):
        r.drift = True  # type: ignore[misc]
    assert msgspec.json.decode(msgspec.json.encode(r), type=TestResult) == r


def test_verdict_rules() -> None:
    rng = np.random.default_rng(4)
    ref, cur = rng.normal(size=500), rng.normal(0.3, 1, 500)
    ks = build_test("ks").run(ref, cur)
    assert ks.drift == (ks.p_value < 0.05)
    w = build_test("wasserstein", {"threshold": 0.25}).run(ref, cur)
    assert w.drift == (w.statistic >= 0.25)


def test_column_type_is_checked() -> None:
    with pytest.raises(ValueError, match="test 'ks' does not take categorical columns"):
        build_test("ks").run(["a", "b"], ["a"], column_type="categorical")
    with pytest.raises(ValueError, match="test 'z' takes at most 2 categories, got 3"):
        build_test("z").run(["a", "b", "c"], ["a"], column_type="categorical")
    with pytest.raises(ValueError, match="unknown column type 'text'"):
        build_test("psi").run(["a"], ["a"], column_type="text")


def test_missing_values_are_dropped() -> None:
    ref = np.array([1.0, 2.0, np.nan, 3.0, np.inf] * 50)
    cur = np.array([1.0, 2.0, 3.0, -np.inf] * 50)
    r = build_test("wasserstein").run(ref, cur)
    assert r.statistic == 0.0
    r = build_test("chi2").run(
        ["a", None, "b"] * 30, ["a", "b", float("nan")] * 30, column_type="categorical"
    )
    assert r.statistic == 0.0 and r.p_value == 1.0
    with pytest.raises(ValueError, match="no non-missing current values"):
        build_test("ks").run([1.0, 2.0], [np.nan])


def test_degenerate_columns() -> None:
    assert build_test("z").run(["a"] * 10, ["a"] * 20, column_type="binary").p_value == 1.0
    assert build_test("wasserstein").run(np.ones(100), np.ones(100)).statistic == 0.0
    r = build_test("psi").run(np.ones(100), np.full(100, 2.0))
    assert r.drift and np.isfinite(r.statistic)
