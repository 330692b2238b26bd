"""Slice a window by the value of one categorical feature, so that every
check (drift, quality, performance) can run per segment.

Segments are the ``max_segments`` most frequent values of the feature in the
window (ties broken by the value's key, so the split is deterministic);
every other value goes to :data:`OTHER`, and a missing value is its own
value, :data:`MISSING`. The cap keeps a high-cardinality feature (a user id)
from turning one check into thousands. Values are keyed by
:func:`monitor.events.category_key`, as the daemon keys categories.

A segment of a window is its sample rows only: exact counts of the whole
window (predictions seen, missing values, duplicates, undeclared features)
cannot be split after the fact, so a segment's :class:`WindowData` counts
its sample rows and has no duplicates or undeclared features; run the
schema and duplicates checks on the whole window. A segment leaves out the
feature it is cut by (constant, or all missing, within it by construction).

>>> segment_indices(["a", "b", "a", None, "c", "a", "b"], max_segments=2)
{'a': [0, 2, 5], 'b': [1, 6], '__other__': [3, 4]}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from detectors.quality.base import (
    WindowData,
    WindowLike,
    category_of,
    from_columns,
    is_missing,
    window_data,
)

#: Segment of the values beyond the ``max_segments`` most frequent.
OTHER = "__other__"
#: Segment of rows where the feature is missing.
MISSING = "__missing__"
#: Default cap on named segments (besides :data:`OTHER`).
MAX_SEGMENTS = 10


def segment_keys(values: Sequence[Any], max_segments: int = MAX_SEGMENTS) -> list[str]:
    """The segment of each value.

    >>> segment_keys([1, 1.0, "2", None, None, True], max_segments=2)
    ['1', '1', '__other__', '__missing__', '__missing__', '__other__']
    """
    if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
        raise ValueError(f"max_segments must be an integer >= 1, got {max_segments!r}")
    keys = [MISSING if is_missing(v) else category_of(v) for v in values]
    counts = Counter(keys)
    kept = {k for k, _ in sorted(counts.items(), key=lambda kc: (-kc[1], kc[0]))[:max_segments]}
    return [k if k in kept else OTHER for k in keys]


def segment_indices(
    values: Sequence[Any], max_segments: int = MAX_SEGMENTS
) -> dict[str, list[int]]:
    """Row indices per segment: largest segment first, :data:`OTHER` last."""
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(segment_keys(values, max_segments)):
        groups.setdefault(k, []).append(i)
    order = sorted(groups, key=lambda k: (k == OTHER, -len(groups[k]), k))
    return {k: groups[k] for k in order}


def segment_rows(
    rows: Sequence[Any],
    column_names: Sequence[str],
    feature: str,
    max_segments: int = MAX_SEGMENTS,
) -> dict[str, list[Any]]:
    """Window sample rows (``(numeric, categorical, score, time)``) per segment of ``feature``.

    ``column_names`` is the row order of features (numeric, then categorical).

    >>> rows = [((1.0,), ("a",), 0.3, 0.0), ((2.0,), ("b",), 0.9, 1.0), ((3.0,), ("a",), 0.1, 2.0)]
    >>> {k: [r[0][0] for r in v] for k, v in segment_rows(rows, ["x", "c"], "c").items()}
    {'a': [1.0, 3.0], 'b': [2.0]}
    """
    names = list(column_names)
    if feature not in names:
        raise ValueError(f"feature {feature!r} is not among the columns {names}")
    i = names.index(feature)
    values = [(*row[0], *row[1])[i] for row in rows]
    return {k: [rows[j] for j in idx] for k, idx in segment_indices(values, max_segments).items()}


def segment_window(
    window: WindowLike | WindowData,
    column_names: Sequence[str],
    feature: str,
    max_segments: int = MAX_SEGMENTS,
) -> dict[str, WindowData]:
    """Per-segment :class:`~detectors.quality.base.WindowData` of a window's
    sample, ready for :func:`detectors.quality.run_quality` (counts from the
    sample; see the module docstring)."""
    data = window_data(window, column_names)
    if feature not in data.columns:
        raise ValueError(f"feature {feature!r} is not among the columns {list(data.columns)}")
    groups = segment_indices(data.columns[feature], max_segments)
    others = {name: col for name, col in data.columns.items() if name != feature}
    return {
        key: from_columns({name: [col[j] for j in idx] for name, col in others.items()})
        for key, idx in groups.items()
    }
