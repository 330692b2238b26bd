"""Retraining (or any) webhook: a signed JSON POST."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from monitor.config import WebhookActionConfig
from triggers.base import Action, DeliveryError, DeliveryResult
from triggers.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

# 4xx answers that mean "try again later" rather than "this request is wrong".
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})


class Webhook(Action):
    """POSTs the decision as JSON, signed with HMAC-SHA256 (see ``triggers.signing``).

    2xx is delivered. 5xx, 408/409/425/429, timeouts and connection errors are
    retried by the dispatcher (honouring ``Retry-After``); other 4xx answers
    are final. Blocks up to ``timeout_seconds``.
    """

    def __init__(self, config: WebhookActionConfig, clock: Callable[[], float] = time.time) -> None:
        self.name = config.name
        self.url = config.url
        self.max_attempts = config.max_attempts
        self.backoff_seconds = config.backoff_seconds
        self.backoff_max_seconds = config.backoff_max_seconds
        self._timeout = config.timeout_seconds
        self._key = config.signing_key.reveal().encode()
        self._headers = dict(config.headers)
        self._clock = clock

    def body(self, decision: Mapping[str, Any]) -> bytes:
        return json.dumps(decision, sort_keys=True, separators=(",", ":")).encode()

    def deliver(
        self, decision: Mapping[str, Any], idempotency_key: str, attempt: int
    ) -> DeliveryResult:
        body = self.body(decision)
        ts = int(self._clock())
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": "driftd",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._key, ts, body),
            IDEMPOTENCY_HEADER: idempotency_key,
            "X-Driftd-Attempt": str(attempt),
        }
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                status = response.status
                reply = response.read(2048).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            retryable = exc.code >= 500 or exc.code in _RETRYABLE_4XX
            raise DeliveryError(
                f"HTTP {exc.code} from {self.url}", retryable=retryable, retry_after=retry_after
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"{self.url}: {reason}") from None
        return DeliveryResult(f"HTTP {status}", {"status": status, "response": reply[:500]})


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
