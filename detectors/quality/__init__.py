"""Data-quality checks of one current window against a reference profile.

Pure functions (no I/O, no clock). :func:`run_quality` runs every check on a
window; each check is also a function of plain sequences:

==========================  ==============================================
check                       module
==========================  ==============================================
``unexpected_features``,    :mod:`~detectors.quality.schema`
``missing_required``
``duplicates``              :mod:`~detectors.quality.duplicates`
``missing_rate``            :mod:`~detectors.quality.missing_rate`
``out_of_range``            :mod:`~detectors.quality.out_of_range` (numeric)
``new_categories``          :mod:`~detectors.quality.new_categories`
                            (categorical, binary)
``constant_column``         :mod:`~detectors.quality.constant_columns`
==========================  ==============================================

Default thresholds are on :class:`QualityThresholds`; override them by name.

>>> import numpy as np
>>> from detectors.batch import build_profile
>>> rng = np.random.default_rng(0)
>>> ref = {"x": rng.normal(size=2000), "c": rng.choice(["a", "b"], 2000)}
>>> profile = build_profile(ref, {"x": "numeric", "c": "categorical"})
>>> cur = from_columns({"x": rng.normal(size=200).tolist(), "c": ["a"] * 150 + ["new"] * 50})
>>> [(r.check, r.column) for r in run_quality(cur, profile, ["x", "c"]) if r.failed]
[('new_categories', 'c')]
>>> failed = run_quality(cur, profile, ["x", "c"], {"new_category_margin": 0.5})
>>> [r.check for r in failed if r.failed]
[]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detectors.batch.profile import NumericProfile, ReferenceProfile
from detectors.quality.base import (
    QualityResult,
    QualityThresholds,
    WindowData,
    WindowLike,
    from_columns,
    resolve_thresholds,
    window_data,
)
from detectors.quality.constant_columns import constant_column
from detectors.quality.duplicates import duplicates
from detectors.quality.missing_rate import missing_rate
from detectors.quality.new_categories import new_categories
from detectors.quality.out_of_range import out_of_range
from detectors.quality.schema import schema


def run_quality(
    window_like: WindowLike | WindowData,
    profile: ReferenceProfile,
    column_names: Sequence[str],
    thresholds: QualityThresholds | Mapping[str, Any] | None = None,
    *,
    required: Sequence[str] | None = None,
) -> list[QualityResult]:
    """Every quality check of one window, in a fixed order.

    Parameters
    ----------
    window_like
        A :class:`monitor.windows.Window` (or anything with its ``rows``,
        ``n``, ``missing``, ``unexpected`` and ``duplicates``), or a
        :class:`WindowData` (see :func:`from_columns`).
    profile
        The reference profile; a feature it does not profile gets only the
        schema checks (there is nothing to compare it with), and so does a
        feature absent from a :class:`WindowData`'s columns (such as the
        feature a :func:`detectors.segments.segment_window` segment is cut by).
    column_names
        The window's features in row order: numeric features, then
        categorical ones, as ``ModelConfig.numeric_features() +
        ModelConfig.categorical_features()``.
    thresholds
        Overrides by name of :class:`QualityThresholds` defaults.
    required
        Features that must be present; default: those of the window never
        missing in the reference profile.

    Returns
    -------
    The two schema results, the duplicates result, then per profiled
    feature (in ``column_names`` order) ``missing_rate``, ``out_of_range``
    or ``new_categories``, and ``constant_column``.

    """
    t = resolve_thresholds(thresholds)
    data = window_data(window_like, column_names)
    names = [name for name in column_names if name in data.columns]
    if required is None:
        required = [n for n in names if n in profile.columns and profile.columns[n].n_missing == 0]
    missing = {name: data.missing.get(name, 0) for name in names}
    results = schema(data.unexpected, data.n, missing, required, t)
    results.append(duplicates(data.duplicates, data.n, t))
    for name in names:
        ref = profile.columns.get(name)
        if ref is None:
            continue
        results.append(missing_rate(name, missing[name], data.n, ref, t))
        values = data.columns[name]
        if isinstance(ref, NumericProfile):
            results.append(out_of_range(name, values, ref, t))
        else:
            results.append(new_categories(name, values, ref, t))
        results.append(constant_column(name, values, ref, t))
    return results


__all__ = [
    "QualityResult",
    "QualityThresholds",
    "WindowData",
    "WindowLike",
    "constant_column",
    "duplicates",
    "from_columns",
    "missing_rate",
    "new_categories",
    "out_of_range",
    "resolve_thresholds",
    "run_quality",
    "schema",
    "window_data",
]
