"""Alerts into driftd's own log."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from alerts.base import AlertChannel, DeliveryResult
from alerts.message import summary
from monitor.config import LogAlertConfig

log = logging.getLogger("driftd.alert")


class LogChannel(AlertChannel):
    """Writes the decision summary as a WARNING (CRITICAL for critical rules).
    Never fails; does not block."""

    def __init__(self, config: LogAlertConfig) -> None:
        self._take_policy(config)

    def deliver(
        self, decision: Mapping[str, Any], idempotency_key: str, attempt: int
    ) -> DeliveryResult:
        level = logging.CRITICAL if decision.get("severity") == "critical" else logging.WARNING
        log.log(
            level,
            "%s",
            summary(decision),
            extra={"decision": idempotency_key, "model": decision["model"]},
        )
        return DeliveryResult("logged")
