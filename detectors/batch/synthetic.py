"""Reproducible reference/current data with known drift, for tests, the
benchmark and demos.

20 numeric and 5 categorical columns. Four carry drift that matters:

* ``num_03`` (normal): mean shift of 0.5 standard deviation;
* ``num_09`` (lognormal): every value shifted by 0.3 standard deviation;
* ``num_16`` (gamma): shift of 0.2 standard deviation;
* ``cat_1`` (5 levels): shares move from (35, 25, 20, 12, 8)% to
  (20, 25, 20, 15, 20)%.

Four "stable" columns carry drift that does not matter, as real data
always does: ``num_01`` +0.01 sd, ``num_06`` scale x1.01, ``num_12`` +0.015
sd, and one level of ``cat_2`` gaining 0.2 percentage points. At a million
rows per side p-value tests find these significant; that is the failure
size-aware defaults avoid.

>>> d = make_drift_data(1000, seed=1)
>>> len(d.reference), sorted(d.shifted)
(25, ['cat_1', 'num_03', 'num_09', 'num_16'])
>>> d.current["cat_1"][:3]
array(['c', 'b', 'b'], dtype=object)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from detectors.batch.base import BINARY, CATEGORICAL, NUMERIC

Sampler = Callable[[np.random.Generator, int], np.ndarray]

# name: (sampler, population sd, additive shift in sd, scale factor)
_NUMERIC: list[tuple[Sampler, float]] = [
    (lambda g, n: g.normal(0.0, 1.0, n), 1.0),
    (lambda g, n: g.normal(50.0, 10.0, n), 10.0),
    (lambda g, n: g.uniform(0.0, 1.0, n), 12**-0.5),
    (lambda g, n: g.normal(-3.0, 2.0, n), 2.0),
    (lambda g, n: g.exponential(2.0, n), 2.0),
    (lambda g, n: g.poisson(30.0, n).astype(np.int64), 30**0.5),
    (lambda g, n: g.standard_t(5, n), (5 / 3) ** 0.5),
    (lambda g, n: g.gamma(2.0, 1.5, n), 2**0.5 * 1.5),
    (lambda g, n: np.where(g.random(n) < 0.3, g.normal(-2, 0.5, n), g.normal(1, 0.7, n)), 1.5),
    (lambda g, n: g.lognormal(0.0, 0.5, n), ((np.e**0.25 - 1) * np.e**0.25) ** 0.5),
]
SHIFTS = {"num_03": 0.5, "num_09": 0.3, "num_16": 0.2, "num_01": 0.01, "num_12": 0.015}
SCALES = {"num_06": 1.01}

_CATEGORICAL: dict[str, tuple[list[str], list[float], list[float] | None]] = {
    "cat_0": (["high", "low", "mid"], [0.2, 0.5, 0.3], None),
    "cat_1": (list("abcde"), [0.35, 0.25, 0.2, 0.12, 0.08], [0.2, 0.25, 0.2, 0.15, 0.2]),
    "cat_2": (
        [f"k{i:02d}" for i in range(12)],
        list(np.r_[[0.2, 0.15, 0.12, 0.1], np.full(8, 0.43 / 8)]),
        list(np.r_[[0.2, 0.15, 0.12, 0.102], np.full(8, 0.428 / 8)]),
    ),
    "cat_3": (["no", "yes"], [0.7, 0.3], None),
    "cat_4": ([f"v{i:02d}" for i in range(40)], list(np.full(40, 1 / 40)), None),
}


class DriftData(NamedTuple):
    reference: dict[str, np.ndarray]
    current: dict[str, np.ndarray]
    column_types: dict[str, str]
    shifted: frozenset[str]


def make_drift_data(n: int, seed: int = 0, n_current: int | None = None) -> DriftData:
    """``n`` reference rows and ``n_current`` (default ``n``) current rows."""
    m = n if n_current is None else n_current
    g = np.random.default_rng(seed)
    ref: dict[str, Any] = {}
    cur: dict[str, Any] = {}
    types: dict[str, str] = {}
    for i in range(20):
        name = f"num_{i:02d}"
        sampler, sd = _NUMERIC[i % len(_NUMERIC)]
        ref[name] = sampler(g, n)
        x = sampler(g, m)
        if name in SHIFTS:
            x = x + SHIFTS[name] * sd
        if name in SCALES:
            x = (x - x.mean()) * SCALES[name] + x.mean()
        cur[name] = x
        types[name] = NUMERIC
    for name, (labels, p_ref, p_cur) in _CATEGORICAL.items():
        lab = np.array(labels, dtype=object)
        ref[name] = lab[g.choice(len(labels), n, p=_norm(p_ref))]
        cur[name] = lab[g.choice(len(labels), m, p=_norm(p_cur or p_ref))]
        types[name] = BINARY if len(labels) == 2 else CATEGORICAL
    shifted = frozenset({"num_03", "num_09", "num_16", "cat_1"})
    return DriftData(ref, cur, types, shifted)


def _norm(p: list[float]) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    return arr / arr.sum()
