"""The alert-channel contract.

A channel tells people about a decision. Like actions, channels are called by
the outbox dispatcher (at-least-once, with retries), never on the event path;
``deliver`` may block up to the channel's timeout.
"""

from __future__ import annotations

from triggers.base import Deliverer, DeliveryError, DeliveryResult

__all__ = ["AlertChannel", "DeliveryError", "DeliveryResult"]


class AlertChannel(Deliverer):
    """Sends a readable message about a decision somewhere people look."""
