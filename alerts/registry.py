"""Alert channels by their config type: an explicit list, no import magic."""

from __future__ import annotations

from alerts.base import AlertChannel
from alerts.log_channel import LogChannel
from alerts.slack_channel import SlackChannel
from monitor.config import AlertConfig, LogAlertConfig, SlackAlertConfig

CHANNELS: dict[type, type[AlertChannel]] = {
    LogAlertConfig: LogChannel,
    SlackAlertConfig: SlackChannel,
}


def make_channel(config: AlertConfig) -> AlertChannel:
    cls = CHANNELS.get(type(config))
    if cls is None:
        raise ValueError(f"unknown alert type {type(config).__name__}; valid: log, slack")
    return cls(config)  # type: ignore[call-arg]
