"""Prepared reference/current pairs for one column.

Preparing once per column lets several tests share the expensive part (the
sort of a million values), and lets the same test code run against either a
raw reference or a stored :class:`~detectors.batch.profile.NumericProfile`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from detectors.batch._values import FloatArray, IntArray, align, to_categories, to_numeric
from detectors.batch.base import BINARY, CATEGORICAL, COLUMN_TYPES, NUMERIC
from detectors.batch.profile import CategoricalProfile, NumericProfile


class SortedColumn(NamedTuple):
    """A numeric reference column prepared once: finite values, sorted."""

    values: FloatArray
    integer: bool
    #: Taken before sorting: summation order changes the last bits, and
    #: prepared and raw references must give bit-identical results.
    std: float


class CountedColumn(NamedTuple):
    """A categorical reference column prepared once: categories with counts."""

    categories: list[Any]
    counts: IntArray


def prepare_column(values: Any, column_type: str, column: str = "value") -> PreparedColumn:
    """Sort or count one reference column so that later checks skip that work."""
    if column_type == NUMERIC:
        arr, _, integer = to_numeric(values, column)
        return SortedColumn(np.sort(arr), integer, float(np.std(arr)))
    cats, counts, _ = to_categories(values, column)
    return CountedColumn(cats, counts)


class NumericPair:
    """Finite reference and current values of a numeric column.

    The reference is either raw values or a profile (then ``profile`` is set
    and tests that need every reference value raise).
    """

    column_type = NUMERIC

    def __init__(
        self,
        ref: FloatArray | None,
        cur: FloatArray,
        *,
        integer: bool = False,
        profile: NumericProfile | None = None,
        column: str = "value",
        presorted: bool = False,
        std: float | None = None,
    ) -> None:
        if ref is None and profile is None:
            raise ValueError(f"column {column!r}: need reference values or a profile")
        if cur.size == 0:
            raise ValueError(f"column {column!r}: no non-missing current values")
        if ref is not None and ref.size == 0:
            raise ValueError(f"column {column!r}: no non-missing reference values")
        self._ref = ref
        self.cur = cur
        self.profile = profile
        self.column = column
        #: Both sides integer-typed (Evidently's binning then uses width >= 1).
        self.integer = integer
        if presorted and ref is not None:
            self._sorted_ref = ref
        if std is not None:
            self.ref_std = std

    @property
    def from_profile(self) -> bool:
        return self._ref is None

    @property
    def n_ref(self) -> int:
        return self._ref.size if self._ref is not None else self._profile.n

    @property
    def n_cur(self) -> int:
        return int(self.cur.size)

    @property
    def _profile(self) -> NumericProfile:
        assert self.profile is not None
        return self.profile

    def raw_ref(self, test: str) -> FloatArray:
        """The raw reference values; raises if only a profile is held."""
        if self._ref is None:
            from detectors.batch.registry import TESTS  # the registry imports this module

            capable = ", ".join(sorted(n for n, c in TESTS.items() if c.from_profile != "no"))
            raise ValueError(
                f"column {self.column!r}: test {test!r} needs the raw reference, "
                f"not a profile (profile-capable: {capable})"
            )
        return self._ref

    def sorted_ref(self, test: str) -> FloatArray:
        self.raw_ref(test)
        return self._sorted_ref

    @cached_property
    def _sorted_ref(self) -> FloatArray:
        assert self._ref is not None
        return np.sort(self._ref)

    @cached_property
    def sorted_cur(self) -> FloatArray:
        return np.sort(self.cur)

    def has_sorted(self) -> bool:
        """Whether both sides are already sorted (so binning can use searchsorted)."""
        return "sorted_cur" in self.__dict__ and (
            self._ref is None or "_sorted_ref" in self.__dict__
        )

    @cached_property
    def ref_std(self) -> float:
        return self._profile.std if self._ref is None else float(np.std(self._ref))

    @cached_property
    def ref_min(self) -> float:
        return self._profile.min if self._ref is None else float(self._ref.min())

    @cached_property
    def ref_max(self) -> float:
        return self._profile.max if self._ref is None else float(self._ref.max())

    @cached_property
    def ref_unique(self) -> int:
        if self._ref is None:
            return self._profile.n_unique
        return int(np.count_nonzero(np.diff(self._sorted_ref))) + 1

    def ref_values(self) -> tuple[FloatArray, IntArray]:
        """Distinct reference values with counts (exact from raw or a discrete profile)."""
        if self._ref is None:
            p = self._profile
            if p.values is None or p.value_counts is None:
                raise ValueError(f"column {self.column!r}: profile has no value counts")
            return np.asarray(p.values, dtype=np.float64), np.asarray(p.value_counts, np.int64)
        return distinct(self._sorted_ref)


def distinct(sorted_values: FloatArray) -> tuple[FloatArray, IntArray]:
    """Distinct values and counts of a sorted array (np.unique without the sort)."""
    s = sorted_values
    starts = np.concatenate([[0], np.flatnonzero(np.diff(s)) + 1])
    counts = np.diff(np.concatenate([starts, [s.size]]))
    return s[starts], counts.astype(np.int64)


class CategoricalPair:
    """Counts of each category in reference and current, over their union."""

    def __init__(
        self,
        categories: list[Any],
        ref_counts: IntArray,
        cur_counts: IntArray,
        *,
        column_type: str = CATEGORICAL,
        from_profile: bool = False,
        column: str = "value",
    ) -> None:
        self.categories = categories
        self.ref_counts = ref_counts
        self.cur_counts = cur_counts
        self.column_type = column_type
        self.from_profile = from_profile
        self.column = column
        self.n_ref = int(ref_counts.sum())
        self.n_cur = int(cur_counts.sum())
        if self.n_ref == 0:
            raise ValueError(f"column {column!r}: no non-missing reference values")
        if self.n_cur == 0:
            raise ValueError(f"column {column!r}: no non-missing current values")


Pair = NumericPair | CategoricalPair
PreparedColumn = SortedColumn | CountedColumn


def make_pair(reference: Any, current: Any, column_type: str, column: str = "value") -> Pair:
    """Prepare one column; ``reference`` may be raw values or a column profile."""
    if column_type not in COLUMN_TYPES:
        raise ValueError(
            f"column {column!r}: unknown column type {column_type!r}; "
            f"valid: {', '.join(COLUMN_TYPES)}"
        )
    if column_type == NUMERIC:
        cur, _, cur_int = to_numeric(current, column)
        if isinstance(reference, CategoricalProfile):
            raise ValueError(f"column {column!r}: numeric column with a categorical profile")
        if isinstance(reference, NumericProfile):
            return NumericPair(
                None, cur, integer=reference.integer and cur_int, profile=reference, column=column
            )
        if isinstance(reference, CountedColumn):
            raise ValueError(f"column {column!r}: numeric column prepared as categorical")
        if isinstance(reference, SortedColumn):
            return NumericPair(
                reference.values,
                cur,
                integer=reference.integer and cur_int,
                column=column,
                presorted=True,
                std=reference.std,
            )
        ref, _, ref_int = to_numeric(reference, column)
        return NumericPair(ref, cur, integer=ref_int and cur_int, column=column)
    cur_cats, cur_counts, _ = to_categories(current, column)
    if isinstance(reference, NumericProfile | SortedColumn):
        raise ValueError(f"column {column!r}: {column_type} column with a numeric reference")
    if isinstance(reference, CategoricalProfile):
        ref_cats, ref_counts = reference.categories, np.asarray(reference.counts, np.int64)
    elif isinstance(reference, CountedColumn):
        ref_cats, ref_counts = reference.categories, reference.counts
    else:
        ref_cats, ref_counts, _ = to_categories(reference, column)
    cats, ref_c, cur_c = align(ref_cats, ref_counts, cur_cats, cur_counts)
    return CategoricalPair(
        cats,
        ref_c,
        cur_c,
        column_type=column_type,
        from_profile=isinstance(reference, CategoricalProfile),
        column=column,
    )


__all__ = [
    "BINARY",
    "CategoricalPair",
    "CountedColumn",
    "NumericPair",
    "Pair",
    "SortedColumn",
    "distinct",
    "make_pair",
    "prepare_column",
]
