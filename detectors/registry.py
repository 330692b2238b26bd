"""Every streaming detector by its config name: an explicit list, no import magic."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from detectors.adwin import ADWIN
from detectors.base import StreamDetector
from detectors.category_chi2 import CategoryChi2
from detectors.ddm import DDM
from detectors.eddm import EDDM
from detectors.hddm_a import HDDM_A
from detectors.hddm_w import HDDM_W
from detectors.kswin import KSWIN
from detectors.page_hinkley import PageHinkley

DETECTORS: Mapping[str, type[StreamDetector]] = {
    cls.name: cls for cls in (ADWIN, PageHinkley, KSWIN, CategoryChi2, DDM, EDDM, HDDM_A, HDDM_W)
}


def make_detector(name: str, params: Mapping[str, Any]) -> StreamDetector:
    """Build detector ``name`` with ``params``; errors name the bad parameter.

    >>> make_detector("adwin", {"delta": 0.01}).statistic()[0]
    'mean'
    >>> make_detector("adwn", {})
    Traceback (most recent call last):
    ...
    ValueError: unknown detector 'adwn' (did you mean 'adwin'?); valid: adwin, category_chi2, ddm, eddm, hddm_a, hddm_w, kswin, page_hinkley
    >>> make_detector("adwin", {"detla": 0.01})
    Traceback (most recent call last):
    ...
    ValueError: unknown parameter 'detla' for adwin (did you mean 'delta'?); valid: clock, delta, grace_period, max_buckets, min_window_length
    """
    cls = DETECTORS.get(name)
    if cls is None:
        raise ValueError(
            f"unknown detector {name!r}{_hint(name, DETECTORS)}; valid: {', '.join(sorted(DETECTORS))}"
        )
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in params:
        if key not in valid:
            raise ValueError(
                f"unknown parameter {key!r} for {name}{_hint(key, valid)}; valid: {', '.join(sorted(valid))}"
            )
    return cls(**params)


def _hint(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
