"""Alerts to any HTTP endpoint: a signed JSON POST, like the webhook action."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from alerts.base import AlertChannel, DeliveryResult
from alerts.message import summary
from monitor.config import WebhookAlertConfig
from triggers.webhook import ALERT_PLACEHOLDERS, encode_json, signed_target, template_values


class WebhookChannel(AlertChannel):
    """POSTs ``{"text": <summary>, "decision": <decision>}`` (or the rendered
    ``body_template``, where ``{{text}}`` is the summary), signed and retried
    exactly like the webhook action (``triggers.webhook.SignedSender``): same
    headers, same ``Idempotency-Key`` on every attempt. Blocks up to
    ``timeout_seconds``.
    """

    def __init__(self, config: WebhookAlertConfig, clock: Callable[[], float] = time.time) -> None:
        self._take_policy(config)
        self.url = config.url
        self._template, self._sender = signed_target(config, ALERT_PLACEHOLDERS, clock)

    def body(self, decision: Mapping[str, Any]) -> bytes:
        text = summary(decision)
        if self._template is None:
            return encode_json({"text": text, "decision": dict(decision)})
        return self._template.render(template_values(decision, text=text))

    def deliver(
        self, decision: Mapping[str, Any], idempotency_key: str, attempt: int
    ) -> DeliveryResult:
        return self._sender.send(self.body(decision), idempotency_key, attempt)
