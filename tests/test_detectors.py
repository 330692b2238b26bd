"""Detector wrappers: river underneath, validated parameters, exact save/restore, bounded memory."""

from __future__ import annotations

import pickle
import random
import sys
from typing import Any

import pytest
from river import drift

from detectors.base import CATEGORICAL, ERROR, NUMERIC
from detectors.category_chi2 import OTHER, CategoryChi2
from detectors.registry import DETECTORS, make_detector


def stream_for(name: str, n: int, seed: int = 3) -> list[Any]:
    rng = random.Random(seed)
    cls = DETECTORS[name]
    if CATEGORICAL in cls.accepts("classification"):
        return [rng.choice("abc" if i < n // 2 else "aac") for i in range(n)]
    if NUMERIC not in cls.accepts("classification"):
        return [rng.random() < (0.1 if i < n // 2 else 0.5) for i in range(n)]
    return [rng.gauss(0 if i < n // 2 else 2, 1) for i in range(n)]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_save_restore_continues_exactly(name: str) -> None:
    values = stream_for(name, 6000)
    params = {"seed": 1} if name == "kswin" else {}
    whole = make_detector(name, params)
    expected = [i for i, x in enumerate(values) if whole.update(x)]
    first = make_detector(name, params)
    got = [i for i, x in enumerate(values[:2500]) if first.update(x)]
    restored = pickle.loads(pickle.dumps(first))
    got += [i + 2500 for i, x in enumerate(values[2500:]) if restored.update(x)]
    assert got == expected
    assert expected, f"{name} should detect the change in this stream"


@pytest.mark.parametrize(
    ("name", "river_cls", "kwargs"),
    [
        ("adwin", drift.ADWIN, {}),
        ("page_hinkley", drift.PageHinkley, {}),
        ("kswin", drift.KSWIN, {"seed": 4}),
        ("ddm", drift.binary.DDM, {}),
        ("eddm", drift.binary.EDDM, {}),
        ("hddm_a", drift.binary.HDDMA, {}),
        ("hddm_w", drift.binary.HDDMW, {}),
    ],
)
def test_same_detections_as_river_alone(name: str, river_cls: type, kwargs: dict[str, Any]) -> None:
    values = stream_for(name, 4000, seed=9)
    ours = make_detector(name, kwargs)
    theirs = river_cls(**kwargs)
    mine = [i for i, x in enumerate(values) if ours.update(x)]
    ref = []
    for i, x in enumerate(values):
        theirs.update(x)
        if theirs.drift_detected:
            ref.append(i)
    assert mine == ref


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("adwin", {"delta": 0}, "delta must be in (0, 1), got 0"),
        ("adwin", {"clock": 1.5}, "clock must be an integer, got 1.5"),
        ("page_hinkley", {"mode": "sideways"}, "mode must be 'up', 'down' or 'both'"),
        ("page_hinkley", {"threshold": -1}, "threshold must be > 0"),
        ("kswin", {"alpha": 1.5}, "alpha must be in (0, 1)"),
        ("kswin", {"stride": 0}, "stride must be > 0"),
        ("ddm", {"drift_threshold": 1.0}, "drift_threshold must be > warning_threshold"),
        ("eddm", {"alpha": 0.5, "beta": 0.9}, "beta must be < alpha"),
        ("hddm_a", {"two_sided_test": "yes"}, "two_sided_test must be a boolean"),
        ("hddm_w", {"lambda_val": 2}, "lambda_val must be in (0, 1)"),
        ("category_chi2", {"window_size": 0}, "window_size must be > 0"),
    ],
)
def test_parameters_checked_at_construction(
    name: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        make_detector(name, params)
    assert message in str(info.value)


def test_kinds() -> None:
    assert DETECTORS["ddm"].accepts("classification") == (ERROR,)
    assert DETECTORS["ddm"].accepts("regression") == ()
    assert ERROR in DETECTORS["adwin"].accepts("regression")
    assert DETECTORS["category_chi2"].accepts("regression") == (CATEGORICAL,)


def test_category_chi2_memory_is_bounded() -> None:
    det = CategoryChi2(reference_size=100, window_size=200, test_every=50, max_categories=10)
    for i in range(100_000):
        det.update(f"c{i}")  # every value a new category
    assert len(det._reference.keys() | det._counts.keys()) <= 11
    assert OTHER in det._counts
    assert len(det._window) <= 200


def test_category_chi2_quiet_on_stable_stream() -> None:
    rng = random.Random(11)
    det = CategoryChi2()
    hits = [i for i in range(50_000) if det.update(rng.choices("abcd", weights=[4, 3, 2, 1])[0])]
    assert hits == []


def test_adwin_memory_is_bounded_on_a_long_stream() -> None:
    det = make_detector("adwin", {})
    rng = random.Random(5)
    sizes = []
    for i in range(200_000):
        det.update(rng.gauss(0, 1))
        if i % 50_000 == 49_999:
            sizes.append(len(pickle.dumps(det)))
    # ADWIN keeps O(log n) buckets: the state grows far slower than the stream.
    assert sizes[-1] < 4 * sizes[0]
    assert sys.getsizeof(pickle.dumps(det)) < 100_000


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_hot_update_is_update(name: str) -> None:
    """The pipeline's hot path (hot_update, hot_detected, fetch again) leaves
    every detector exactly as update() would, value by value; ADWIN's calls
    river's Rust core directly, and river's own update after each detection."""
    params = {"seed": 1} if name == "kswin" else {}
    if name == "adwin":  # touchy: a detection every hundred values or so
        params = {"delta": 0.9, "clock": 1, "grace_period": 1, "min_window_length": 1}
    values = stream_for(name, 3000)
    ref, hot = make_detector(name, params), make_detector(name, params)
    fn, steady = hot.hot_update()
    hits = 0
    for i, x in enumerate(values):
        if not steady:
            fn, steady = hot.hot_update()
        detected = fn(x)
        if detected:
            hot.hot_detected()
            fn, steady = hot.hot_update()
            hits += 1
        assert detected == ref.update(x), i
        assert pickle.dumps(hot) == pickle.dumps(ref), i
        assert hot.drift_detected == ref.drift_detected, i
    assert hits, f"{name} should detect the change in this stream"
