"""Multivariate drift: PCA reconstruction error against the reference.

Univariate tests look at one marginal at a time, so a change in how columns
move *together* (a correlation that flips or vanishes) goes unseen when
every marginal stays put. A principal subspace fitted on the reference
reconstructs reference-like rows well; rows that break its correlations land
off the subspace and reconstruct badly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from detectors.batch.base import check_int, check_open_unit

Matrix = NDArray[np.float64]

_OWNER = "PCAReconstruction"


class MultivariateResult(msgspec.Struct, frozen=True, kw_only=True):
    """Outcome of a multivariate check."""

    method: str
    columns: list[str]
    statistic_name: str
    statistic: float
    threshold: float
    drift: bool
    n_components: int
    n_rows: int


class PCAReconstruction:
    """Mean PCA reconstruction error of the current rows, in standardized units.

    :meth:`fit` standardizes the reference columns, keeps the leading
    principal components, and calibrates the threshold on the reference
    itself: ``n_bootstrap`` times, the reference is split in random halves,
    a PCA fitted on one half scores the other, and the threshold is the
    ``quantile`` of those half-sample mean errors. The calibration thus holds
    both the sampling noise of a window and the estimation noise of the
    subspace. A current window smaller than a half gets a proportionally
    wider threshold (the spread of a mean grows as 1/sqrt(n)).

    Parameters
    ----------
    n_components
        An int: number of components kept (< number of columns). A float
        in (0, 1): keep the fewest components explaining that share of
        the variance.
    quantile
        Quantile of the bootstrap errors used as threshold (the target
        false-alarm rate per check is ``1 - quantile``).
    n_bootstrap
        Number of random half splits.
    seed
        Seed of the splits, so a fit is reproducible.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(4000, 1))
    >>> ref = np.hstack([z, z + 0.1 * rng.normal(size=(4000, 1))])
    >>> det = PCAReconstruction(n_components=1).fit(ref)
    >>> z2 = rng.normal(size=(2000, 1))
    >>> det.check(np.hstack([z2, z2 + 0.1 * rng.normal(size=(2000, 1))])).drift
    False
    >>> det.check(np.hstack([z2, -z2 + 0.1 * rng.normal(size=(2000, 1))])).drift
    True
    >>> PCAReconstruction(quantile=99)
    Traceback (most recent call last):
    ...
    ValueError: PCAReconstruction: quantile must be in (0, 1), got 99

    """

    name = "pca_reconstruction"

    def __init__(
        self,
        n_components: int | float = 0.9,
        quantile: float = 0.99,
        n_bootstrap: int = 100,
        seed: int | None = 0,
    ) -> None:
        if isinstance(n_components, float):
            check_open_unit("n_components", n_components, _OWNER)
        else:
            check_int("n_components", n_components, _OWNER, 1)
        self.n_components = n_components
        self.quantile = check_open_unit("quantile", quantile, _OWNER)
        self.n_bootstrap = check_int("n_bootstrap", n_bootstrap, _OWNER, 10)
        if seed is not None:
            check_int("seed", seed, _OWNER, 0)
        self.seed = seed
        self.columns: list[str] = []
        self._fitted = False

    def fit(self, reference: Any, columns: Sequence[str] | None = None) -> PCAReconstruction:
        """Fit on the reference: a 2-D array, a mapping of columns, or a DataFrame."""
        x, self.columns = _matrix(reference, columns)
        n, d = x.shape
        if d < 2:
            raise ValueError(f"{_OWNER}: need at least 2 numeric columns, got {d}")
        if n < 20:
            raise ValueError(f"{_OWNER}: need at least 20 complete reference rows, got {n}")
        self._mean, self._scale, spectrum, self._basis = _pca(x)
        self.k = self._choose_k(spectrum, d)
        self._basis = self._basis[: self.k]
        rng = np.random.default_rng(self.seed)
        self._half = n // 2
        errors = np.empty(self.n_bootstrap)
        for b in range(self.n_bootstrap):
            order = rng.permutation(n)
            fit_rows, score_rows = x[order[: self._half]], x[order[self._half :]]
            mean, scale, _, basis = _pca(fit_rows)
            errors[b] = _errors(score_rows, mean, scale, basis[: self.k]).mean()
        self._center = float(np.median(errors))
        self._upper = float(np.quantile(errors, self.quantile))
        self._fitted = True
        return self

    def threshold(self, n_rows: int) -> float:
        """Threshold for a current window of ``n_rows`` rows."""
        self._require_fit()
        if n_rows >= self._half:
            return self._upper
        return self._center + (self._upper - self._center) * float(np.sqrt(self._half / n_rows))

    def score(self, current: Any) -> float:
        """Mean reconstruction error of the current rows."""
        self._require_fit()
        x, _ = _matrix(current, self.columns)
        if x.shape[0] == 0:
            raise ValueError(f"{_OWNER}: no complete rows in current")
        return float(_errors(x, self._mean, self._scale, self._basis).mean())

    def check(self, current: Any) -> MultivariateResult:
        """Score ``current`` and compare with the calibrated threshold."""
        x, _ = _matrix(current, self.columns)
        self._require_fit()
        if x.shape[0] == 0:
            raise ValueError(f"{_OWNER}: no complete rows in current")
        stat = float(_errors(x, self._mean, self._scale, self._basis).mean())
        thr = self.threshold(x.shape[0])
        return MultivariateResult(
            method=self.name,
            columns=list(self.columns),
            statistic_name="mean_reconstruction_error",
            statistic=stat,
            threshold=thr,
            drift=stat > thr,
            n_components=self.k,
            n_rows=int(x.shape[0]),
        )

    def _choose_k(self, spectrum: NDArray[np.float64], d: int) -> int:
        if isinstance(self.n_components, int):
            if self.n_components >= d:
                raise ValueError(
                    f"{_OWNER}: n_components must be < number of columns ({d}), "
                    f"got {self.n_components}"
                )
            return self.n_components
        share = np.cumsum(spectrum) / spectrum.sum()
        k = int(np.searchsorted(share, self.n_components) + 1)
        return min(k, d - 1)  # keep a residual space, or every error is 0

    def _require_fit(self) -> None:
        if not self._fitted:
            raise ValueError(f"{_OWNER}: call fit(reference) first")


def _matrix(data: Any, columns: Sequence[str] | None) -> tuple[Matrix, list[str]]:
    """Rows x columns float matrix with incomplete rows dropped."""
    if isinstance(data, np.ndarray) and data.ndim == 2:
        x = np.asarray(data, dtype=np.float64)
        names = list(columns) if columns else [f"x{i}" for i in range(x.shape[1])]
        if len(names) != x.shape[1]:
            raise ValueError(f"{_OWNER}: {len(names)} column names for {x.shape[1]} columns")
    else:
        names = list(columns) if columns else list(data.keys())
        missing = [c for c in names if c not in data]
        if missing:
            raise ValueError(f"{_OWNER}: columns missing from data: {missing}")
        x = np.column_stack([np.asarray(data[c], dtype=np.float64) for c in names])
    complete = np.isfinite(x).all(axis=1)
    return (x if complete.all() else x[complete]), names


def _pca(x: Matrix) -> tuple[Matrix, Matrix, Matrix, Matrix]:
    """Mean, scale, variances and principal axes (rows) of standardized x."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0  # constant column: leave it centered, unscaled
    z = (x - mean) / scale
    # SVD of the d x d scatter matrix: same axes as the SVD of z, O(n d^2)
    _, spectrum, axes = np.linalg.svd(z.T @ z / len(z))
    return mean, scale, spectrum, axes


def _errors(x: Matrix, mean: Matrix, scale: Matrix, basis: Matrix) -> Matrix:
    """Per-row squared reconstruction error, averaged over columns."""
    z = (x - mean) / scale
    proj = z @ basis.T
    return np.maximum((z * z).sum(axis=1) - (proj * proj).sum(axis=1), 0.0) / z.shape[1]
