"""Alert channels by their config type: an explicit list, no import magic."""

from __future__ import annotations

from alerts.base import AlertChannel
from alerts.log_channel import LogChannel
from alerts.slack_channel import SlackChannel
from alerts.webhook_channel import WebhookChannel
from monitor.config import AlertConfig, LogAlertConfig, SlackAlertConfig, WebhookAlertConfig

CHANNELS: dict[type, type[AlertChannel]] = {
    LogAlertConfig: LogChannel,
    SlackAlertConfig: SlackChannel,
    WebhookAlertConfig: WebhookChannel,
}


def make_channel(config: AlertConfig) -> AlertChannel:
    cls = CHANNELS.get(type(config))
    if cls is None:
        raise ValueError(f"unknown alert type {type(config).__name__}; valid: log, slack, webhook")
    return cls(config)  # type: ignore[call-arg]
