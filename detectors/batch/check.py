"""Column-wise drift check: every column of the current window against the
reference (raw columns or a stored profile), one test per column.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = {"x": rng.normal(size=5000), "c": rng.choice(["a", "b", "c"], 5000)}
>>> cur = {"x": rng.normal(0.5, 1.0, 5000), "c": rng.choice(["a", "b", "c"], 5000)}
>>> for r in check(ref, cur, {"x": "numeric", "c": "categorical"}):
...     print(r.column, r.test, r.drift)
x wasserstein True
c jensenshannon False
>>> [r.test for r in check(ref, cur, {"x": "numeric"}, tests={"x": "ks"})]
['ks']
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from detectors.batch._data import PreparedColumn, make_pair, prepare_column
from detectors.batch.base import COLUMN_TYPES, BatchTest, TestResult
from detectors.batch.defaults import default_test
from detectors.batch.profile import ReferenceProfile
from detectors.batch.registry import build_test


def check(
    reference: Any,
    current: Any,
    column_types: Mapping[str, str] | None = None,
    tests: Mapping[str, str | BatchTest] | None = None,
    *,
    workers: int | None = None,
) -> list[TestResult]:
    """Test each column of ``current`` against ``reference``.

    Parameters
    ----------
    reference
        Mapping of column name to array-like, a pandas DataFrame, a
        :class:`PreparedReference` (raw reference sorted once, for repeated
        checks), or a :class:`~detectors.batch.profile.ReferenceProfile`.
    current
        Mapping of column name to array-like, or a pandas DataFrame.
    column_types
        ``"numeric"``, ``"categorical"`` or ``"binary"`` for each column to
        check, in the order results are returned. Optional with a profile
        or a prepared reference (which record them).
    tests
        Per-column override: a config name (with default parameters) or a
        configured test, e.g. ``{"age": "ks", "income": PSI(threshold=0.2)}``.
        Other columns get :func:`~detectors.batch.defaults.default_test`.
    workers
        Threads; columns run in parallel because numpy's sorts and
        histograms release the GIL. Default: one per CPU.

    Returns
    -------
    One :class:`~detectors.batch.base.TestResult` per column.

    """
    stored = reference if isinstance(reference, ReferenceProfile | PreparedReference) else None
    types = _column_types(column_types, stored)
    chosen = _overrides(tests, types)
    if workers is None:
        workers = os.cpu_count() or 1
    elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")

    def one(name: str) -> TestResult:
        if name not in current:
            raise ValueError(f"column {name!r} is missing from current")
        if stored is not None:
            ref_col: Any = stored.columns[name]
        elif name not in reference:
            raise ValueError(f"column {name!r} is missing from reference")
        else:
            ref_col = reference[name]
        pair = make_pair(ref_col, current[name], types[name], name)
        test = chosen.get(name) or default_test(
            types[name], pair.n_ref, pair.n_cur, from_profile=pair.from_profile
        )
        return test.run_pair(pair, name)

    names = list(types)
    if workers == 1 or len(names) < 2:
        return [one(n) for n in names]
    with ThreadPoolExecutor(max_workers=min(workers, len(names))) as pool:
        return list(pool.map(one, names))


def _column_types(
    column_types: Mapping[str, str] | None, stored: ReferenceProfile | PreparedReference | None
) -> dict[str, str]:
    if column_types is None:
        if stored is None:
            raise ValueError(
                "column_types is required unless the reference is a profile or prepared"
            )
        return dict(stored.column_types)
    types = dict(column_types)
    for name, ctype in types.items():
        if ctype not in COLUMN_TYPES:
            raise ValueError(
                f"column {name!r}: unknown column type {ctype!r}; valid: {', '.join(COLUMN_TYPES)}"
            )
        if stored is not None:
            if name not in stored.columns:
                raise ValueError(f"column {name!r} is not in the prepared or profiled reference")
            if stored.column_types[name] != ctype:
                raise ValueError(
                    f"column {name!r}: declared {ctype}, profiled as {stored.column_types[name]}"
                )
    return types


def _overrides(
    tests: Mapping[str, str | BatchTest] | None, types: Mapping[str, str]
) -> dict[str, BatchTest]:
    chosen: dict[str, BatchTest] = {}
    for name, spec in (tests or {}).items():
        if name not in types:
            raise ValueError(f"tests: column {name!r} is not among the checked columns")
        test = build_test(spec) if isinstance(spec, str) else spec
        if not isinstance(test, BatchTest):
            raise ValueError(
                f"tests: column {name!r}: expected a test name or BatchTest, got {spec!r}"
            )
        if types[name] not in test.column_types:
            raise ValueError(
                f"tests: column {name!r}: test {test.name!r} does not take {types[name]} columns"
            )
        chosen[name] = test
    return chosen


class PreparedReference:
    """A raw reference prepared once for many checks: numeric columns sorted,
    categorical columns counted. Results are identical to checking against
    the raw reference. Checks then skip counting the reference's categories
    and, in tests that sort (KS, Anderson-Darling, binned tests), its sort;
    the default large-sample Wasserstein does not sort, so gains little.

    >>> import numpy as np
    >>> ref = PreparedReference({"x": np.arange(2000.0)}, {"x": "numeric"})
    >>> check(ref, {"x": np.arange(2000.0) + 400})[0].drift
    True
    """

    def __init__(
        self, reference: Any, column_types: Mapping[str, str], *, workers: int | None = None
    ) -> None:
        types = _column_types(column_types, None)
        names = list(types)

        def one(name: str) -> PreparedColumn:
            if name not in reference:
                raise ValueError(f"column {name!r} is missing from reference")
            return prepare_column(reference[name], types[name], name)

        with ThreadPoolExecutor(
            max_workers=max(1, min(workers or os.cpu_count() or 1, len(names)))
        ) as pool:
            prepared = list(pool.map(one, names))
        self.column_types: dict[str, str] = types
        self.columns: dict[str, PreparedColumn] = dict(zip(names, prepared, strict=True))
