"""Both exact Wasserstein algorithms (sorted samples, buckets) equal scipy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from detectors.batch._wasserstein_buckets import wasserstein_buckets
from detectors.batch.wasserstein import Wasserstein, _wasserstein_merge, wasserstein_sorted


@pytest.mark.parametrize("seed", range(30))
def test_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = (int(k) for k in rng.integers(1, 3000, 2))
    if seed % 3 == 0:
        m = n
    u = rng.normal(size=n) if seed % 2 else rng.integers(0, 7, n).astype(float)  # ties
    v = rng.normal(0.1, 1.2, m) if seed % 2 else rng.integers(0, 9, m).astype(float)
    expected = wasserstein_distance(u, v)
    got = wasserstein_sorted(np.sort(u), np.sort(v))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-14)
    assert _wasserstein_merge(np.sort(u), np.sort(v)) == pytest.approx(
        expected, rel=1e-10, abs=1e-14
    )


@pytest.mark.parametrize("seed", range(40))
def test_bucketed_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    n, m = (int(k) for k in rng.integers(1, 5000, 2))
    kind = seed % 5
    if kind == 0:  # near-identical samples: many ambiguous buckets
        u, v = rng.normal(size=n), rng.normal(size=m)
    elif kind == 1:  # ties inside and across samples
        u, v = rng.integers(0, 7, n).astype(float), rng.integers(0, 8, m).astype(float)
    elif kind == 2:  # skewed
        u, v = rng.lognormal(0, 1, n), rng.lognormal(0.1, 1, m)
    elif kind == 3:  # shared values
        u = rng.normal(size=n)
        v = np.concatenate([u, rng.normal(size=m)])[:m]
    else:  # shifted
        u, v = rng.normal(size=n), rng.normal(1.0, 2.0, m)
    for n_buckets in (4, 64, 1024, 1 << 16):
        got = wasserstein_buckets(u, v, n_buckets)
        if got is None:  # declined (most points ambiguous): the caller sorts
            continue
        assert got == pytest.approx(wasserstein_distance(u, v), rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("seed", range(10))
def test_integer_path_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lam = [0.5, 3, 30, 3000][seed % 4]
    u = rng.poisson(lam, int(rng.integers(1, 4000))).astype(float)
    v = rng.poisson(lam * 1.05, int(rng.integers(1, 4000))).astype(float) - seed
    got = wasserstein_buckets(u, v, integer=True)
    assert got == pytest.approx(wasserstein_distance(u, v), rel=1e-10, abs=1e-14)


def test_bucketed_declines_when_outliers_squeeze_the_range() -> None:
    rng = np.random.default_rng(0)
    u = np.append(rng.normal(size=10_000), 1e12)
    v = rng.normal(size=10_000)
    assert wasserstein_buckets(u, v, 1024) is None


def test_large_samples_take_the_bucketed_path_with_the_same_result() -> None:
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(size=120_000), rng.normal(0.01, 1, 90_000)
    r = Wasserstein().run(ref, cur)
    expected = wasserstein_distance(ref, cur) / np.std(ref)
    assert r.statistic == pytest.approx(expected, rel=1e-9)
