"""Every Prometheus metric driftd exports, in one place.

Metrics are created on the ``registry`` passed in (tests use a fresh one;
the daemon uses its own, never the global default). Names follow Prometheus
conventions: counters end in ``_total``, durations are ``_seconds``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.build_info = Info("driftd_build", "driftd version", registry=registry)
        self.events = Counter(
            "driftd_events_total",
            "Valid events processed, by model and stream (predictions/outcomes).",
            ["model", "stream"],
            registry=registry,
        )
        self.invalid = Counter(
            "driftd_events_invalid_total",
            "Records rejected by decoding or validation, by model (or 'unknown') and reason.",
            ["model", "stream", "reason"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "driftd_dead_letters_total",
            "Rejected records stored in the dead-letter table.",
            ["model", "stream"],
            registry=registry,
        )
        self.missing_values = Counter(
            "driftd_missing_values_total",
            "Feature values that were absent, null or NaN.",
            ["model"],
            registry=registry,
        )
        self.unexpected_features = Counter(
            "driftd_unexpected_features_total",
            "Features present in events but not declared for the model.",
            ["model"],
            registry=registry,
        )
        self.detector_updates = Counter(
            "driftd_detector_updates_total",
            "Values fed to streaming detectors.",
            ["model", "detector"],
            registry=registry,
        )
        self.signals = Counter(
            "driftd_drift_signals_total",
            "Drift detections, by model, version, target and detector.",
            ["model", "model_version", "target", "detector"],
            registry=registry,
        )
        self.decisions = Counter(
            "driftd_decisions_total",
            "Rule decisions, by rule, model and outcome (fired/suppressed).",
            ["rule", "model", "outcome"],
            registry=registry,
        )
        self.version_promotions = Counter(
            "driftd_version_promotions_total",
            "Candidate model versions promoted to active after passing their looks.",
            ["model"],
            registry=registry,
        )
        self.dead_letter_flush_failures = Counter(
            "driftd_dead_letter_flush_failures_total",
            "Checkpoints of a source skipped because its dead letters could not be "
            "delivered to its dead-letter topic (retried at the next checkpoint).",
            ["source"],
            registry=registry,
        )
        self.actions = Counter(
            "driftd_actions_total",
            "Action delivery attempts, by action and status (delivered/failed/dead).",
            ["action", "status"],
            registry=registry,
        )
        self.alerts = Counter(
            "driftd_alerts_total",
            "Alert delivery attempts, by channel and status (delivered/failed/dead).",
            ["channel", "status"],
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "driftd_outbox_pending",
            "Deliveries (actions and alerts) waiting to be sent.",
            registry=registry,
        )
        self.join_buffer = Gauge(
            "driftd_join_buffer_size",
            "Entries waiting in the outcome join buffer, by side.",
            ["side"],
            registry=registry,
        )
        self.join_events = Counter(
            "driftd_join_total",
            "Join results: matched, expired_predictions, orphan_outcomes, "
            "overflow_evictions, duplicate_outcomes.",
            ["result"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "driftd_batch_processing_seconds",
            "Wall time to process one polled batch (decode to stored signals).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.event_seconds = Histogram(
            "driftd_event_processing_seconds",
            "Mean per-event processing time within each batch.",
            buckets=(1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2),
            registry=registry,
        )
        self.checkpoint_seconds = Histogram(
            "driftd_checkpoint_seconds",
            "Wall time to write one checkpoint.",
            registry=registry,
        )
        self.last_checkpoint = Gauge(
            "driftd_last_checkpoint_timestamp_seconds",
            "Unix time of the last checkpoint.",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "driftd_consumer_lag",
            "Records behind the partition's high watermark, per source and partition.",
            ["source", "partition"],
            registry=registry,
        )
        self.batch_checks = Counter(
            "driftd_batch_checks_total",
            "Batch checks run, by model and status (ok/failed/skipped/captured/error).",
            ["model", "status"],
            registry=registry,
        )
        self.batch_check_seconds = Histogram(
            "driftd_batch_check_seconds",
            "Wall time of one batch check (all columns, quality, performance, segments).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=registry,
        )
        self.batch_drift_score = Gauge(
            "driftd_batch_drift_score",
            "Last batch drift statistic per model, feature, test and segment ('' = whole window).",
            ["model", "feature", "test", "segment"],
            registry=registry,
        )
        self.batch_drifted_share = Gauge(
            "driftd_batch_drifted_columns_share",
            "Share of columns judged drifted by the last batch check.",
            ["model", "segment"],
            registry=registry,
        )
        self.quality_value = Gauge(
            "driftd_quality_value",
            "Last data-quality measurement (a rate or share) per model, check and feature.",
            ["model", "check", "feature", "segment"],
            registry=registry,
        )
        self.performance = Gauge(
            "driftd_performance",
            "Last model performance per metric: realized (labels) or estimated (scores), "
            "with its confidence bounds, per segment ('' = whole window).",
            ["model", "metric", "kind", "bound", "segment"],
            registry=registry,
        )
        self.source_exhausted = Gauge(
            "driftd_source_exhausted",
            "1 once a finite source (a replay file) has been read to its end.",
            ["source"],
            registry=registry,
        )
