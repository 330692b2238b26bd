"""Realized performance metrics: values equal scikit-learn's, intervals are
sane and reproducible, and a degradation needs the whole interval."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from detectors.performance import (
    MetricValue,
    classification_metrics,
    compare_to_baseline,
    realized_metrics,
    regression_metrics,
    wilson,
)
from detectors.performance.base import bootstrap, weighted_auc
from monitor.windows import WindowBuffer


def _binary(n: int, seed: int, accuracy_shift: float = 0.0):  # type: ignore[no-untyped-def]
    """Calibrated scores; labels drawn from them; ``accuracy_shift`` flips some predictions."""
    rng = np.random.default_rng(seed)
    s = rng.beta(0.7, 0.7, n)
    y = rng.random(n) < s
    pred = s >= 0.5
    flip = rng.random(n) < accuracy_shift
    return s, y, pred ^ flip


def test_binary_metrics_equal_sklearn() -> None:
    s, y, pred = _binary(3000, seed=1)
    labels = np.where(y, "fraud", "ok")
    preds = np.where(pred, "fraud", "ok")
    m = classification_metrics(list(preds), list(labels), s.tolist(), positive="fraud")
    assert set(m) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    assert m["accuracy"].value == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"].value == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"].value == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"].value == pytest.approx(skm.f1_score(y, pred))
    assert m["roc_auc"].value == pytest.approx(skm.roc_auc_score(y, s))
    assert m["log_loss"].value == pytest.approx(skm.log_loss(y, s))
    for v in m.values():
        assert v.lower <= v.value <= v.upper
        assert v.upper - v.lower < 0.1  # 3000 rows pin every metric down
    assert m["log_loss"].direction == "lower" and m["f1"].direction == "higher"
    assert m["accuracy"].method == "wilson" and m["roc_auc"].method == "bootstrap"


def test_macro_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.choice(["a", "b", "c"], 1000, p=[0.5, 0.3, 0.2])
    pred = np.where(rng.random(1000) < 0.7, y, rng.choice(["a", "b", "c", "d"], 1000))
    m = classification_metrics(list(pred), list(y))
    assert set(m) == {"accuracy", "precision", "recall", "f1"}  # no scores without positive
    for name, fn in [
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ]:
        want = fn(y, pred, average="macro", zero_division=0)
        assert m[name].value == pytest.approx(want), name
        assert m[name].lower < want < m[name].upper


def test_labels_compare_by_category_key() -> None:
    m = classification_metrics([1, True, "x"], [1.0, "true", "x"], positive=1)
    assert m["accuracy"].value == 1.0
    assert m["recall"].value == 1.0 and m["precision"].n == 1


def test_auc_and_log_loss_need_what_they_need() -> None:
    one_class = classification_metrics(["a", "b"], ["a", "a"], [0.9, 0.2], positive="a")
    assert "roc_auc" not in one_class and "log_loss" in one_class
    not_probs = classification_metrics(["a", "b"], ["a", "b"], [3.0, -1.0], positive="a")
    assert "log_loss" not in not_probs and not_probs["roc_auc"].value == 1.0
    partial = classification_metrics(
        ["a", "b", "a"], ["a", "b", "b"], [0.9, None, 0.4], positive="a"
    )
    assert partial["roc_auc"].n == 2 and partial["accuracy"].n == 3
    assert classification_metrics([], []) == {}
    with pytest.raises(ValueError, match="labels"):
        classification_metrics(["a"], [])


def test_regression_metrics_equal_sklearn_and_guard_zeros() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(10, 3, 500)
    y[:5] = 0.0
    p = y + rng.normal(0, 1, 500)
    m = regression_metrics(p.tolist(), y.tolist())
    assert m["mae"].value == pytest.approx(skm.mean_absolute_error(y, p))
    assert m["rmse"].value == pytest.approx(skm.root_mean_squared_error(y, p))
    nz = y != 0
    assert m["mape"].value == pytest.approx(skm.mean_absolute_percentage_error(y[nz], p[nz]))
    assert m["mape"].n == 495 and np.isfinite(m["mape"].upper)
    for v in m.values():
        assert v.lower <= v.value <= v.upper and v.direction == "lower"
    assert "mape" not in regression_metrics([1.0, 2.0], [0.0, 0.0])
    small = regression_metrics([1.0, 2.0], [0.5, 0.0], mape_min_abs_label=0.6)
    assert "mape" not in small


def test_wilson_interval() -> None:
    # Known values (e.g. Newcombe 1998, Table I: 81/263 -> 0.2553, 0.3662)
    lo, hi = wilson(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_weighted_auc_equals_sklearn_with_sample_weight() -> None:
    rng = np.random.default_rng(4)
    s = np.round(rng.uniform(size=400), 1)  # many ties
    y = (rng.random(400) < s).astype(float)
    w = rng.integers(0, 4, size=(5, 400)).astype(float)
    got = weighted_auc(s, y, w)
    want = [skm.roc_auc_score(y, s, sample_weight=row) for row in w]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_bootstrap_is_seeded_and_covers_the_mean() -> None:
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(100):
        x = rng.exponential(size=200)
        lo, hi = bootstrap(lambda w, x=x: w @ x / x.size, x.size, seed=1)
        covered += lo <= 1.0 <= hi
    assert covered >= 88  # nominal 95; a percentile bootstrap runs a little short
    x = rng.normal(size=50)
    a = bootstrap(lambda w: w @ x / 50, 50, seed=7)
    assert a == bootstrap(lambda w: w @ x / 50, 50, seed=7)
    assert a != bootstrap(lambda w: w @ x / 50, 50, seed=8)


def test_realized_metrics_from_a_window() -> None:
    buf = WindowBuffer(max_rows=1000)
    s, y, pred = _binary(500, seed=6)
    for i in range(500):
        buf.add_labeled("m", bool(pred[i]), "true" if y[i] else "false", float(s[i]), float(i), 2)
    window = buf.take("m")
    assert window is not None
    m = realized_metrics(window.labeled, "classification", positive=True)
    assert m["accuracy"].value == pytest.approx(skm.accuracy_score(y, pred))
    assert m["roc_auc"].value == pytest.approx(skm.roc_auc_score(y, s))
    r = realized_metrics([(1.0, 2.0, None, 0.0), (3.0, 3.0, None, 1.0)], "regression")
    assert r["mae"].value == 0.5


def _rows(n: int, n_correct: int, seed: int) -> tuple[list[bool], list[bool]]:
    """Exactly ``n_correct`` of ``n`` predictions right, classes balanced-ish."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    right = np.zeros(n, dtype=bool)
    right[rng.permutation(n)[:n_correct]] = True
    return list(np.where(right, y, ~y)), list(y)


def test_small_window_does_not_degrade_large_window_does() -> None:
    baseline = 0.80  # tolerance: 5% of it, so degraded means the CI is below 0.76
    small = classification_metrics(*_rows(30, 21, seed=1), positive=True)  # 0.70 of 30
    large = classification_metrics(*_rows(5000, 3500, seed=2), positive=True)  # 0.70 of 5000
    assert small["accuracy"].value == large["accuracy"].value == 0.7
    assert not compare_to_baseline(small["accuracy"], baseline)
    assert compare_to_baseline(large["accuracy"], baseline)
    assert not compare_to_baseline(small["f1"], baseline)
    assert compare_to_baseline(large["f1"], baseline)


def test_small_windows_of_a_healthy_model_rarely_alarm() -> None:
    # 200 windows of 30 rows from a model whose accuracy is the baseline.
    _, y, pred = _binary(200 * 30, seed=3)
    baseline = skm.accuracy_score(y, pred)
    alarms = 0
    for k in range(200):
        rows = slice(30 * k, 30 * (k + 1))
        m = classification_metrics(list(pred[rows]), list(y[rows]), positive=True, n_resamples=50)
        alarms += compare_to_baseline(m["accuracy"], baseline)
    assert alarms <= 2  # one-sided 2.5% before the margin, far less with it


def test_compare_to_baseline_margins_and_direction() -> None:
    mae = MetricValue(
        name="mae", value=1.3, lower=1.2, upper=1.4, n=100, method="bootstrap", direction="lower"
    )
    assert compare_to_baseline(mae, 1.0)
    assert not compare_to_baseline(mae, 1.0, relative_margin=0.25)
    assert not compare_to_baseline(mae, 1.0, margin=0.3, relative_margin=0.0)
    assert not compare_to_baseline(mae, 1.0, "higher")  # overridden direction
    with pytest.raises(ValueError, match="margins"):
        compare_to_baseline(mae, 1.0, margin=-1.0)
