"""``config.toml``: parsed once into a frozen, validated object tree.

Every problem is reported as a :class:`ConfigError` naming the key path
(``models[0].detectors[1].params.delta``) and the reason; unknown keys come
with a "did you mean" hint. Secrets are ``"${ENV}"`` references resolved here
into :class:`~monitor.secrets.Secret`, masked wherever the tree is printed.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from monitor.secrets import Secret, SecretError, resolve_secret

SCHEMA = "driftd.config/1"

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class ConfigError(ValueError):
    """The configuration is invalid; ``str()`` names the key path and the reason."""


class _Node(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class StorageConfig(_Node, frozen=True):
    # SQLAlchemy URL. A relative SQLite path is relative to the working directory.
    url: str = "sqlite:///driftd.db"
    # Database password, injected into ``url`` at connect time (never in the file).
    password: Secret | None = None


class HttpConfig(_Node, frozen=True):
    bind: str = "127.0.0.1:9108"
    api_token: Secret | None = None

    def __post_init__(self) -> None:
        host, _, port = self.bind.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"http.bind must be HOST:PORT, got {self.bind!r}")

    @property
    def host(self) -> str:
        return self.bind.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.bind.rpartition(":")[2])


class LoggingConfig(_Node, frozen=True):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    # One log line per distinct bad-input reason per this many seconds.
    invalid_log_interval_seconds: NonNegative = 60.0


class RuntimeConfig(_Node, frozen=True):
    batch_size: PositiveInt = 2000
    poll_timeout_seconds: Positive = 0.5
    checkpoint_interval_seconds: Positive = 5.0
    # When a finite source ends: how long to wait for pending deliveries.
    drain_timeout_seconds: NonNegative = 30.0
    # Per-model cap on model versions with live detector state (LRU beyond it).
    max_versions_per_model: PositiveInt = 8


class JoinConfig(_Node, frozen=True):
    # Event time a prediction (or an early outcome) waits for its partner.
    ttl_seconds: Positive = 86400.0
    max_size: PositiveInt = 200_000


class FileSourceConfig(_Node, tag="file", tag_field="type", frozen=True):
    name: Name
    predictions: str | None = None
    outcomes: str | None = None
    format: Literal["auto", "jsonl", "csv", "parquet"] = "auto"
    # 0 replays as fast as possible; 1.0 in event time; 60 is a minute per second.
    speed: NonNegative = 0.0

    def __post_init__(self) -> None:
        if self.predictions is None and self.outcomes is None:
            raise ValueError("a file source needs `predictions`, `outcomes` or both")


class KafkaSourceConfig(_Node, tag="kafka", tag_field="type", frozen=True):
    """A consumer group over a predictions and an outcomes topic, co-partitioned
    by prediction_id (same partition count, key = prediction_id)."""

    name: Name
    bootstrap_servers: str
    predictions_topic: str
    outcomes_topic: str
    # "kafka-python" (default) or "confluent" (pip install 'driftd[confluent]').
    client: Literal["kafka-python", "confluent"] = "kafka-python"
    group_id: str = "driftd"
    client_id: str = "driftd"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    fetch_min_bytes: PositiveInt = 1
    fetch_max_bytes: PositiveInt = 52_428_800
    max_partition_fetch_bytes: PositiveInt = 1_048_576
    fetch_max_wait_ms: Annotated[int, msgspec.Meta(ge=0)] = 500
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: PositiveInt = 45_000
    heartbeat_interval_ms: PositiveInt = 3_000
    max_poll_interval_ms: PositiveInt = 300_000
    # Records handed out but not yet checkpointed; beyond it partitions pause.
    max_in_flight_records: PositiveInt = 1_000_000
    # Also send rejected records here, raw, with the reason in a header.
    dead_letter_topic: str | None = None

    def __post_init__(self) -> None:
        if self.predictions_topic == self.outcomes_topic:
            raise ValueError("predictions_topic and outcomes_topic must differ")
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"{self.security_protocol} needs sasl_mechanism, sasl_username, sasl_password"
            )
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of session_timeout_ms")


SourceConfig = FileSourceConfig | KafkaSourceConfig

FEATURE_TYPES = ("numeric", "categorical")
TARGET_GROUPS = ("numeric_features", "categorical_features", "score", "error")


class DetectorSpec(_Node, frozen=True):
    # Registry name, for example "adwin"; see ``detectors.registry``.
    type: str
    # "feature:NAME", "numeric_features", "categorical_features", "score" or "error".
    on: list[str]
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class ReferenceConfig(_Node, frozen=True):
    """Where a model's reference comes from: one of a file of prediction events
    (JSONL, CSV, Parquet; with an optional outcomes file for a performance
    baseline), a SQL query, or the stream itself (the first N predictions)."""

    path: str | None = None
    outcomes: str | None = None
    format: Literal["auto", "jsonl", "csv", "parquet"] = "auto"
    # SQLAlchemy URL and a query returning one row per prediction, with the
    # model's feature names (or features.NAME) as columns, and score/label.
    url: str | None = None
    query: str | None = None
    password: Secret | None = None
    # Captured from the stream: the first N predictions of the model ...
    capture_first: PositiveInt | None = None
    # ... or those in a named range of event time (epoch seconds).
    capture_from: float | None = None
    capture_until: float | None = None
    # With capture_first: each model version gets its own reference, the first
    # window holding only that version and at least capture_first predictions.
    per_version: bool = False

    @property
    def captured(self) -> bool:
        return self.capture_first is not None or self.capture_until is not None

    def __post_init__(self) -> None:
        if (self.capture_from is None) != (self.capture_until is None):
            raise ValueError("capture_from and capture_until go together")
        given = [self.path is not None, self.query is not None, self.captured]
        if sum(given) != 1:
            raise ValueError(
                "set exactly one of path, query (with url), capture_first or capture_from/capture_until"
            )
        if self.capture_from is not None and self.capture_until is not None:
            if self.capture_from >= self.capture_until:
                raise ValueError("capture_from must be before capture_until")
            if self.capture_first is not None:
                raise ValueError("use capture_first or a capture range, not both")
        if (self.query is None) != (self.url is None):
            raise ValueError("query and url go together")
        if self.per_version and self.capture_first is None:
            raise ValueError(
                "per_version goes with capture_first (a file or query reference of one "
                "version goes in [models.batch.version_references.VERSION])"
            )


class BatchConfig(_Node, frozen=True):
    """Batch checks of one model: windows vs a reference, on a schedule."""

    reference: ReferenceConfig
    # A reference of its own for some model versions (a file or a query); a
    # window holding only such a version is judged against it.
    version_references: dict[str, ReferenceConfig] = msgspec.field(default_factory=dict)

    # Run every this many seconds (APScheduler interval trigger) ...
    interval_seconds: Positive = 300.0
    # ... or on a cron expression ("*/5 * * * *"), which wins when set.
    cron: str | None = None
    # What a check judges (per shard: a file replay has one, Kafka one per partition):
    # tumbling, no length: every prediction since the last scheduled run;
    # tumbling + window_rows: consecutive windows of exactly that many predictions,
    #   judged by the run loop as each one fills (the schedule is not used);
    # tumbling + window_seconds: event-time buckets aligned to multiples of it,
    #   judged when the first later event arrives (the schedule is not used);
    # sliding + window_rows / window_seconds: the last that many predictions / the
    #   predictions of the last that many seconds of event time, on the schedule;
    # sliding, no length: the last window_max_rows predictions, on the schedule.
    window: Literal["tumbling", "sliding"] = "tumbling"
    window_rows: PositiveInt | None = None
    window_seconds: Positive | None = None
    # Rows kept per shard per window (a uniform sample beyond it; a sliding
    # window keeps at most this many of its newest rows).
    window_max_rows: PositiveInt = 20_000
    # A window with fewer predictions is not judged.
    min_rows: PositiveInt = 200
    # Per-feature test overrides by registry name ({ income = "ks" });
    # other columns get the size-aware default (see detectors.batch.defaults).
    tests: dict[str, str] = msgspec.field(default_factory=dict)
    # Slice every check by this categorical feature's values (top N, rest "__other__").
    segment_by: str | None = None
    max_segments: PositiveInt = 20
    # Classification: the class whose precision/recall/F1 are tracked.
    positive_class: str | None = None
    # Where Evidently HTML reports of failing checks go (none: no reports).
    report_dir: str | None = None
    report_max_count: PositiveInt = 50
    report_max_age_seconds: Positive = 7 * 86400.0
    # The whole confidence interval must be this much worse than the baseline.
    performance_margin: NonNegative = 0.02

    def __post_init__(self) -> None:
        if self.window_rows is not None and self.window_seconds is not None:
            raise ValueError("set window_rows or window_seconds, not both")
        if self.window_rows is not None and self.window_rows < self.min_rows:
            raise ValueError(
                f"window_rows ({self.window_rows}) is below min_rows ({self.min_rows}): "
                "no window would ever be judged"
            )
        if self.window == "sliding" and (self.window_rows or 0) > self.window_max_rows:
            raise ValueError(
                f"a sliding window keeps its rows: window_rows ({self.window_rows}) cannot "
                f"exceed window_max_rows ({self.window_max_rows})"
            )
        for version, vref in self.version_references.items():
            if vref.captured:
                raise ValueError(
                    f"version_references.{version}: a version's own reference is a path "
                    "or a query (use reference.per_version to capture one per version)"
                )
        if self.closed_by_events:
            ref = self.reference
            if ref.capture_until is not None:
                raise ValueError(
                    "a capture_from/capture_until reference needs a scheduled window "
                    "(no window_rows or window_seconds with a tumbling window)"
                )
            if self.window_rows is not None and (ref.capture_first or 0) > self.window_rows:
                raise ValueError(
                    f"reference.capture_first ({ref.capture_first}) cannot exceed "
                    f"window_rows ({self.window_rows}): the reference is the first window"
                )

    @property
    def closed_by_events(self) -> bool:
        """Windows close as events arrive (count or event-time buckets), not on
        the schedule."""
        return self.window == "tumbling" and (
            self.window_rows is not None or self.window_seconds is not None
        )


class VersionsConfig(_Node, frozen=True):
    """What driftd does when the retraining pipeline reports a new model version
    (``POST /api/v1/models/{model}/versions``)."""

    # "adopt_reference": the new version becomes active and its first
    # ``adopt_first`` predictions become the model's reference (needs
    # [models.batch]); "candidate": it is watched next to the previous one and
    # rolled back when it does worse.
    on_new_version: Literal["adopt_reference", "candidate"] = "candidate"
    adopt_first: PositiveInt = 5000
    # A candidate is compared with the previous version once it has this many
    # joined outcomes (one-sided test: z on error rates, Welch t on |errors|).
    min_outcomes: PositiveInt = 500
    # Rolled back when its error is worse by more than this, with p < alpha.
    rollback_margin: NonNegative = 0.0
    rollback_alpha: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.05
    # Actions (webhook or command) run by a rollback decision.
    rollback_actions: list[str] = msgspec.field(default_factory=list)
    # Group-sequential looks: look k when both versions have min_outcomes * 2**k
    # joined outcomes, at rollback_alpha / 2**(k+1); a candidate that passed
    # this many looks becomes active and the previous version is retired.
    promote_after_looks: PositiveInt = 3


class ModelConfig(_Node, frozen=True):
    name: Name
    task: Literal["classification", "regression"]
    features: dict[str, Literal["numeric", "categorical"]]
    # Which value is watched as the score: "score" or "probabilities.<class>".
    score_field: str = "score"
    detectors: list[DetectorSpec] = msgspec.field(default_factory=list)
    batch: BatchConfig | None = None
    versions: VersionsConfig | None = None
    # Once an action-running decision (of any rule) fired for this model, another
    # one within this much event time (either side) is stored as "suppressed".
    action_cooldown_seconds: NonNegative = 0.0
    # At most this many retrains in flight: fired, action-running decisions not
    # resolved, not completed (a version reported with their decision_id), not
    # dead in every action, and younger than retrain_timeout_seconds (wall time).
    max_concurrent_retrains: PositiveInt | None = None
    retrain_timeout_seconds: Positive = 86400.0

    def __post_init__(self) -> None:
        if (
            self.versions is not None
            and self.versions.on_new_version == "adopt_reference"
            and self.batch is None
        ):
            raise ValueError('versions.on_new_version = "adopt_reference" needs [models.batch]')
        if (
            self.versions is not None
            and self.batch is not None
            and self.versions.on_new_version == "adopt_reference"
            and self.versions.adopt_first > self.batch.window_max_rows
        ):
            raise ValueError("versions.adopt_first cannot exceed batch.window_max_rows")
        if (
            self.versions is not None
            and self.batch is not None
            and self.versions.on_new_version == "adopt_reference"
            and self.batch.closed_by_events
            and self.versions.adopt_first > (self.batch.window_rows or self.versions.adopt_first)
        ):
            raise ValueError(
                "versions.adopt_first cannot exceed batch.window_rows: the new reference "
                "is taken from one window"
            )
        if not self.features:
            raise ValueError(f"model {self.name!r} declares no features")
        if self.score_field != "score" and not self.score_field.startswith("probabilities."):
            raise ValueError('score_field must be "score" or "probabilities.<class>"')

    def numeric_features(self) -> list[str]:
        return [f for f, t in self.features.items() if t == "numeric"]

    def categorical_features(self) -> list[str]:
        return [f for f, t in self.features.items() if t == "categorical"]


class ConditionConfig(_Node, frozen=True):
    """At least ``min_signals`` matching signals within ``window_seconds`` of
    event time; or, with ``of_last_checks`` M, failures in at least
    ``min_signals`` of the model's last M batch checks (persistence).
    ``detectors`` entries ending in ``*`` are prefixes ("drift:*")."""

    detectors: list[str] = msgspec.field(default_factory=list)
    targets: list[str] = msgspec.field(default_factory=list)
    min_signals: PositiveInt = 1
    window_seconds: Positive = 3600.0
    of_last_checks: PositiveInt | None = None

    def __post_init__(self) -> None:
        if self.of_last_checks is not None and self.min_signals > self.of_last_checks:
            raise ValueError("min_signals cannot exceed of_last_checks")


class RuleConfig(_Node, frozen=True):
    """A rule fires when its condition holds: the top-level fields form one
    condition, or ``any``/``all`` combine several."""

    name: Name
    # A model name or "*" for every model.
    model: str = "*"
    # Only signals of these detector types / targets count (empty: all).
    detectors: list[str] = msgspec.field(default_factory=list)
    targets: list[str] = msgspec.field(default_factory=list)
    min_signals: PositiveInt = 1
    window_seconds: Positive = 3600.0
    cooldown_seconds: NonNegative = 3600.0
    severity: Literal["warning", "critical"] = "warning"
    actions: list[str] = msgspec.field(default_factory=list)
    alerts: list[str] = msgspec.field(default_factory=list)
    any: list[ConditionConfig] = msgspec.field(default_factory=list)
    all: list[ConditionConfig] = msgspec.field(default_factory=list)
    # Minimum sample size: signals count only once the model version has seen
    # this many events (or a batch window holds this many predictions).
    min_events: Annotated[int, msgspec.Meta(ge=0)] = 0
    # Hysteresis: once fired, the rule stays active (firing nothing more) and
    # resolves when no matching signal came for this long (event time).
    resolve_after_seconds: Positive | None = None
    # At most this many fired, unresolved decisions of this rule per model.
    max_concurrent: PositiveInt | None = None

    def __post_init__(self) -> None:
        if self.any and self.all:
            raise ValueError("use any or all, not both")

    def conditions(self) -> list[ConditionConfig]:
        return list(self.any or self.all) or [
            ConditionConfig(
                detectors=self.detectors,
                targets=self.targets,
                min_signals=self.min_signals,
                window_seconds=self.window_seconds,
            )
        ]


class _Delivery(_Node, kw_only=True, frozen=True):
    max_attempts: PositiveInt = 5
    backoff_seconds: Positive = 1.0
    backoff_max_seconds: Positive = 300.0
    timeout_seconds: Positive = 10.0


class WebhookActionConfig(_Delivery, tag="webhook", tag_field="type", kw_only=True, frozen=True):
    name: Name
    url: str
    signing_key: Secret
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    # Headers holding tokens, each "${ENV}": never logged, masked in check-config.
    secret_headers: dict[str, Secret] = msgspec.field(default_factory=dict)
    method: Literal["POST", "PUT"] = "POST"
    content_type: str = "application/json"
    # A JSON document with {{model}}, {{model_version}}, {{rule}}, {{decision_id}},
    # {{severity}}, {{event_time}}, {{signals_json}}, {{decision_json}}, each
    # JSON-encoded where it stands (see triggers.webhook.BodyTemplate). None: the
    # decision JSON.
    body_template: str | None = None

    def __post_init__(self) -> None:
        from triggers.webhook import ACTION_PLACEHOLDERS, check_request_fields

        check_request_fields(
            url=self.url,
            headers=self.headers,
            secret_headers=self.secret_headers,
            body_template=self.body_template,
            allowed=ACTION_PLACEHOLDERS,
            content_type=self.content_type,
        )


class CommandActionConfig(_Delivery, tag="command", tag_field="type", kw_only=True, frozen=True):
    """Runs ``argv`` directly (never through a shell); the decision JSON on stdin."""

    name: Name
    argv: list[str]

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("argv must name a program")


ActionConfig = WebhookActionConfig | CommandActionConfig


class LogAlertConfig(_Delivery, tag="log", tag_field="type", kw_only=True, frozen=True):
    name: Name


class SlackAlertConfig(_Delivery, tag="slack", tag_field="type", kw_only=True, frozen=True):
    name: Name
    # Either an incoming-webhook URL or a bot token (+ channel) for chat.postMessage.
    webhook_url: Secret | None = None
    token: Secret | None = None
    channel: str | None = None
    # Slack Web API base, for Slack-compatible endpoints and local receivers.
    base_url: str = "https://slack.com/api/"

    def __post_init__(self) -> None:
        if (self.webhook_url is None) == (self.token is None):
            raise ValueError("set exactly one of webhook_url or token")
        if self.token is not None and not self.channel:
            raise ValueError("token needs a channel")


class WebhookAlertConfig(_Delivery, tag="webhook", tag_field="type", kw_only=True, frozen=True):
    """POSTs {"text": summary, "decision": decision}, signed like the webhook action."""

    name: Name
    url: str
    signing_key: Secret
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    secret_headers: dict[str, Secret] = msgspec.field(default_factory=dict)
    # As for the webhook action, plus {{text}} (the readable summary).
    body_template: str | None = None

    def __post_init__(self) -> None:
        from triggers.webhook import ALERT_PLACEHOLDERS, check_request_fields

        check_request_fields(
            url=self.url,
            headers=self.headers,
            secret_headers=self.secret_headers,
            body_template=self.body_template,
            allowed=ALERT_PLACEHOLDERS,
        )


AlertConfig = LogAlertConfig | SlackAlertConfig | WebhookAlertConfig


class DriftdConfig(_Node, frozen=True):
    schema: Literal["driftd.config/1"] = "driftd.config/1"
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    runtime: RuntimeConfig = msgspec.field(default_factory=RuntimeConfig)
    join: JoinConfig = msgspec.field(default_factory=JoinConfig)
    sources: list[SourceConfig] = msgspec.field(default_factory=list)
    models: list[ModelConfig] = msgspec.field(default_factory=list)
    rules: list[RuleConfig] = msgspec.field(default_factory=list)
    actions: list[ActionConfig] = msgspec.field(default_factory=list)
    alerts: list[AlertConfig] = msgspec.field(default_factory=list)

    def model(self, name: str) -> ModelConfig | None:
        for m in self.models:
            if m.name == name:
                return m
        return None


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> DriftdConfig:
    """Read and validate ``path``; raise :class:`ConfigError` on any problem."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return parse_config(raw, environ)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def parse_config(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> DriftdConfig:
    def dec_hook(typ: type, obj: object) -> object:
        if typ is Secret:
            try:
                return resolve_secret(obj, environ)
            except SecretError as exc:
                raise ValueError(str(exc)) from None
        raise NotImplementedError(typ)

    try:
        cfg = msgspec.convert(dict(raw), DriftdConfig, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), raw)) from None
    _check_references(cfg)
    return cfg


_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _explain(message: str, raw: Mapping[str, Any]) -> str:
    """Rewrite msgspec's "reason - at `$.a[0].b`" as "a[0].b: reason", with hints."""
    msg, sep, at = message.partition(" - at `$")
    path = at.rstrip("`").lstrip(".") if sep else ""
    unknown = _UNKNOWN.match(msg)
    if unknown is not None:
        key = unknown.group("key")
        valid = _fields_at(path, raw)
        text = f"{path}.{key}: unknown key" if path else f"{key}: unknown key"
        hint = difflib.get_close_matches(key, valid, n=1)
        if hint:
            text += f" (did you mean {hint[0]!r}?)"
        if valid:
            text += f"; valid keys: {', '.join(sorted(valid))}"
        return text
    tags = _tags_at(path) if path.endswith(".type") or msg.startswith("Invalid value") else []
    if tags:
        msg += f"; valid types: {', '.join(tags)}"
    return f"{path or '<root>'}: {msg}"


def _fields_at(path: str, raw: Mapping[str, Any]) -> list[str]:
    """The keys valid at ``path``: follow the raw data and the types in step."""
    typ: Any = DriftdConfig
    node: Any = raw
    for key, index in _TOKEN.findall(path):
        if index:
            typ = typing.get_args(typ)[0] if typing.get_args(typ) else None
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
        else:
            hints = typing.get_type_hints(typ) if _is_struct(typ) else {}
            typ = hints.get(key)
            node = node.get(key) if isinstance(node, Mapping) else None
        typ = _select(typ, node)
    if not _is_struct(typ):
        return []
    fields = list(typ.__struct_fields__)
    tag_field = typ.__struct_config__.tag_field
    return [*fields, tag_field] if tag_field else fields


def _is_struct(typ: Any) -> bool:
    return isinstance(typ, type) and issubclass(typ, msgspec.Struct)


def _select(typ: Any, node: Any) -> Any:
    """The member of a union that the raw mapping's ``type`` tag selects."""
    if typing.get_origin(typ) is Annotated:
        typ = typing.get_args(typ)[0]
    if typing.get_origin(typ) in (list, dict) or _is_struct(typ):
        return typ
    members = [a for a in typing.get_args(typ) if _is_struct(a)]
    tag = node.get("type") if isinstance(node, Mapping) else None
    for member in members:
        if member.__struct_config__.tag == tag:
            return member
    return members[0] if len(members) == 1 else typ


def _tags_at(path: str) -> list[str]:
    section = _TOKEN.findall(path)[0][0] if path else ""
    union = {"sources": SourceConfig, "actions": ActionConfig, "alerts": AlertConfig}.get(section)
    if union is None:
        return []
    members = typing.get_args(union) or (union,)
    return [str(m.__struct_config__.tag) for m in members]


def _check_references(cfg: DriftdConfig) -> None:
    """Cross-field checks that one section alone cannot make."""
    from detectors.registry import DETECTORS, make_detector

    for section in ("sources", "models", "rules", "actions", "alerts"):
        seen: set[str] = set()
        for i, item in enumerate(getattr(cfg, section)):
            if item.name in seen:
                raise ConfigError(f"{section}[{i}].name: duplicate name {item.name!r}")
            seen.add(item.name)
    for mi, model in enumerate(cfg.models):
        for di, spec in enumerate(model.detectors):
            where = f"models[{mi}].detectors[{di}]"
            if spec.type not in DETECTORS:
                raise ConfigError(
                    f"{where}.type: unknown detector {spec.type!r}; "
                    f"valid: {', '.join(sorted(DETECTORS))}"
                )
            cls = DETECTORS[spec.type]
            if not spec.on:
                raise ConfigError(f"{where}.on: name at least one target")
            for ti, target in enumerate(spec.on):
                kind = target_kind(model, target)
                if kind is None:
                    raise ConfigError(
                        f"{where}.on[{ti}]: unknown target {target!r}; use "
                        + ", ".join(f"feature:{f}" for f in model.features)
                        + ", "
                        + ", ".join(TARGET_GROUPS)
                    )
                if kind not in cls.accepts(model.task):
                    raise ConfigError(
                        f"{where}.on[{ti}]: detector {spec.type!r} does not take "
                        f"{kind} input (takes {', '.join(cls.accepts(model.task)) or 'nothing'} "
                        f"for a {model.task} model)"
                    )
            try:
                make_detector(spec.type, spec.params)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}.params: {exc}") from None
        if model.batch is not None:
            _check_batch(model, f"models[{mi}].batch")
    models = {m.name for m in cfg.models}
    actions = {a.name for a in cfg.actions}
    for mi, model in enumerate(cfg.models):
        for i, n in enumerate(model.versions.rollback_actions if model.versions else []):
            if n not in actions:
                raise ConfigError(
                    f"models[{mi}].versions.rollback_actions[{i}]: unknown action {n!r}; "
                    f"defined: {', '.join(sorted(actions)) or 'none'}"
                )
    alerts = {a.name for a in cfg.alerts}
    for ri, rule in enumerate(cfg.rules):
        where = f"rules[{ri}]"
        if rule.model != "*" and rule.model not in models:
            raise ConfigError(f"{where}.model: unknown model {rule.model!r}")
        for key, names, known in (
            ("actions", rule.actions, actions),
            ("alerts", rule.alerts, alerts),
        ):
            for i, n in enumerate(names):
                if n not in known:
                    raise ConfigError(
                        f"{where}.{key}[{i}]: unknown {key[:-1]} {n!r}; "
                        f"defined: {', '.join(sorted(known)) or 'none'}"
                    )
        for i, d in enumerate(rule.detectors):
            if d not in DETECTORS:
                raise ConfigError(f"{where}.detectors[{i}]: unknown detector {d!r}")


def _check_batch(model: ModelConfig, where: str) -> None:
    from detectors.batch import TESTS

    batch = model.batch
    assert batch is not None
    for column, test in batch.tests.items():
        if column not in model.features and column != "score":
            raise ConfigError(
                f"{where}.tests.{column}: not a feature of {model.name!r} (nor score)"
            )
        if test not in TESTS:
            raise ConfigError(
                f"{where}.tests.{column}: unknown test {test!r}; valid: {', '.join(sorted(TESTS))}"
            )
    if batch.segment_by is not None and model.features.get(batch.segment_by) != "categorical":
        raise ConfigError(f"{where}.segment_by: {batch.segment_by!r} is not a categorical feature")


def target_kind(model: ModelConfig, target: str) -> str | None:
    """The input kind of a detector target, or None if the target is unknown.

    Kinds: "numeric", "categorical", "score", "error".
    """
    if target.startswith("feature:"):
        return model.features.get(target[len("feature:") :])
    return {
        "numeric_features": "numeric",
        "categorical_features": "categorical",
        "score": "numeric",
        "error": "error",
    }.get(target)


def to_builtins(cfg: DriftdConfig) -> dict[str, Any]:
    """The normalized tree as plain data, secrets masked (for ``check-config``)."""

    def enc_hook(obj: object) -> object:
        if isinstance(obj, Secret):
            return f"${{{obj.env}}} (set, masked)"
        raise NotImplementedError(type(obj))

    out = msgspec.to_builtins(cfg, enc_hook=enc_hook)
    assert isinstance(out, dict)
    return out
