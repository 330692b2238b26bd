"""Data-quality checks: each one flags what it should and passes what it should,
on plain sequences and on a real daemon window; segments split windows."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.batch import ReferenceProfile, build_profile, decode_profile, encode_profile
from detectors.quality import (
    QualityResult,
    QualityThresholds,
    constant_column,
    duplicates,
    from_columns,
    missing_rate,
    new_categories,
    out_of_range,
    resolve_thresholds,
    run_quality,
    schema,
)
from detectors.segments import OTHER, segment_indices, segment_rows, segment_window
from monitor.windows import WindowBuffer

NUMERIC = ["x", "y"]
CATEGORICAL = ["c"]
NAMES = NUMERIC + CATEGORICAL


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(1)
    n = 5000
    x = rng.normal(10.0, 2.0, n)
    x[rng.random(n) < 0.05] = np.nan  # the reference misses 5% of x
    ref = {
        "x": x,
        "y": rng.uniform(0.0, 1.0, n),
        "c": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
    }
    p = build_profile(ref, {"x": "numeric", "y": "numeric", "c": "categorical"})
    return decode_profile(encode_profile(p))  # as the daemon would load it


def _by(results: list[QualityResult], check: str, column: str | None = None) -> QualityResult:
    [r] = [r for r in results if r.check == check and r.column == column]
    return r


# missing_rate ----------------------------------------------------------------


def test_missing_rate_at_reference_passes_and_above_fails(profile: ReferenceProfile) -> None:
    ref = profile.columns["x"]
    assert not missing_rate("x", 55, 1000, ref).failed  # 5.5% against 5%
    r = missing_rate("x", 150, 1000, ref)
    assert r.failed and r.value == 0.15
    # limit = p + max(2%, 3 * sqrt(p * (1 - p) / 1000) = 2.07%), p about 5%
    p = ref.missing_rate
    assert p == pytest.approx(0.05, abs=0.005)
    assert r.threshold == pytest.approx(p + 3 * np.sqrt(p * (1 - p) / 1000))


def test_missing_rate_small_window_does_not_trip(profile: ReferenceProfile) -> None:
    ref = profile.columns["x"]
    # 4 of 40 missing (10%) is within 3 binomial sd of 5% at n=40
    assert not missing_rate("x", 4, 40, ref).failed
    # and a window under min_rows is reported but never judged
    r = missing_rate("x", 10, 20, ref)
    assert not r.failed and "not judged" in r.detail
    assert missing_rate("x", 10, 20, ref, QualityThresholds(min_rows=10)).failed


def test_missing_rate_rejects_impossible_counts(profile: ReferenceProfile) -> None:
    with pytest.raises(ValueError, match="n_missing"):
        missing_rate("x", 5, 4, profile.columns["x"])


# out_of_range ----------------------------------------------------------------


def test_out_of_range(profile: ReferenceProfile) -> None:
    ref = profile.columns["x"]
    rng = np.random.default_rng(2)
    ok = out_of_range("x", rng.normal(10.0, 2.0, 1000), ref)
    assert not ok.failed and ok.value < 0.01
    values: list[float | None] = [*rng.normal(10.0, 2.0, 900).tolist(), *([100.0] * 100), None]
    bad = out_of_range("x", values, ref)
    assert bad.failed and bad.value == pytest.approx(0.1, abs=0.005)  # None is not counted


def test_out_of_range_quantile_range_ignores_a_reference_outlier() -> None:
    # One reference value of 1e6 stretches [min, max], not [q0.001, q0.999].
    p = build_profile({"v": [*range(1000), 1e6]}, {"v": "numeric"}).columns["v"]
    values = [*np.linspace(10, 990, 95).tolist(), *([2000.0] * 5)]
    assert out_of_range("v", values, p).failed
    minmax = resolve_thresholds({"out_of_range_bounds": "minmax"})
    r = out_of_range("v", values, p, minmax)
    assert not r.failed and r.value == 0.0


# new_categories --------------------------------------------------------------


def test_new_categories(profile: ReferenceProfile) -> None:
    ref = profile.columns["c"]
    assert not new_categories("c", ["a", "b", "c", None] * 50, ref).failed
    r = new_categories("c", ["a"] * 90 + ["d"] * 8 + ["e"] * 2, ref)
    assert r.failed and r.value == 0.1
    assert "'d' x8" in r.detail and "'e' x2" in r.detail


def test_new_categories_compares_canonical_keys() -> None:
    # A reference of ints and bools against the daemon's string keys.
    ref = build_profile({"k": [1, 2, 2, 3] * 10}, {"k": "categorical"}).columns["k"]
    assert new_categories("k", ["1", "2", "3", 2.0] * 10, ref).value == 0.0
    flags = build_profile({"f": [True, False] * 10}, {"f": "binary"}).columns["f"]
    assert new_categories("f", ["true", "false"] * 20, flags).value == 0.0


def test_new_categories_expects_unseen_mass_of_a_long_tailed_reference() -> None:
    # Half the reference categories are one-offs: new ones are expected.
    ref = build_profile(
        {"u": [f"id{i}" for i in range(500)] + ["common"] * 500}, {"u": "categorical"}
    ).columns["u"]
    cur = [f"new{i}" for i in range(40)] + ["common"] * 60
    r = new_categories("u", cur, ref)
    assert r.value == 0.4 and not r.failed and r.threshold > 0.5


# constant_column -------------------------------------------------------------


def test_constant_column(profile: ReferenceProfile) -> None:
    assert constant_column("y", [0.5] * 5, profile.columns["y"]).failed  # continuous
    assert not constant_column("y", [0.5, 0.6] * 5, profile.columns["y"]).failed
    # "a" is 60% of the reference: 10 a's happen (0.6 ** 10 = 0.6%), 30 do not
    assert not constant_column("c", ["a"] * 10, profile.columns["c"]).failed
    r = constant_column("c", ["a"] * 30 + [None], profile.columns["c"])
    assert r.failed and r.value == pytest.approx(0.6**30 + 0.3**30 + 0.1**30, rel=0.05)
    assert not constant_column("c", ["a"], profile.columns["c"]).failed  # one value


def test_constant_reference_column_never_fails() -> None:
    p = build_profile({"k": [7.0] * 100, "s": ["x"] * 100}, {"k": "numeric", "s": "categorical"})
    assert not constant_column("k", [7.0] * 500, p.columns["k"]).failed
    assert not constant_column("s", ["x"] * 500, p.columns["s"]).failed


def test_constant_column_finds_atoms_of_a_continuous_profile() -> None:
    # Half zeros, half continuous: over 1000 distinct values, no value counts.
    rng = np.random.default_rng(3)
    p = build_profile({"z": np.r_[np.zeros(5000), rng.exponential(size=5000)]}, {"z": "numeric"})
    ref = p.columns["z"]
    assert ref.values is None
    assert not constant_column("z", [0.0] * 5, ref).failed  # 0.5 ** 5 = 3%
    assert constant_column("z", [0.0] * 30, ref).failed


# duplicates and schema -------------------------------------------------------


def test_duplicates() -> None:
    assert not duplicates(3, 1000).failed
    assert duplicates(30, 1000).failed
    assert not duplicates(10, 20).failed  # under min_rows


def test_schema() -> None:
    ok = schema(2, 1000, {"x": 0, "y": 400}, ["x"])
    assert [r.failed for r in ok] == [False, False]  # y is not required
    bad = schema(1500, 1000, {"x": 1000, "y": 0}, ["x", "y"])
    assert [r.check for r in bad] == ["unexpected_features", "missing_required"]
    assert [r.failed for r in bad] == [True, True]
    assert bad[0].value == 1.5 and bad[1].value == 1.0 and "'x'" in bad[1].detail
    assert not schema(0, 1000, {}, [])[1].failed
    with pytest.raises(ValueError, match="without a missing count"):
        schema(0, 10, {}, ["x"])


# thresholds ------------------------------------------------------------------


def test_thresholds_by_name() -> None:
    assert resolve_thresholds(None) == QualityThresholds()
    t = resolve_thresholds({"duplicate_margin": 0.1, "min_rows": 5})
    assert t.duplicate_margin == 0.1 and t.min_rows == 5 and t.sigmas == 3.0
    with pytest.raises(ValueError, match="unknown field `dup_margin`"):
        resolve_thresholds({"dup_margin": 0.1})
    with pytest.raises(ValueError, match="constant_alpha"):
        resolve_thresholds({"constant_alpha": 2.0})
    with pytest.raises(ValueError, match="out_of_range_bounds"):
        resolve_thresholds({"out_of_range_bounds": "iqr"})


# run_quality on a real window ------------------------------------------------


def _window(rows: list[tuple[list[float | None], list[str | None]]], dup_every: int = 0):  # type: ignore[no-untyped-def]
    buf = WindowBuffer(max_rows=10_000)
    for i, (num, cat) in enumerate(rows):
        pid = i - 1 if dup_every and i % dup_every == 0 and i else i
        buf.add("m", "v1", pid, num, cat, 0.5, float(i), 0)
    return buf.take("m")


def test_run_quality_clean_window_passes(profile: ReferenceProfile) -> None:
    rng = np.random.default_rng(4)
    rows: list[tuple[list[float | None], list[str | None]]] = [
        (
            [None if rng.random() < 0.05 else float(rng.normal(10, 2)), float(rng.uniform())],
            [str(rng.choice(["a", "b", "c"], p=[0.6, 0.3, 0.1]))],
        )
        for _ in range(2000)
    ]
    results = run_quality(_window(rows), profile, NAMES)
    assert [r.check for r in results[:3]] == [
        "unexpected_features",
        "missing_required",
        "duplicates",
    ]
    assert [(r.check, r.column) for r in results[3:6]] == [
        ("missing_rate", "x"),
        ("out_of_range", "x"),
        ("constant_column", "x"),
    ]
    assert ("new_categories", "c") in [(r.check, r.column) for r in results]
    assert [r for r in results if r.failed] == []


def test_run_quality_broken_window_fails_each_check(profile: ReferenceProfile) -> None:
    rows: list[tuple[list[float | None], list[str | None]]] = [
        ([None if i % 3 == 0 else 500.0, 0.25], ["zzz" if i % 2 else "a"]) for i in range(600)
    ]
    window = _window(rows, dup_every=10)
    window.unexpected = 600
    results = run_quality(window, profile, NAMES)
    failed = {(r.check, r.column) for r in results if r.failed}
    assert failed == {
        ("unexpected_features", None),
        ("duplicates", None),
        ("missing_rate", "x"),
        ("out_of_range", "x"),
        ("constant_column", "x"),
        ("constant_column", "y"),
        ("new_categories", "c"),
    }
    # x is missing in the reference, so it is not required; y and c are complete
    assert _by(results, "missing_required").detail.startswith("0/600")


def test_run_quality_required_and_thresholds(profile: ReferenceProfile) -> None:
    cur = from_columns({"x": [None] * 100, "y": [0.5, 0.7] * 50, "c": ["a", "b"] * 50})
    results = run_quality(cur, profile, NAMES, {"missing_rate_margin": 1.0}, required=["x"])
    assert _by(results, "missing_required").failed
    assert not _by(results, "missing_rate", "x").failed  # margin 1.0
    assert not _by(results, "out_of_range", "x").failed  # nothing to range-check


def test_run_quality_skips_unprofiled_features(profile: ReferenceProfile) -> None:
    cur = from_columns({"x": [10.0] * 50, "extra": ["q"] * 50})
    results = run_quality(cur, profile, ["x", "extra"])
    assert all(r.column != "extra" for r in results)


def test_window_length_must_match_names(profile: ReferenceProfile) -> None:
    window = _window([([1.0, 0.5], ["a"])])
    with pytest.raises(ValueError, match="3 features"):
        run_quality(window, profile, ["x", "y"])


# segments --------------------------------------------------------------------


def test_segments_cap_and_order() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] + [None] * 2
    groups = segment_indices(values, max_segments=3)
    assert list(groups) == ["a", "b", "c", OTHER]  # ties by key; the rest last
    assert groups[OTHER] == [11, 12, 13]
    assert sum(len(v) for v in segment_indices(values, 100).values()) == len(values)
    with pytest.raises(ValueError, match="max_segments"):
        segment_indices(values, 0)


def test_segment_window_runs_quality_per_segment(profile: ReferenceProfile) -> None:
    rows: list[tuple[list[float | None], list[str | None]]] = [
        ([10.0 + (i % 7) * 0.5, 0.05 + 0.1 * (i % 10)], ["a"]) for i in range(300)
    ] + [([500.0, 0.5], ["b"]) for _ in range(100)]  # b rows are broken
    window = _window(rows)
    per = segment_window(window, NAMES, "c", max_segments=5)
    assert list(per) == ["a", "b"] and per["a"].n == 300 and per["b"].n == 100
    assert "c" not in per["a"].columns  # constant within a segment by construction
    assert not any(r.failed for r in run_quality(per["a"], profile, NAMES))
    failed_b = {(r.check, r.column) for r in run_quality(per["b"], profile, NAMES) if r.failed}
    assert ("out_of_range", "x") in failed_b
    by_rows = segment_rows(window.rows, NAMES, "c")
    assert {k: len(v) for k, v in by_rows.items()} == {"a": 300, "b": 100}
    with pytest.raises(ValueError, match="not among"):
        segment_rows(window.rows, NAMES, "nope")
