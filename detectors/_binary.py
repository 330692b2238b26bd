"""Shared shape of river's binary (error-rate) detectors."""

from __future__ import annotations

from detectors.base import ERROR, RiverBacked


class BinaryErrorDetector(RiverBacked):
    """Watches a classifier's 0/1 error stream (1: the prediction was wrong)."""

    @classmethod
    def accepts(cls, task: str) -> tuple[str, ...]:
        return (ERROR,) if task == "classification" else ()

    def statistic(self) -> tuple[str, float]:
        # river keeps the running error rate privately; read it only when a
        # signal is recorded, never on the per-event path.
        rate = getattr(self._d, "_p", None) or getattr(self._d, "_z", None)
        value = rate.get() if rate is not None else float("nan")
        return ("error_rate", float(value))
