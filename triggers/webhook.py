"""Retraining (or any) webhook: a signed JSON request, with an optional body template.

The body is the decision JSON, or a ``body_template`` from the config: a JSON
document with ``{{placeholder}}`` slots (see :class:`BodyTemplate`), so a
receiver's own format (an Airflow DAG run, a GitHub ``repository_dispatch``)
is configuration, not code. Whatever the body, the signature covers exactly
the bytes sent. :class:`SignedSender` is the HTTP and signing half, shared
with the webhook alert channel (``alerts.webhook_channel``).
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from monitor.config import WebhookActionConfig, WebhookAlertConfig
from monitor.secrets import Secret
from triggers.base import Action, DeliveryError, DeliveryResult
from triggers.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

# 4xx answers that mean "try again later" rather than "this request is wrong".
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})

# Headers driftd sets itself on every request (a configured header of the same
# name is overridden).
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        TIMESTAMP_HEADER.lower(),
        SIGNATURE_HEADER.lower(),
        IDEMPOTENCY_HEADER.lower(),
        "x-driftd-attempt",
    }
)

# Placeholders of an action's body template; an alert's also has ``text``.
ACTION_PLACEHOLDERS: tuple[str, ...] = (
    "model",
    "model_version",
    "rule",
    "decision_id",
    "severity",
    "event_time",
    "signals_json",
    "decision_json",
)
ALERT_PLACEHOLDERS: tuple[str, ...] = (*ACTION_PLACEHOLDERS, "text")

# A decision of the shape of ``monitor.pipeline.decision_payload``: templates
# are rendered with it when the config loads, so a template that would not
# give JSON is a config error rather than a dead delivery.
SAMPLE_DECISION: dict[str, Any] = {
    "decision_id": "0123456789abcdef0123456789abcdef",
    "idempotency_key": "0123456789abcdef0123456789abcdef",
    "outcome": "fired",
    "resolves": None,
    "rule": 'retrain "on" drift',
    "model": "credit-risk",
    "model_version": "v1\n2",
    "severity": "warning",
    "event_time": 1767249600.0,
    "signals": [
        {
            "target": "score",
            "detector": "adwin",
            "statistic": "mean",
            "value": 0.61,
            "position": 12000,
            "event_time": 1767249600.0,
        }
    ],
    "actions": ["retrain"],
    "alerts": ["log"],
}

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_HEADER_VALUE = re.compile(r"[\r\n\x00]")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def encode_json(value: Any) -> bytes:
    """The canonical JSON of a body: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None``: strict JSON has neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def template_values(decision: Mapping[str, Any], text: str | None = None) -> dict[str, Any]:
    """The placeholder values of one decision (``text``: the alert summary)."""
    values: dict[str, Any] = {
        "model": decision.get("model"),
        "model_version": decision.get("model_version"),
        "rule": decision.get("rule"),
        "decision_id": decision.get("decision_id"),
        "severity": decision.get("severity"),
        "event_time": decision.get("event_time"),
        "signals_json": decision.get("signals", []),
        "decision_json": dict(decision),
    }
    if text is not None:
        values["text"] = text
    return values


class TemplateError(ValueError):
    """A body template is unusable; the message names the problem."""


class BodyTemplate:
    """A JSON document with ``{{name}}`` placeholders, rendered safely.

    Each value is JSON-encoded into the document, so no value can break it:
    a bare placeholder becomes a JSON value (``{{model}}`` gives
    ``"credit-risk"``, ``{{event_time}}`` a number, ``{{signals_json}}`` a
    list, ``{{decision_json}}`` an object); inside a JSON string it becomes
    escaped text (``"drift on {{model}}"``; an object or list as its JSON
    text). Unknown placeholders, and a template that does not render to JSON,
    raise :class:`TemplateError` when the template is built.

    >>> t = BodyTemplate('{"conf": {"model": {{model}}, "note": "v={{model_version}}"}}')
    >>> t.render({"model": 'a "b"', "model_version": "1\\n2"}).decode()
    '{"conf": {"model": "a \\\\"b\\\\"", "note": "v=1\\\\n2"}}'
    >>> BodyTemplate('{"m": {{modle}}}')
    Traceback (most recent call last):
    ...
    triggers.webhook.TemplateError: unknown placeholder {{modle}}; valid: {{decision_id}}, {{decision_json}}, {{event_time}}, {{model}}, {{model_version}}, {{rule}}, {{severity}}, {{signals_json}}
    """

    def __init__(self, source: str, allowed: Collection[str] = ACTION_PLACEHOLDERS) -> None:
        self.source = source
        # Literal text, and (name, inside a JSON string) for each placeholder.
        self._parts: list[str | tuple[str, bool]] = list(_scan(source))
        names = [p[0] for p in self._parts if isinstance(p, tuple)]
        unknown = sorted({n for n in names if n not in allowed})
        if unknown:
            raise TemplateError(
                f"unknown placeholder{'s' if len(unknown) > 1 else ''} "
                + ", ".join(f"{{{{{n}}}}}" for n in unknown)
                + "; valid: "
                + ", ".join(f"{{{{{n}}}}}" for n in sorted(allowed))
            )
        self.placeholders = frozenset(names)
        rendered = self.render(template_values(SAMPLE_DECISION, text="[WARNING] drift")).decode()
        try:
            json.loads(rendered)
        except json.JSONDecodeError as exc:
            near = rendered[max(0, exc.pos - 30) : exc.pos + 10]
            raise TemplateError(
                f"does not render to JSON (with a sample decision): {exc.msg} near {near!r}"
            ) from None

    def render(self, values: Mapping[str, Any]) -> bytes:
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, in_string = part
            value = _finite(values.get(name))
            if in_string:
                text = value if isinstance(value, str) else _dumps(value)
                out.append(_dumps(text)[1:-1])
            else:
                out.append(_dumps(value))
        return "".join(out).encode()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _scan(source: str) -> Iterable[str | tuple[str, bool]]:
    """Split a template into literal text and placeholders, tracking whether
    each placeholder sits inside a JSON string (after an odd number of
    unescaped double quotes)."""
    in_string = False
    start = i = 0
    while i < len(source):
        c = source[i]
        if in_string and c == "\\":
            i += 2
            continue
        if c == '"':
            in_string = not in_string
        elif c == "{":
            match = _PLACEHOLDER.match(source, i)
            if match is not None:
                yield source[start:i]
                yield (match.group(1), in_string)
                start = i = match.end()
                continue
        i += 1
    yield source[start:]


def check_request_fields(
    *,
    url: str,
    headers: Mapping[str, str],
    secret_headers: Mapping[str, Secret],
    body_template: str | None,
    allowed: Collection[str],
    content_type: str = "application/json",
) -> None:
    """Config-time checks of a webhook target's headers and body template
    (called from the config structs; raises ``ValueError`` naming the key)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url must start with http:// or https://, got {url!r}")
    if not content_type.strip() or _BAD_HEADER_VALUE.search(content_type):
        raise ValueError(f"content_type: not a header value: {content_type!r}")
    for section, names in (("headers", headers), ("secret_headers", secret_headers)):
        for name in names:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{section}.{name}: not a valid HTTP header name")
    for name, value in headers.items():
        if _BAD_HEADER_VALUE.search(value):
            raise ValueError(f"headers.{name}: a header value is one line")
    for name, secret in secret_headers.items():
        if _BAD_HEADER_VALUE.search(secret.reveal()):  # the value itself is never shown
            raise ValueError(
                f"secret_headers.{name}: the value of ${{{secret.env}}} is not one line"
            )
    plain = {h.lower() for h in headers}
    for name in secret_headers:
        if name.lower() in plain:
            raise ValueError(f"secret_headers.{name}: also set in headers; set it in one of them")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"secret_headers.{name}: driftd sets this header itself")
    if body_template is not None:
        try:
            BodyTemplate(body_template, allowed)
        except TemplateError as exc:
            raise ValueError(f"body_template: {exc}") from None


class SignedSender:
    """One signed HTTP request per delivery attempt (the webhook action's and
    the webhook alert channel's transport).

    Headers: the configured ones, then the secret ones, then driftd's own
    (content type, timestamp, signature, idempotency key, attempt). 2xx is
    delivered. 5xx, 408/409/425/429, timeouts and connection errors are
    retryable (``Retry-After`` honoured by the dispatcher); other 4xx answers
    are final. Blocks up to ``timeout`` seconds. Header values are never
    logged nor put into errors.
    """

    def __init__(
        self,
        url: str,
        signing_key: Secret,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        secret_headers: Mapping[str, Secret] | None = None,
        method: str = "POST",
        content_type: str = "application/json",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.method = method
        self._key = signing_key.reveal().encode()
        self._timeout = timeout
        self._content_type = content_type
        self._headers = {
            **(headers or {}),
            **{k: v.reveal() for k, v in (secret_headers or {}).items()},
        }
        self._clock = clock

    def send(self, body: bytes, idempotency_key: str, attempt: int) -> DeliveryResult:
        ts = int(self._clock())
        headers = {
            **self._headers,
            "Content-Type": self._content_type,
            "User-Agent": "driftd",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._key, ts, body),
            IDEMPOTENCY_HEADER: idempotency_key,
            "X-Driftd-Attempt": str(attempt),
        }
        request = urllib.request.Request(self.url, data=body, headers=headers, method=self.method)
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


def signed_target(
    config: WebhookActionConfig | WebhookAlertConfig,
    allowed: Collection[str],
    clock: Callable[[], float],
    **request: Any,
) -> tuple[BodyTemplate | None, SignedSender]:
    """The body template (None: the default body) and the signed sender of a
    webhook action or alert channel; ``request`` adds ``method``/``content_type``."""
    template = (
        BodyTemplate(config.body_template, allowed) if config.body_template is not None else None
    )
    sender = SignedSender(
        config.url,
        config.signing_key,
        timeout=config.timeout_seconds,
        headers=config.headers,
        secret_headers=config.secret_headers,
        clock=clock,
        **request,
    )
    return template, sender


class Webhook(Action):
    """Sends the decision (or its rendered ``body_template``) as JSON, with
    ``method`` (POST or PUT), signed with HMAC-SHA256 (see ``triggers.signing``);
    delivery semantics as in :class:`SignedSender`.
    """

    def __init__(self, config: WebhookActionConfig, clock: Callable[[], float] = time.time) -> None:
        self._take_policy(config)
        self.url = config.url
        self._template, self._sender = signed_target(
            config,
            ACTION_PLACEHOLDERS,
            clock,
            method=config.method,
            content_type=config.content_type,
        )

    def body(self, decision: Mapping[str, Any]) -> bytes:
        if self._template is None:
            return encode_json(decision)
        return self._template.render(template_values(decision))

    def deliver(
        self, decision: Mapping[str, Any], idempotency_key: str, attempt: int
    ) -> DeliveryResult:
        return self._sender.send(self.body(decision), idempotency_key, attempt)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
