"""Rules and actions by their config type: explicit lists, no import magic."""

from __future__ import annotations

from monitor.config import ActionConfig, CommandActionConfig, RuleConfig, WebhookActionConfig
from triggers.base import Action, Rule
from triggers.command import Command
from triggers.condition_rule import ConditionRule
from triggers.webhook import Webhook

ACTIONS: dict[type, type[Action]] = {WebhookActionConfig: Webhook, CommandActionConfig: Command}


def make_rule(config: RuleConfig) -> Rule:
    return ConditionRule(config)


def make_action(config: ActionConfig) -> Action:
    cls = ACTIONS.get(type(config))
    if cls is None:
        raise ValueError(f"unknown action type {type(config).__name__}; valid: webhook, command")
    return cls(config)  # type: ignore[call-arg]
