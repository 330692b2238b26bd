"""Data-quality contract: the result record, the thresholds, the window input.

Every check is a pure function of current-window values (plain sequences,
``None`` or NaN = missing) and the reference's
:class:`~detectors.batch.profile.ReferenceProfile`; it returns one frozen
:class:`QualityResult` that records the threshold actually used, so a stored
result explains its own verdict.

Rate checks (missing values, out-of-range values, new categories, duplicates,
schema) share one rule: with ``expected`` the rate the reference predicts and
``n`` the number of current values, a check fails when::

    rate > expected + max(margin, sigmas * sqrt(expected * (1 - expected) / n))

and ``n >= min_rows``. The binomial term keeps a small window from tripping
on sampling noise; the margin is the smallest change worth reporting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import msgspec
import numpy as np

from monitor.events import category_key

NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]


class QualityResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one quality check.

    ``value`` is what was measured (a rate, or for ``constant_column`` a
    probability), ``threshold`` the limit it was compared with, ``failed``
    the verdict, ``detail`` a short human-readable explanation.
    """

    check: str
    column: str | None
    value: float
    threshold: float
    failed: bool
    detail: str = ""


class QualityThresholds(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Thresholds of every quality check, overridable by name (see
    :func:`resolve_thresholds`).

    ===========================  ============  ==================================
    name                         default       meaning
    ===========================  ============  ==================================
    ``min_rows``                 30            rate checks never fail on fewer
                                               values
    ``sigmas``                   3.0           binomial standard deviations of
                                               slack in every rate check
    ``missing_rate_margin``      0.02          missing share above the
                                               reference's missing rate
    ``out_of_range_margin``      0.01          share outside the reference range
                                               above the reference's own
    ``out_of_range_bounds``      ``quantile``  range: ``quantile`` is
                                               [q0.001, q0.999], ``minmax``
                                               is [min, max]
    ``new_category_margin``      0.01          share of values in categories the
                                               reference lacks
    ``constant_alpha``           0.001         a constant window fails when the
                                               reference's chance of one is lower
    ``duplicate_margin``         0.01          share of repeated prediction ids
    ``unexpected_margin``        0.01          undeclared feature keys per
                                               prediction
    ``missing_required_margin``  0.01          missing share of any required
                                               feature
    ===========================  ============  ==================================
    """

    min_rows: Annotated[int, msgspec.Meta(ge=1)] = 30
    sigmas: NonNegative = 3.0
    missing_rate_margin: NonNegative = 0.02
    out_of_range_margin: NonNegative = 0.01
    out_of_range_bounds: Literal["quantile", "minmax"] = "quantile"
    new_category_margin: NonNegative = 0.01
    constant_alpha: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.001
    duplicate_margin: NonNegative = 0.01
    unexpected_margin: NonNegative = 0.01
    missing_required_margin: NonNegative = 0.01


def resolve_thresholds(
    overrides: QualityThresholds | Mapping[str, Any] | None = None,
) -> QualityThresholds:
    """Defaults with ``overrides`` applied by name; unknown names and bad values raise.

    >>> resolve_thresholds({"missing_rate_margin": 0.05}).missing_rate_margin
    0.05
    >>> resolve_thresholds({"missing_margin": 0.05})
    Traceback (most recent call last):
    ...
    ValueError: quality thresholds: Object contains unknown field `missing_margin`
    """
    if overrides is None:
        return QualityThresholds()
    if isinstance(overrides, QualityThresholds):
        return overrides
    try:
        return msgspec.convert(dict(overrides), QualityThresholds)
    except msgspec.ValidationError as exc:
        raise ValueError(f"quality thresholds: {exc}") from None


def rate_limit(expected: float, n: int, margin: float, sigmas: float) -> float:
    """The largest rate that passes: ``expected + max(margin, sigmas * binomial std)``.

    >>> round(rate_limit(0.1, 100, 0.02, 3.0), 4)
    0.19
    >>> rate_limit(0.0, 100, 0.02, 3.0)
    0.02
    """
    std = math.sqrt(expected * (1.0 - expected) / n) if n > 0 else 0.0
    return expected + max(margin, sigmas * std)


def rate_result(
    check: str,
    column: str | None,
    count: int,
    n: int,
    expected: float,
    margin: float,
    thresholds: QualityThresholds,
    what: str,
) -> QualityResult:
    """Apply the shared rate rule (module docstring) to ``count`` of ``n``."""
    rate = count / n if n else 0.0
    limit = rate_limit(expected, n, margin, thresholds.sigmas)
    enough = n >= thresholds.min_rows
    detail = f"{count}/{n} {what} ({rate:.2%}); expected {expected:.2%}, limit {limit:.2%}"
    if not enough:
        detail += f"; under min_rows={thresholds.min_rows}, not judged"
    return QualityResult(
        check=check,
        column=column,
        value=rate,
        threshold=limit,
        failed=enough and rate > limit,
        detail=detail,
    )


class WindowLike(Protocol):
    """What :func:`window_data` reads of a :class:`monitor.windows.Window`."""

    # Read-only members, so that a Window's lists satisfy the Sequences.
    @property
    def rows(
        self,
    ) -> Sequence[tuple[tuple[float | None, ...], tuple[str | None, ...], Any, Any]]: ...
    @property
    def n(self) -> int: ...
    @property
    def missing(self) -> Sequence[int]: ...
    @property
    def unexpected(self) -> int: ...
    @property
    def duplicates(self) -> int: ...


@dataclass(frozen=True)
class WindowData:
    """Current-window input of the quality checks, without the daemon's types.

    ``columns`` holds a sample of values per feature (``None``/NaN = missing);
    ``n`` and ``missing`` are exact counts over every prediction of the window
    (``n`` may exceed the sample size); ``unexpected`` counts undeclared
    features over all predictions, ``duplicates`` repeated prediction ids.
    """

    columns: Mapping[str, Sequence[Any]]
    n: int
    missing: Mapping[str, int]
    unexpected: int = 0
    duplicates: int = 0


def from_columns(
    columns: Mapping[str, Sequence[Any]], *, unexpected: int = 0, duplicates: int = 0
) -> WindowData:
    """A :class:`WindowData` whose counts are taken from ``columns`` themselves.

    >>> d = from_columns({"x": [1.0, None, float("nan")], "c": ["a", "b", None]})
    >>> d.n, dict(d.missing)
    (3, {'x': 2, 'c': 1})
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns have different lengths: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    missing = {name: sum(1 for v in values if is_missing(v)) for name, values in columns.items()}
    return WindowData(columns, n, missing, unexpected, duplicates)


def window_data(window: WindowLike | WindowData, column_names: Sequence[str]) -> WindowData:
    """Columns of a window's sample rows, named by ``column_names``.

    ``column_names`` is the order of the row values: the model's numeric
    features, then its categorical ones (``ModelConfig.numeric_features() +
    ModelConfig.categorical_features()``).
    """
    if isinstance(window, WindowData):
        return window
    names = list(column_names)
    if len(window.missing) != len(names):
        raise ValueError(
            f"window has {len(window.missing)} features, column_names has {len(names)}"
        )
    columns: dict[str, list[Any]] = {name: [] for name in names}
    lists = [columns[name] for name in names]
    for row in window.rows:
        for target, v in zip(lists, (*row[0], *row[1]), strict=True):
            target.append(v)
    missing = dict(zip(names, window.missing, strict=True))
    return WindowData(columns, window.n, missing, window.unexpected, window.duplicates)


def is_missing(value: Any) -> bool:
    """``None`` or a float NaN (how the daemon and pandas spell a missing value)."""
    return value is None or (isinstance(value, float) and value != value)


def category_of(value: Any) -> str:
    """:func:`monitor.events.category_key` of a value, numpy scalars included
    (``np.True_`` is no ``bool``, and would key as ``"True"``, not ``"true"``).

    >>> import numpy as np
    >>> category_of(np.True_), category_of(np.int64(3)), category_of(2.0)
    ('true', '3', '2')
    """
    return category_key(value.item() if isinstance(value, np.generic) else value)
