"""Reference profiles: what a check needs to know about the reference, stored
as a small JSON document instead of the raw rows.

A numeric column keeps its quantiles (``n_bins + 1`` edges at evenly spaced
probabilities, plus finer ones in both tails) with the reference count and
sum of values in each bin, mean, std, min, max,
the number of distinct values, the missing count and, when it has at most
:data:`VALUES_MAX` distinct values, every value with its count (which makes
every test but KS and Anderson-Darling exact on such columns). A
categorical or binary column keeps its categories with counts.

Which tests can run from a profile (``BatchTest.from_profile``):

==============  =============================================================
test            from a profile
==============  =============================================================
chi2            exact (categorical, binary; numeric on quantile bins that
                divide the profile's bins)
z               exact
psi             exact on categorical/binary and discrete numeric columns;
jensenshannon   approximate on continuous numeric columns (reference
hellinger       counts in the check's bins are interpolated from the
                profile's quantiles)
wasserstein     approximate, never above the exact value (exact per bin
                unless the two quantile functions cross inside it)
ks, anderson    no: they need every reference value
==============  =============================================================

>>> import numpy as np
>>> p = build_profile({"x": np.arange(10.0), "c": np.array(["a", "b", "a"])},
...                   {"x": "numeric", "c": "categorical"}, n_bins=4)
>>> p.columns["x"].probabilities
[0.0, 0.0001, 0.001, 0.005, 0.25, 0.5, 0.75, 0.995, 0.999, 0.9999, 1.0]
>>> [round(q, 4) for q in p.columns["x"].quantiles]
[0.0, 0.0009, 0.009, 0.045, 2.25, 4.5, 6.75, 8.955, 8.991, 8.9991, 9.0]
>>> p.columns["x"].counts
[1, 0, 0, 2, 2, 2, 2, 0, 0, 1]
>>> p.columns["c"].frequencies
{'a': 0.6666666666666666, 'b': 0.3333333333333333}
>>> decode_profile(encode_profile(p)) == p
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np

from detectors.batch._values import FloatArray, to_categories, to_numeric
from detectors.batch.base import BINARY, CATEGORICAL, COLUMN_TYPES, NUMERIC, check_int

#: A numeric column with at most this many distinct values keeps them all
#: (Evidently bins such columns by value instead of by range).
DISCRETE_MAX = 20
#: Distinct values kept per numeric column: integer-valued columns (counts,
#: ages) are lumpy, and interpolating their CDF between quantiles smears
#: the lumps across bin edges.
VALUES_MAX = 1000
#: Extra quantile levels: interpolating the CDF across the outermost 1% of
#: a skewed column is badly wrong, and tails is where PSI's bins are thin.
TAIL_PROBABILITIES = (1e-4, 1e-3, 5e-3, 1 - 5e-3, 1 - 1e-3, 1 - 1e-4)
PROFILE_VERSION = 1

Category = str | int | float | bool


class NumericProfile(msgspec.Struct, frozen=True, kw_only=True, tag=NUMERIC):
    """Summary of one numeric reference column."""

    n: int
    n_missing: int
    mean: float
    std: float
    min: float
    max: float
    n_unique: int
    integer: bool
    #: Increasing levels from 0 to 1 at which ``quantiles`` are taken.
    probabilities: list[float]
    #: Bin edges: ``np.quantile`` at ``probabilities`` (may repeat).
    quantiles: list[float]
    #: Count in ``[q[i], q[i+1])``, the last bin closed (numpy.histogram).
    counts: list[int]
    #: Sum of the values in each bin (their mean pins the Wasserstein distance).
    sums: list[float]
    #: Every distinct value and its count, when ``n_unique <= VALUES_MAX``.
    values: list[float] | None = None
    value_counts: list[int] | None = None

    @property
    def missing_rate(self) -> float:
        total = self.n + self.n_missing
        return self.n_missing / total if total else 0.0


class CategoricalProfile(msgspec.Struct, frozen=True, kw_only=True, tag=CATEGORICAL):
    """Summary of one categorical or binary reference column."""

    n: int
    n_missing: int
    categories: list[Category]
    counts: list[int]
    binary: bool = False

    @property
    def missing_rate(self) -> float:
        total = self.n + self.n_missing
        return self.n_missing / total if total else 0.0

    @property
    def frequencies(self) -> dict[Category, float]:
        return {c: k / self.n for c, k in zip(self.categories, self.counts, strict=True)}


ColumnProfile = NumericProfile | CategoricalProfile


class ReferenceProfile(msgspec.Struct, frozen=True, kw_only=True):
    """Profiles of every reference column, by name."""

    columns: dict[str, ColumnProfile]
    version: int = PROFILE_VERSION

    @property
    def column_types(self) -> dict[str, str]:
        return {name: column_type(p) for name, p in self.columns.items()}


def column_type(profile: ColumnProfile) -> str:
    if isinstance(profile, NumericProfile):
        return NUMERIC
    return BINARY if profile.binary else CATEGORICAL


def build_profile(
    reference: Any, column_types: Mapping[str, str], *, n_bins: int = 100
) -> ReferenceProfile:
    """Profile the reference columns named in ``column_types``.

    Parameters
    ----------
    reference
        A mapping of column name to array-like, or a pandas DataFrame.
    column_types
        ``"numeric"``, ``"categorical"`` or ``"binary"`` per column.
    n_bins
        Number of quantile bins kept per numeric column. More bins make the
        approximate tests closer to their raw-data values. With 100, the
        normed Wasserstein distance of the synthetic benchmark columns is
        within 0.001 of (and never above) the exact value.

    """
    check_int("n_bins", n_bins, "build_profile", 1)
    columns: dict[str, ColumnProfile] = {}
    for name, ctype in column_types.items():
        if ctype not in COLUMN_TYPES:
            raise ValueError(
                f"column {name!r}: unknown column type {ctype!r}; valid: {', '.join(COLUMN_TYPES)}"
            )
        values = reference[name]
        if ctype == NUMERIC:
            arr, n_missing, integer = to_numeric(values, name)
            columns[name] = profile_numeric(np.sort(arr), n_missing, integer, n_bins, name)
        else:
            cats, counts, n_missing = to_categories(values, name)
            if not cats:
                raise ValueError(f"column {name!r}: no non-missing reference values")
            columns[name] = CategoricalProfile(
                n=int(counts.sum()),
                n_missing=n_missing,
                categories=cats,
                counts=counts.tolist(),
                binary=ctype == BINARY,
            )
    return ReferenceProfile(columns=columns)


def profile_numeric(
    sorted_values: FloatArray, n_missing: int, integer: bool, n_bins: int, name: str = "value"
) -> NumericProfile:
    """Profile one numeric column from its sorted finite values."""
    s = sorted_values
    if s.size == 0:
        raise ValueError(f"column {name!r}: no non-missing reference values")
    # j / n_bins, not linspace: division is correctly rounded, so level 6/10
    # here is bit-identical to 60/100 in a finer profile and to the levels
    # binned tests use, and quantiles at tied values land on the same side
    probabilities = np.union1d(np.arange(n_bins + 1) / n_bins, TAIL_PROBABILITIES)
    quantiles = np.quantile(s, probabilities)
    left = np.searchsorted(s, quantiles, side="left")
    left[-1] = s.size  # numpy.histogram closes the last bin
    cumsum = np.concatenate([[0.0], np.cumsum(s)])
    distinct = np.flatnonzero(np.diff(s)) + 1
    n_unique = int(distinct.size + 1)
    values = value_counts = None
    if n_unique <= VALUES_MAX:
        starts = np.concatenate([[0], distinct])
        values = s[starts].tolist()
        value_counts = np.diff(np.concatenate([starts, [s.size]])).tolist()
    return NumericProfile(
        n=int(s.size),
        n_missing=n_missing,
        mean=float(s.mean()),
        std=float(s.std()),
        min=float(s[0]),
        max=float(s[-1]),
        n_unique=n_unique,
        integer=integer,
        probabilities=probabilities.tolist(),
        quantiles=quantiles.tolist(),
        counts=np.diff(left).tolist(),
        sums=np.diff(cumsum[left]).tolist(),
        values=values,
        value_counts=value_counts,
    )


def encode_profile(profile: ReferenceProfile) -> bytes:
    """Serialize to JSON."""
    return msgspec.json.encode(profile)


def decode_profile(data: bytes | str) -> ReferenceProfile:
    """Parse and validate JSON written by :func:`encode_profile`."""
    profile = msgspec.json.decode(data, type=ReferenceProfile)
    if profile.version != PROFILE_VERSION:
        raise ValueError(f"profile version {profile.version} is not supported")
    return profile
