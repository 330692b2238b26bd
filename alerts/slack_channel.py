"""Slack alerts through slack-sdk: an incoming webhook or chat.postMessage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from alerts.base import AlertChannel, DeliveryError, DeliveryResult
from alerts.message import blocks, summary
from monitor.config import SlackAlertConfig


class SlackChannel(AlertChannel):
    """Posts a Block Kit message (with a plain-text fallback) about a decision.

    slack-sdk's own retry handler waits out a 429 ``Retry-After`` once or
    twice; beyond that the dispatcher's backoff takes over. Blocks up to
    ``timeout_seconds`` per request.
    """

    def __init__(self, config: SlackAlertConfig) -> None:
        self._take_policy(config)
        self.channel = config.channel
        timeout = max(1, int(config.timeout_seconds))
        retry: list[RetryHandler] = [RateLimitErrorRetryHandler(max_retry_count=2)]
        self._webhook: WebhookClient | None = None
        self._client: WebClient | None = None
        if config.webhook_url is not None:
            self._webhook = WebhookClient(
                config.webhook_url.reveal(), timeout=timeout, retry_handlers=retry
            )
        else:
            assert config.token is not None  # config validation guarantees one of them
            self._client = WebClient(
                token=config.token.reveal(),
                base_url=config.base_url,
                timeout=timeout,
                retry_handlers=retry,
            )

    def deliver(
        self, decision: Mapping[str, Any], idempotency_key: str, attempt: int
    ) -> DeliveryResult:
        text = summary(decision)
        if self._webhook is not None:
            try:
                r = self._webhook.send(text=text, blocks=blocks(decision))
            except OSError as exc:
                raise DeliveryError(f"slack webhook: {exc}") from None
            if r.status_code != 200:
                retry_after = r.headers.get("Retry-After") if r.headers else None
                raise DeliveryError(
                    f"slack webhook: HTTP {r.status_code} {r.body[:200]}",
                    retryable=r.status_code >= 500 or r.status_code == 429,
                    retry_after=float(
                        retry_after[0] if isinstance(retry_after, list) else retry_after
                    )
                    if retry_after
                    else None,
                )
            return DeliveryResult("slack webhook: HTTP 200")
        assert self._client is not None
        # A resolution is a follow-up in the thread of the message it resolves.
        thread = decision.get("thread") or {}
        try:
            resp = self._client.chat_postMessage(
                channel=thread.get("channel") or self.channel or "",
                text=text,
                blocks=blocks(decision),
                thread_ts=thread.get("ts"),
            )
        except SlackApiError as exc:
            status = exc.response.status_code
            raise DeliveryError(
                f"slack chat.postMessage: {exc.response.get('error', status)}",
                retryable=status >= 500 or status == 429,
            ) from None
        except OSError as exc:
            raise DeliveryError(f"slack chat.postMessage: {exc}") from None
        return DeliveryResult(
            "slack chat.postMessage ok", {"ts": resp.get("ts"), "channel": resp.get("channel")}
        )
