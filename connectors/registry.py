"""Sources by their config type: an explicit list, no import magic."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from connectors.base import Source
from connectors.file_replay import FileReplay
from monitor.config import FileSourceConfig, KafkaSourceConfig, SourceConfig

PositionsFor = Callable[[frozenset[int]], Mapping[str, int]]


def make_source(config: SourceConfig, positions_for: PositionsFor) -> Source:
    """Build the source ``config`` describes. ``positions_for`` gives stored
    positions for shards a source is assigned (Kafka rebalances)."""
    if isinstance(config, FileSourceConfig):
        return FileReplay(
            config.name, config.predictions, config.outcomes, config.format, config.speed
        )
    if isinstance(config, KafkaSourceConfig):
        return _kafka(config, positions_for)
    raise ValueError(f"unknown source type {type(config).__name__}; valid: file, kafka")


def _kafka(config: KafkaSourceConfig, positions_for: PositionsFor) -> Source:
    from connectors.kafka_source import Backpressure, DeadLetterProducer, KafkaSettings, KafkaSource

    settings = KafkaSettings(
        bootstrap_servers=config.bootstrap_servers,
        client=config.client,
        client_id=config.client_id,
        group_id=config.group_id,
        security_protocol=config.security_protocol,
        sasl_mechanism=config.sasl_mechanism,
        sasl_username=config.sasl_username,
        sasl_password=config.sasl_password.reveal() if config.sasl_password else None,
        ssl_cafile=config.ssl_cafile,
        ssl_certfile=config.ssl_certfile,
        ssl_keyfile=config.ssl_keyfile,
        fetch_min_bytes=config.fetch_min_bytes,
        fetch_max_bytes=config.fetch_max_bytes,
        max_partition_fetch_bytes=config.max_partition_fetch_bytes,
        fetch_max_wait_ms=config.fetch_max_wait_ms,
        auto_offset_reset=config.auto_offset_reset,
        session_timeout_ms=config.session_timeout_ms,
        heartbeat_interval_ms=config.heartbeat_interval_ms,
        max_poll_interval_ms=config.max_poll_interval_ms,
    )
    return KafkaSource(
        settings,
        predictions_topic=config.predictions_topic,
        outcomes_topic=config.outcomes_topic,
        positions_for=positions_for,
        backpressure=Backpressure(max_in_flight_records=config.max_in_flight_records),
        name=config.name,
        dead_letters=DeadLetterProducer(settings, config.dead_letter_topic)
        if config.dead_letter_topic
        else None,
    )
