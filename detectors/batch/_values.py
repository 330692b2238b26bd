"""Turn user columns (numpy arrays, lists, pandas Series) into what tests use.

Numeric columns become float64 arrays of finite values; categorical columns
become sorted categories with counts. Missing values are NaN/None and, for
numeric columns, +-inf (as Evidently does), and are counted, not tested.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Integer categories below this are counted with np.bincount (O(n), no sort).
_BINCOUNT_MAX = 1 << 16


def to_numeric(values: Any, column: str = "value") -> tuple[FloatArray, int, bool]:
    """Return (finite values as float64, number missing, whether integer-typed)."""
    dtype = getattr(values, "dtype", None)
    if dtype is not None and not isinstance(dtype, np.dtype):  # pandas extension dtype
        integer = getattr(dtype, "kind", "O") in "iub"
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        raw = np.asarray(values)
        integer = raw.dtype.kind in "iub"
        try:
            arr = raw.astype(np.float64, copy=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"column {column!r}: numeric column holds non-numbers ({exc})"
            ) from None
    if arr.ndim != 1:
        raise ValueError(f"column {column!r}: expected a 1-D column, got shape {arr.shape}")
    finite = np.isfinite(arr)
    if finite.all():
        return arr, 0, integer
    kept = arr[finite]
    return kept, int(arr.size - kept.size), integer


def to_categories(values: Any, column: str = "value") -> tuple[list[Any], IntArray, int]:
    """Return (categories, counts, number missing); categories sorted when comparable.

    >>> to_categories(["b", "a", None, "b"])
    (['a', 'b'], array([1, 2]), 1)
    >>> to_categories([3, 1, 3])
    ([1, 3], array([1, 2]), 0)
    """
    codes_cats = _pandas_categorical(values)
    if codes_cats is not None:
        codes, cats = codes_cats
        n_missing = int(np.count_nonzero(codes < 0))
        counts = np.bincount(codes[codes >= 0], minlength=len(cats)).astype(np.int64)
        keep = np.flatnonzero(counts)
        return _sorted([_py(cats[i]) for i in keep], counts[keep], n_missing)
    # a list like ["a", nan] would become the string "nan" in a unicode array
    arr = np.asarray(values) if hasattr(values, "dtype") else np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"column {column!r}: expected a 1-D column, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind == "b":
        counts = np.bincount(arr.view(np.uint8), minlength=2).astype(np.int64)
        keep = np.flatnonzero(counts)
        return [bool(i) for i in keep], counts[keep], 0
    if kind in "iu" and arr.size and 0 <= arr.min() and arr.max() < _BINCOUNT_MAX:
        counts = np.bincount(arr).astype(np.int64)
        keep = np.flatnonzero(counts)
        return keep.tolist(), counts[keep], 0
    if kind in "iuf":
        finite = arr[~np.isnan(arr)] if kind == "f" else arr
        uniq, counts = np.unique(finite, return_counts=True)
        return uniq.tolist(), counts.astype(np.int64), int(arr.size - finite.size)
    import pandas as pd

    codes, uniques = pd.factorize(arr)
    n_missing = int(np.count_nonzero(codes < 0))
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques)).astype(np.int64)
    return _sorted([_py(u) for u in uniques], counts, n_missing)


def _pandas_categorical(values: Any) -> tuple[NDArray[np.intp], Any] | None:
    dtype = getattr(values, "dtype", None)
    if getattr(dtype, "name", None) != "category":
        return None
    cat = getattr(values, "cat", None)  # a Series; a bare Categorical has codes itself
    source = cat if cat is not None else values
    return np.asarray(source.codes), source.categories


def _sorted(cats: list[Any], counts: IntArray, n_missing: int) -> tuple[list[Any], IntArray, int]:
    try:
        order = sorted(range(len(cats)), key=cats.__getitem__)
    except TypeError:  # mixed, unorderable categories keep first-seen order
        return cats, counts, n_missing
    return [cats[i] for i in order], counts[order], n_missing


def _py(value: Any) -> Any:
    """Numpy scalar -> Python scalar, so categories serialize and hash alike."""
    return value.item() if isinstance(value, np.generic) else value


def align(
    ref_cats: list[Any], ref_counts: IntArray, cur_cats: list[Any], cur_counts: IntArray
) -> tuple[list[Any], IntArray, IntArray]:
    """Counts of both sides over the union of categories (sorted when comparable)."""
    if ref_cats == cur_cats:
        return ref_cats, ref_counts, cur_counts
    union = list(dict.fromkeys([*ref_cats, *cur_cats]))
    try:
        union.sort()
    except TypeError:
        pass
    index = {c: i for i, c in enumerate(union)}
    ref = np.zeros(len(union), dtype=np.int64)
    cur = np.zeros(len(union), dtype=np.int64)
    ref[[index[c] for c in ref_cats]] = ref_counts
    cur[[index[c] for c in cur_cats]] = cur_counts
    return union, ref, cur
