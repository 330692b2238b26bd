"""Multivariate drift by PCA reconstruction error."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.batch import PCAReconstruction, check

N_COLS = 8


def _sample(rng: np.random.Generator, n: int, flip: bool = False) -> dict[str, np.ndarray]:
    """Two latent factors drive six columns; two columns are independent.
    ``flip`` reverses how x1 follows the first factor: every marginal is
    unchanged (the factor is symmetric), the correlation structure is not."""
    f = rng.normal(size=(n, 2))
    noise = 0.3 * rng.normal(size=(n, N_COLS))
    cols = {
        "x0": f[:, 0],
        "x1": (-f[:, 0] if flip else f[:, 0]),
        "x2": f[:, 0] + f[:, 1],
        "x3": f[:, 1],
        "x4": 2 * f[:, 1],
        "x5": f[:, 0] - f[:, 1],
        "x6": rng.normal(size=n),
        "x7": rng.exponential(size=n),
    }
    return {k: v + noise[:, i] for i, (k, v) in enumerate(cols.items())}


@pytest.fixture(scope="module")
def fitted() -> tuple[PCAReconstruction, dict[str, np.ndarray]]:
    ref = _sample(np.random.default_rng(0), 20_000)
    return PCAReconstruction(n_components=0.9, n_bootstrap=50).fit(ref), ref


def test_flags_a_correlated_shift_that_univariate_tests_miss(fitted) -> None:  # type: ignore[no-untyped-def]
    det, ref = fitted
    cur = _sample(np.random.default_rng(1), 5000, flip=True)
    univariate = check(ref, cur, {k: "numeric" for k in ref})
    assert not any(r.drift for r in univariate)
    result = det.check(cur)
    assert result.drift
    assert result.statistic > 2 * result.threshold
    assert result.columns == list(ref) and result.n_rows == 5000


def test_quiet_on_stable_data(fitted) -> None:  # type: ignore[no-untyped-def]
    det, _ = fitted
    alarms = [
        det.check(_sample(np.random.default_rng(100 + s), n)).drift
        for s in range(10)
        for n in (500, 5000)
    ]
    assert sum(alarms) == 0


def test_threshold_widens_for_small_windows(fitted) -> None:  # type: ignore[no-untyped-def]
    det, _ = fitted
    assert det.threshold(100) > det.threshold(1000) > det.threshold(10_000) == det.threshold(50_000)


def test_matrix_input_and_missing_rows() -> None:
    rng = np.random.default_rng(3)
    x = np.column_stack(list(_sample(rng, 3000).values()))
    det = PCAReconstruction(n_components=3, n_bootstrap=20).fit(x)
    assert det.k == 3 and det.columns == [f"x{i}" for i in range(N_COLS)]
    y = x[:500].copy()
    y[0, 0] = np.nan
    assert det.check(y).n_rows == 499


def test_reproducible() -> None:
    ref = _sample(np.random.default_rng(4), 2000)
    a = PCAReconstruction(n_bootstrap=20, seed=1).fit(ref).threshold(1000)
    b = PCAReconstruction(n_bootstrap=20, seed=1).fit(ref).threshold(1000)
    assert a == b


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_components": 0}, "PCAReconstruction: n_components must be an integer >= 1, got 0"),
        ({"n_components": 1.5}, r"PCAReconstruction: n_components must be in \(0, 1\), got 1.5"),
        ({"quantile": 1.0}, r"PCAReconstruction: quantile must be in \(0, 1\)"),
        ({"n_bootstrap": 5}, "PCAReconstruction: n_bootstrap must be an integer >= 10, got 5"),
        ({"seed": -1}, "PCAReconstruction: seed must be an integer >= 0"),
    ],
)
def test_parameters_validated(kwargs, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        PCAReconstruction(**kwargs)


def test_usage_errors() -> None:
    with pytest.raises(ValueError, match="call fit"):
        PCAReconstruction().check(np.ones((10, 3)))
    with pytest.raises(ValueError, match="n_components must be < number of columns"):
        PCAReconstruction(n_components=8).fit(np.random.default_rng(0).normal(size=(100, 8)))
    with pytest.raises(ValueError, match="need at least 2 numeric columns"):
        PCAReconstruction().fit(np.ones((100, 1)))
