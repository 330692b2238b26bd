"""The batch-test contract: one statistical test comparing a reference window
with a current window, one column at a time.

A test is a small configured object (its only state is the threshold and a
few binning parameters); :meth:`BatchTest.run` is pure. Every run returns a
frozen :class:`TestResult` that records the threshold actually used, so a
stored result explains its own verdict.

Two kinds of tests:

* ``"p_value"``: a hypothesis test; drift when ``p_value < threshold``.
* ``"distance"``: an effect size; drift when ``statistic >= threshold``.

p-value tests answer "is there *any* difference?", which on a million rows is
nearly always yes; distance tests answer "is the difference large?". See
:mod:`detectors.batch.defaults` for which one is picked at which sample size.
"""

from __future__ import annotations

import abc
import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

import msgspec

if TYPE_CHECKING:
    from detectors.batch._data import Pair

NUMERIC = "numeric"
CATEGORICAL = "categorical"
BINARY = "binary"
COLUMN_TYPES = (NUMERIC, CATEGORICAL, BINARY)

Kind = Literal["p_value", "distance"]


class TestResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one test on one column.

    Parameters
    ----------
    test
        Config name of the test (``"ks"``, ``"wasserstein"``, ...).
    column
        Column name.
    statistic_name
        What ``statistic`` measures (``"D"``, ``"normed_wasserstein"``, ...).
    statistic
        The test statistic or distance.
    p_value
        The p-value, or ``None`` for distance tests.
    threshold
        The threshold actually used for the verdict.
    drift
        The verdict.
    approximate
        True when the statistic was estimated from a stored reference
        profile rather than computed from the raw reference.

    """

    __test__: ClassVar[bool] = False  # not a pytest test class despite the name

    test: str
    column: str
    statistic_name: str
    statistic: float
    p_value: float | None
    threshold: float
    drift: bool
    approximate: bool = False


class Outcome(NamedTuple):
    """What a test computes before the verdict is applied."""

    statistic: float
    p_value: float | None = None
    approximate: bool = False


class BatchTest(abc.ABC):
    """A two-sample test for one column.

    Subclasses set the class attributes and implement :meth:`compute`.

    Parameters
    ----------
    threshold
        Significance level for ``"p_value"`` tests (in (0, 1)), minimum
        distance for ``"distance"`` tests (> 0). ``None`` uses
        :attr:`default_threshold`.

    """

    __test__: ClassVar[bool] = False

    #: Config name, as written in ``config.toml``.
    name: ClassVar[str]
    #: Column types the test accepts (subset of :data:`COLUMN_TYPES`).
    column_types: ClassVar[tuple[str, ...]]
    #: What the statistic measures.
    statistic_name: ClassVar[str]
    default_threshold: ClassVar[float]
    kind: ClassVar[Kind]
    #: Whether the test can run against a stored profile instead of the raw
    #: reference: ``"exact"``, ``"approximate"`` (numeric columns binned on
    #: the profile's quantiles) or ``"no"``.
    from_profile: ClassVar[Literal["exact", "approximate", "no"]]

    def __init__(self, threshold: float | None = None) -> None:
        if threshold is None:
            threshold = self.default_threshold
        elif self.kind == "p_value":
            threshold = check_open_unit("threshold", threshold, self.name)
        else:
            threshold = check_positive("threshold", threshold, self.name)
        self.threshold: float = float(threshold)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))

    @abc.abstractmethod
    def compute(self, pair: Pair) -> Outcome:
        """Compute the statistic (and p-value) on a prepared column pair."""

    def is_drift(self, outcome: Outcome) -> bool:
        """Apply the threshold to an outcome."""
        if self.kind == "p_value":
            return outcome.p_value is not None and outcome.p_value < self.threshold
        return outcome.statistic >= self.threshold

    def run_pair(self, pair: Pair, column: str = "value") -> TestResult:
        """Run on a prepared pair (what :func:`detectors.batch.check` uses)."""
        if pair.column_type not in self.column_types:
            raise ValueError(
                f"column {column!r}: test {self.name!r} does not take {pair.column_type} "
                f"columns (takes: {', '.join(self.column_types)})"
            )
        outcome = self.compute(pair)
        return TestResult(
            test=self.name,
            column=column,
            statistic_name=self.statistic_name,
            statistic=float(outcome.statistic),
            p_value=None if outcome.p_value is None else float(outcome.p_value),
            threshold=self.threshold,
            drift=bool(self.is_drift(outcome)),
            approximate=outcome.approximate,
        )

    def run(
        self, reference: Any, current: Any, *, column: str = "value", column_type: str = NUMERIC
    ) -> TestResult:
        """Compare ``current`` with ``reference`` for one column.

        ``reference`` is an array-like of values or a column profile from
        :func:`detectors.batch.build_profile`; ``current`` is array-like.
        Missing values (NaN, None, +-inf for numeric columns) are dropped.
        """
        from detectors.batch._data import make_pair

        return self.run_pair(make_pair(reference, current, column_type, column), column)


def check_open_unit(param: str, value: Any, owner: str) -> float:
    """``value`` must be a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ValueError(f"{owner}: {param} must be in (0, 1), got {value!r}")
    return float(value)


def check_positive(param: str, value: Any, owner: str) -> float:
    """``value`` must be a finite number > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{owner}: {param} must be a finite number > 0, got {value!r}")
    return float(value)


def check_int(param: str, value: Any, owner: str, minimum: int) -> int:
    """``value`` must be an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {param} must be an integer >= {minimum}, got {value!r}")
    return value


def check_bins(value: Any, owner: str) -> str | int:
    """``bins`` is ``"sturges"`` (Evidently's binning) or a number of quantile bins."""
    if value == "sturges":
        return "sturges"
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(
            f"{owner}: bins must be 'sturges' or an integer >= 2 (reference-quantile bins), "
            f"got {value!r}"
        )
    return value
