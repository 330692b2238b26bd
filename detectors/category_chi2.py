"""Category frequencies in a sliding window against a reference: chi-squared."""

from __future__ import annotations

from collections import Counter, deque
from typing import ClassVar

from scipy.stats import chi2_contingency

from detectors.base import CATEGORICAL, StreamDetector, check_open_unit, check_positive

OTHER = "__other__"


class CategoryChi2(StreamDetector):
    """Detects a change in the category mix of a categorical stream.

    The first ``reference_size`` values form the reference. Then a sliding
    window of the last ``window_size`` values is compared with it every
    ``test_every`` values by a chi-squared test of homogeneity (two samples,
    neither treated as exact, unlike a goodness-of-fit test that is
    anti-conservative at large samples). A p-value below ``alpha`` is drift;
    the window then becomes the new reference, as river's detectors forget
    the past after a detection.

    Memory is bounded: at most ``max_categories`` distinct values are kept,
    later newcomers are counted together as ``__other__``.

    >>> import random
    >>> rng = random.Random(7)
    >>> detector = CategoryChi2(reference_size=500, window_size=300, test_every=50)
    >>> before = rng.choices("abc", weights=[5, 3, 2], k=2000)
    >>> after = rng.choices("abc", weights=[2, 3, 5], k=1000)
    >>> [i for i, x in enumerate(before + after) if detector.update(x)]
    [2099]
    >>> CategoryChi2(alpha=0)
    Traceback (most recent call last):
    ...
    ValueError: alpha must be in (0, 1), got 0
    """

    name: ClassVar[str] = "category_chi2"

    def __init__(
        self,
        reference_size: int = 1000,
        window_size: int = 500,
        test_every: int = 100,
        alpha: float = 1e-4,
        max_categories: int = 100,
    ) -> None:
        self.reference_size = check_positive("reference_size", reference_size, integer=True)
        self.window_size = check_positive("window_size", window_size, integer=True)
        self.test_every = check_positive("test_every", test_every, integer=True)
        self.alpha = check_open_unit("alpha", alpha)
        self.max_categories = check_positive(
            "max_categories", max_categories, integer=True, minimum=1
        )
        self._reference: Counter[str] = Counter()
        self._n_reference = 0
        self._window: deque[str] = deque()
        self._counts: Counter[str] = Counter()
        self._since_test = 0
        self._drift = False
        self._last = (float("nan"), float("nan"))

    @classmethod
    def accepts(cls, task: str) -> tuple[str, ...]:
        return (CATEGORICAL,)

    def _fold(self, x: object) -> str:
        key = str(x)
        if key in self._reference or key in self._counts:
            return key
        known = len(self._reference.keys() | self._counts.keys())
        return key if known < self.max_categories else OTHER

    def update(self, x: object) -> bool:
        key = self._fold(x)
        self._drift = False
        if self._n_reference < self.reference_size:
            self._reference[key] += 1
            self._n_reference += 1
            return False
        window, counts = self._window, self._counts
        window.append(key)
        counts[key] += 1
        if len(window) > self.window_size:
            old = window.popleft()
            counts[old] -= 1
            if not counts[old]:
                del counts[old]
        self._since_test += 1
        if len(window) < self.window_size or self._since_test < self.test_every:
            return False
        self._since_test = 0
        self._drift = self._test()
        return self._drift

    def _test(self) -> bool:
        categories = sorted(self._reference.keys() | self._counts.keys())
        if len(categories) < 2:
            return False
        table = [
            [self._reference.get(c, 0) for c in categories],
            [self._counts.get(c, 0) for c in categories],
        ]
        result = chi2_contingency(table, correction=False)
        self._last = (float(result.statistic), float(result.pvalue))
        if result.pvalue >= self.alpha:
            return False
        self._reference = Counter(self._counts)
        self._n_reference = len(self._window)
        self._window.clear()
        self._counts.clear()
        return True

    @property
    def drift_detected(self) -> bool:
        return self._drift

    def statistic(self) -> tuple[str, float]:
        return ("chi2", self._last[0])

    def details(self) -> dict[str, float]:
        return {"p_value": self._last[1], "alpha": self.alpha}
