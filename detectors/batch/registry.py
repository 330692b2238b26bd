"""Every batch test by its config name: an explicit dict, no import-time registration."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from detectors.batch.anderson_darling import AndersonDarling
from detectors.batch.base import BatchTest
from detectors.batch.chi_squared import ChiSquared
from detectors.batch.hellinger import Hellinger
from detectors.batch.jensen_shannon import JensenShannon
from detectors.batch.ks import KS
from detectors.batch.psi import PSI
from detectors.batch.wasserstein import Wasserstein
from detectors.batch.z_test import ZTest

TESTS: Mapping[str, type[BatchTest]] = {
    "anderson": AndersonDarling,
    "chi2": ChiSquared,
    "hellinger": Hellinger,
    "jensenshannon": JensenShannon,
    "ks": KS,
    "psi": PSI,
    "wasserstein": Wasserstein,
    "z": ZTest,
}


def get_test_class(name: str) -> type[BatchTest]:
    """The test class registered as ``name``.

    >>> get_test_class("ks").__name__
    'KS'
    >>> get_test_class("wasserstien")
    Traceback (most recent call last):
    ...
    ValueError: unknown batch test 'wasserstien' (did you mean 'wasserstein'?); valid: anderson, chi2, hellinger, jensenshannon, ks, psi, wasserstein, z
    """
    cls = TESTS.get(name)
    if cls is None:
        raise ValueError(
            f"unknown batch test {name!r}{_hint(name, TESTS)}; valid: {', '.join(sorted(TESTS))}"
        )
    return cls


def build_test(name: str, params: Mapping[str, Any] | None = None) -> BatchTest:
    """Build test ``name`` with ``params``; errors name the bad parameter.

    >>> build_test("psi", {"threshold": 0.2, "bins": 10})
    PSI(threshold=0.2, bins=10)
    >>> build_test("psi", {"treshold": 0.2})
    Traceback (most recent call last):
    ...
    ValueError: unknown parameter 'treshold' for psi (did you mean 'threshold'?); valid: bins, threshold
    """
    cls = get_test_class(name)
    params = dict(params or {})
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in params:
        if key not in valid:
            raise ValueError(
                f"unknown parameter {key!r} for {name}{_hint(key, valid)}; "
                f"valid: {', '.join(sorted(valid))}"
            )
    return cls(**params)


def _hint(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
